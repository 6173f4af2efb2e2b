"""Component weights of MASL: ``fixed``, ``paper`` (learnable, as described) and ``learned`` (default).

method.md §3 combines the components as L = Σ w_i α_i L_i / (Σ w_i α_i + ε) with learnable w_i initialised
(1, 1, 1, 0.5, 0.5) and hard-constrained to [0.1, 10]. Trained by gradient descent through that ratio,
∂L/∂w_i = α_i (L_i − L) / Σ w α: every weight whose component is below the current mix grows, the others
shrink, and the optimum is a corner of the box — the smallest component at 10, all others at 0.1 (≈ 96 %
of the mix on one component). That is the ``paper`` scheme, kept for the ablation.

``learned`` (default) is uncertainty weighting (Kendall, Gal & Cipolla, CVPR 2018) with the paper's
normaliser detached: per sample

    L = [Σ_i w_i α_i L_i + ½ Σ_i log(w_max / w_i)] / stopgrad(Σ_i w_i α_i),

with w_i = 1/(2σ_i²). The model receives exactly the paper's normalised combination (the normaliser does not
depend on the model either way); each weight has an interior optimum w_i = 1 / (2 α_i L_i), i.e. every
component contributes about equally to the mix and the network makes equal *relative* progress on all of
them (the gradient is ∝ Σ_i ∇ log L_i). The log term is shifted by log w_max so that it is ≥ 0.

Both learnable schemes are bounded by re-parametrisation, not clamping: w = exp(log 0.1 + log(100)·σ(θ)),
so no optimizer step can leave [0.1, 10] and the weights move geometrically (a step changes w by a factor).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from s2mnet.errors import LossInputError

WEIGHTING_MODES = ("learned", "paper", "fixed")
INITIAL_WEIGHTS = (1.0, 1.0, 1.0, 0.5, 0.5)
WEIGHT_BOUNDS = (0.1, 10.0)


class ComponentWeights(nn.Module):
    """The five MASL weights w (5,), learnable within [0.1, 10] or fixed.

    Args:
        mode: ``"learned"``, ``"paper"`` or ``"fixed"`` (see the module docstring).
        initial: initial (or fixed) weights, inside the bounds.
    """

    def __init__(self, mode: str = "learned", initial: tuple[float, ...] = INITIAL_WEIGHTS) -> None:
        super().__init__()
        if mode not in WEIGHTING_MODES:
            raise LossInputError(f"MASL weighting: unknown mode {mode!r}; choose one of {WEIGHTING_MODES}")
        low, high = WEIGHT_BOUNDS
        if len(initial) != 5 or not all(low <= w <= high for w in initial):
            raise LossInputError(
                f"MASL weighting: initial weights must be 5 values in [{low}, {high}], got {initial}"
            )
        self.mode = mode
        initial_tensor = torch.tensor(initial, dtype=torch.float32)
        if mode == "fixed":
            self.register_buffer("fixed_weights", initial_tensor)
            self.raw = None
        else:
            position = (initial_tensor.log() - math.log(low)) / math.log(high / low)
            position = position.clamp(1e-4, 1 - 1e-4)
            self.raw = nn.Parameter(torch.log(position / (1 - position)))

    @property
    def learnable(self) -> bool:
        return self.raw is not None

    def forward(self) -> torch.Tensor:
        """Current effective weights (5,) in [0.1, 10]."""
        if self.raw is None:
            return self.fixed_weights
        low, high = WEIGHT_BOUNDS
        weights = torch.exp(math.log(low) + math.log(high / low) * torch.sigmoid(self.raw))
        return weights.clamp(low, high)  # only removes float rounding at the saturated ends

    def combine(
        self, weights: torch.Tensor, alpha: torch.Tensor, losses: torch.Tensor, active: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Combine per-sample components with the weights.

        Args:
            weights: (5,) from :meth:`forward`.
            alpha: (N, 5) modulation factors.
            losses: (N, 5) component values (inactive columns are ignored).
            active: (5,) bool, the components in use.

        Returns:
            ``(objective, mix)``, both (N,): the value to minimise and the normalised mix
            Σ w α L / Σ w α (equal to ``objective`` except in ``learned`` mode, where the objective adds the
            weights' log regulariser).
        """
        scaled = torch.where(active, weights * alpha, torch.zeros_like(alpha))
        normaliser = scaled.sum(dim=1)
        weighted = (scaled * torch.where(active, losses, torch.zeros_like(losses))).sum(dim=1)
        if self.mode != "learned":
            mix = weighted / (normaliser + 1e-8)
            return mix, mix
        detached = normaliser.detach() + 1e-8
        regulariser = (
            0.5 * torch.where(active, torch.log(WEIGHT_BOUNDS[1] / weights), torch.zeros_like(weights)).sum()
        )
        return (weighted + regulariser) / detached, weighted.detach() / detached
