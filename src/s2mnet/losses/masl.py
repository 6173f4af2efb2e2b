"""MASL — the Morphology-Aware Adaptive Segmentation Loss (method.md §3), usable with any segmentation model.

    L = Σ_i w_i α_i(y) L_i(y, p) / Σ_i w_i α_i(y),   i ∈ {core, boundary, structure, scale, texture}

computed per sample (descriptors and α per sample, method.md §3 / ICML abstract) and averaged over the
batch. Follows MONAI's conventions: logits in; ``num_classes=1`` → one channel + sigmoid and a {0, 1}
target (B, 1, H, W) or (B, H, W); ``num_classes ≥ 2`` → softmax and an integer class map;
``multilabel=True`` → C = ``num_classes`` independent sigmoid channels and a {0, 1} target (B, C, H, W).

Multi-class (the paper does not specify it; the authors' code sums over all channels incl. background):
each foreground class c ≥ 1 is treated one-vs-rest with the exact logit log p_c − log(1 − p_c) of the
softmax, so every binary component applies unchanged; descriptors, α and the weighted mix are computed per
(sample, class) and averaged over the pairs whose class is present in that sample's target. A
cross-entropy term on the softmax (weight ``ce_weight``, default 1) is added so that classes compete and
absent classes are still pushed down.

Multi-label (overlapping regions such as BraTS ET/TC/WT, :mod:`s2mnet.data.labels`; not in the paper): each
channel is its own binary problem, so the (sample, region) pairs are folded into the batch dimension and
MASL runs exactly as for a binary batch of B·C masks — descriptors, α and the mix per (sample, region),
averaged over all B·C pairs, empty regions included (they must be pushed down and no softmax does it).
The value is therefore the mean over regions of the binary MASL of each region's channel.

The weights are ``nn.Parameter`` s of this module (``learned`` / ``paper``): pass
:meth:`MASL.parameter_groups` to the optimizer. If they have not moved after 200 training calls, a warning
says so.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from s2mnet.errors import LossInputError
from s2mnet.losses.components import (
    COMPONENT_NAMES,
    boundary_loss,
    core_loss,
    scale_loss,
    shape_gate,
    structure_loss,
    texture_loss,
)
from s2mnet.losses.descriptors import as_mask_batch, morphology_descriptors
from s2mnet.losses.weighting import INITIAL_WEIGHTS, ComponentWeights

_UNUSED_WEIGHTS_CHECK_AFTER = 200


def modulation_factors(descriptors: dict[str, torch.Tensor]) -> torch.Tensor:
    """α (N, 5) from the descriptors (method.md §3).

    α_core = 1 + 0.5c, α_bnd = 1 + 1.5τ + c, α_str = 1 + τ, α_sca = 1 + 1.5ι, α_tex = 1 + ι.
    """
    tubularity, compactness = descriptors["tubularity"], descriptors["compactness"]
    irregularity = descriptors["irregularity"]
    return torch.stack(
        [
            1 + 0.5 * compactness,
            1 + 1.5 * tubularity + compactness,
            1 + tubularity,
            1 + 1.5 * irregularity,
            1 + irregularity,
        ],
        dim=1,
    )


def one_vs_rest_logits(logits: torch.Tensor) -> torch.Tensor:
    """Binary logits log p_c − log(1 − p_c) of each foreground class c ≥ 1 of a softmax, (B, C − 1, H, W).

    Computed as z_c − logsumexp_{k≠c} z_k, exact and finite for any finite logits.
    """
    num_classes = logits.shape[1]
    foreground = logits[:, 1:]
    eye = torch.eye(num_classes, dtype=torch.bool, device=logits.device)[1:]  # (C-1, C)
    others = logits.unsqueeze(1).masked_fill(eye.view(1, num_classes - 1, num_classes, 1, 1), float("-inf"))
    return foreground - torch.logsumexp(others, dim=2)


class MASL(nn.Module):
    """Morphology-Aware Adaptive Segmentation Loss (method.md §3).

    Args:
        num_classes: 1 (sigmoid, binary target) or ≥ 2 (softmax, integer class map); with
            ``multilabel`` the number of sigmoid channels (regions).
        weighting: ``"learned"`` (default), ``"paper"`` or ``"fixed"``; details in
            :mod:`s2mnet.losses.weighting`. ``paper``: w learnable through the normalised ratio, as the
            paper describes; since ∂L/∂w_i ∝ α_i (L_i − L), the weight drifts to the component with the
            smallest loss (a corner of [0.1, 10]⁵). ``learned``: uncertainty weighting (Kendall et al.
            2018) with the normaliser detached, L = [Σ w_i α_i L_i + ½ Σ log(10 / w_i)] / sg(Σ w_i α_i):
            the model gets the same normalised mix, and each w_i has the interior optimum
            1 / (2 α_i L_i), so every component keeps about an equal share (no collapse). ``fixed``:
            w = (1, 1, 1, 0.5, 0.5), the paper's "fixed weights" ablation. Learnable weights are
            re-parametrised to stay in [0.1, 10] whatever the optimizer does.
        modulation: if False, α ≡ 1 (the "no morphology modulation" ablation).
        components: the components used (default all five); drop one for the "w/o <component>" ablations.
        initial_weights: initial (or fixed) w, default (1, 1, 1, 0.5, 0.5).
        ce_weight: weight of the cross-entropy term added in the multi-class case.
        gate_structure: multiply the structure term by the detached soft Dice of p and y
            (:func:`~s2mnet.losses.components.shape_gate`). Our choice, on by default: ungated, the
            compactness of a still-diffuse prediction pushes the background up and, on small faint
            lesions (BUSI), kept every prediction below 0.5 (docs/masl.md). ``False`` = the paper's term.
        multilabel: C overlapping regions, one sigmoid channel each (see the module docstring).

    Shapes:
        logits (B, C, H, W) with C = num_classes; target (B, 1, H, W) or (B, H, W). Returns a scalar.

    Attributes:
        weights: current effective weights (5,) (property).
        last: python floats of the last call, for logging (property): ``L_<component>``,
            ``alpha_<component>``, ``w_<component>`` (batch means), ``L_mix`` (the normalised mix),
            ``L_ce`` (multi-class), ``loss``.
    """

    def __init__(
        self,
        num_classes: int = 1,
        weighting: str = "learned",
        modulation: bool = True,
        components: Sequence[str] = COMPONENT_NAMES,
        initial_weights: Sequence[float] = INITIAL_WEIGHTS,
        ce_weight: float = 1.0,
        gate_structure: bool = True,
        multilabel: bool = False,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise LossInputError(f"MASL: num_classes must be ≥ 1, got {num_classes}")
        unknown = sorted(set(components) - set(COMPONENT_NAMES))
        if unknown or not components:
            raise LossInputError(
                f"MASL: components must be a non-empty subset of {COMPONENT_NAMES}, got {components}"
            )
        self.num_classes = num_classes
        self.modulation = modulation
        self.components = tuple(name for name in COMPONENT_NAMES if name in components)
        self.ce_weight = ce_weight
        self.gate_structure = gate_structure
        self.multilabel = multilabel
        self.weighting = ComponentWeights(weighting, tuple(float(w) for w in initial_weights))
        self.register_buffer(
            "active", torch.tensor([name in self.components for name in COMPONENT_NAMES]), persistent=False
        )
        self._last: torch.Tensor | None = None
        self._calls = 0
        self._initial_raw = None if self.weighting.raw is None else self.weighting.raw.detach().clone()

    @property
    def weights(self) -> torch.Tensor:
        """Current effective component weights (5,), detached, in [0.1, 10]."""
        return self.weighting().detach()

    def parameter_groups(self, lr: float | None = None) -> list[dict]:
        """Optimizer parameter groups for the learnable weights (``[]`` in ``fixed`` mode), no weight decay.

        Args:
            lr: optional learning rate for the weights (default: the optimizer's).
        """
        if not self.weighting.learnable:
            return []
        group: dict = {"params": [self.weighting.raw], "weight_decay": 0.0, "name": "masl_weights"}
        if lr is not None:
            group["lr"] = lr
        return [group]

    @property
    def last(self) -> dict[str, float]:
        """The last call's component values, α and weights as python floats (one device sync)."""
        if self._last is None:
            return {}
        names = [f"L_{n}" for n in COMPONENT_NAMES] + [f"alpha_{n}" for n in COMPONENT_NAMES]
        names += [f"w_{n}" for n in COMPONENT_NAMES] + ["L_mix", "L_ce", "loss"]
        return dict(zip(names, self._last.tolist(), strict=True))

    def _binary_inputs(self, logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        target = as_mask_batch(target, "MASL target")
        if bool(((target < 0) | (target > 1)).any()):
            raise LossInputError("MASL target: binary targets must lie in [0, 1]")
        return logits, target

    def _multilabel_inputs(self, target: torch.Tensor) -> torch.Tensor:
        """Regions (B, C, H, W) in [0, 1] → one binary mask per (sample, region), (B·C, 1, H, W)."""
        if target.ndim != 4 or target.shape[1] != self.num_classes:
            raise LossInputError(
                f"MASL target: multi-label targets must be (B, {self.num_classes}, H, W), "
                f"got {tuple(target.shape)}"
            )
        target = target.float()
        if bool(((target < 0) | (target > 1)).any()):
            raise LossInputError("MASL target: multi-label targets must lie in [0, 1]")
        return target.reshape(-1, 1, *target.shape[-2:])

    def _multiclass_inputs(
        self, logits: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if target.ndim == 4 and target.shape[1] == 1:
            target = target[:, 0]
        if target.ndim != 3:
            raise LossInputError(
                f"MASL target: expected a class map (B, 1, H, W) or (B, H, W), got {tuple(target.shape)}"
            )
        if target.is_floating_point() and bool((target != target.round()).any()):
            raise LossInputError("MASL target: multi-class targets must be integer class indices")
        target = target.long()
        if bool(((target < 0) | (target >= self.num_classes)).any()):
            raise LossInputError(f"MASL target: class indices must lie in [0, {self.num_classes - 1}]")
        return target, F.one_hot(target, self.num_classes)[..., 1:].permute(0, 3, 1, 2).float()

    def _structure(
        self, prob: torch.Tensor, target: torch.Tensor, descriptors: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        """|κ(y) − κ(p)|, gated by the current overlap unless ``gate_structure=False`` (see ``__init__``)."""
        value = structure_loss(prob, descriptors["compactness"])
        return value * shape_gate(prob, target) if self.gate_structure else value

    def _component_values(
        self, logits: torch.Tensor, target: torch.Tensor, descriptors: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        prob = torch.sigmoid(logits)
        functions = {
            "core": lambda: core_loss(logits, target),
            "boundary": lambda: boundary_loss(prob, target),
            "structure": lambda: self._structure(prob, target, descriptors),
            "scale": lambda: scale_loss(logits, target, descriptors["scale"]),
            "texture": lambda: texture_loss(prob, target),
        }
        zeros = logits.new_zeros(logits.shape[0])
        return torch.stack(
            [functions[n]() if n in self.components else zeros for n in COMPONENT_NAMES], dim=1
        )

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """MASL of ``logits`` (B, C, H, W) against ``target``; a scalar (see the class docstring)."""
        if logits.ndim != 4 or logits.shape[1] != self.num_classes:
            raise LossInputError(
                f"MASL logits: expected (B, {self.num_classes}, H, W) for num_classes={self.num_classes}, "
                f"got {tuple(logits.shape)}"
            )
        if target.shape[0] != logits.shape[0] or target.shape[-2:] != logits.shape[-2:]:
            raise LossInputError(
                f"MASL target: shape {tuple(target.shape)} does not match logits {tuple(logits.shape)}"
            )
        logits = logits.float()
        cross_entropy = logits.new_zeros(())
        if self.multilabel:
            pair_target = self._multilabel_inputs(target)
            pair_logits = logits.reshape(pair_target.shape)
            present = torch.ones(pair_target.shape[0], dtype=torch.bool, device=logits.device)
        elif self.num_classes == 1:
            pair_logits, pair_target = self._binary_inputs(logits, target)
            present = torch.ones(logits.shape[0], dtype=torch.bool, device=logits.device)
        else:
            class_map, onehot = self._multiclass_inputs(logits, target)
            cross_entropy = F.cross_entropy(logits, class_map)
            height, width = logits.shape[-2:]
            pair_logits = one_vs_rest_logits(logits).reshape(-1, 1, height, width)
            pair_target = onehot.reshape(-1, 1, height, width)
            present = onehot.flatten(2).amax(dim=2).flatten() > 0

        descriptors = morphology_descriptors(pair_target)
        if self.modulation:
            alpha = modulation_factors(descriptors)
        else:
            alpha = torch.ones(pair_target.shape[0], len(COMPONENT_NAMES), device=logits.device)
        losses = self._component_values(pair_logits, pair_target, descriptors)
        weights = self.weighting()
        objective, mix = self.weighting.combine(weights, alpha, losses, self.active)

        pair_weight = present.float() / present.float().sum().clamp_min(1.0)
        loss = (objective * pair_weight).sum() + self.ce_weight * cross_entropy
        self._record(losses, alpha, weights, pair_weight, mix, cross_entropy, loss)
        self._check_weights_are_trained()
        return loss

    def _record(
        self,
        losses: torch.Tensor,
        alpha: torch.Tensor,
        weights: torch.Tensor,
        pair_weight: torch.Tensor,
        mix: torch.Tensor,
        cross_entropy: torch.Tensor,
        loss: torch.Tensor,
    ) -> None:
        """Keep the logged values as one detached tensor; :attr:`last` converts them when read."""
        with torch.no_grad():
            self._last = torch.cat(
                [
                    (losses * pair_weight[:, None]).sum(dim=0),
                    (alpha * pair_weight[:, None]).sum(dim=0),
                    weights,
                    torch.stack([(mix * pair_weight).sum(), cross_entropy, loss]),
                ]
            ).detach()

    def _check_weights_are_trained(self) -> None:
        if self._initial_raw is None or not (self.training and torch.is_grad_enabled()):
            return
        self._calls += 1
        if self._calls == _UNUSED_WEIGHTS_CHECK_AFTER and torch.equal(
            self.weighting.raw.detach().cpu(), self._initial_raw.cpu()
        ):
            warnings.warn(
                f"MASL weights have not changed after {_UNUSED_WEIGHTS_CHECK_AFTER} training calls: "
                "add loss.parameter_groups() to the optimizer",
                stacklevel=3,
            )
