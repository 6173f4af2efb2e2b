"""Loss registry: :func:`create_loss` by name, and the Dice + cross-entropy baseline.

Every loss it returns is an ``nn.Module`` called as ``loss(logits, target)`` and has
``parameter_groups()`` (optimizer groups for learnable loss weights, ``[]`` if none), so a training loop
can treat all of them alike.
"""

from __future__ import annotations

from typing import Any

import torch
from monai.losses import DiceCELoss as MonaiDiceCELoss
from torch import nn

from s2mnet.losses.components import COMPONENT_NAMES
from s2mnet.losses.descriptors import as_mask_batch
from s2mnet.losses.errors import LossInputError
from s2mnet.losses.masl import MASL


class DiceCELoss(nn.Module):
    """MONAI ``DiceCELoss`` (Dice + cross-entropy, equal weights) with the project's target conventions.

    ``num_classes=1``: sigmoid, target (B, 1, H, W) or (B, H, W) in {0, 1} (BCE).
    ``num_classes ≥ 2``: softmax, integer class map (B, 1, H, W) or (B, H, W), converted to one-hot by MONAI.
    ``multilabel=True``: C = ``num_classes`` sigmoid channels, {0, 1} target (B, C, H, W). MONAI's
    ``DiceCELoss`` switches to a softmax cross-entropy whenever C > 1, even with ``sigmoid=True``, so the
    (sample, region) pairs are folded into the batch: sigmoid Dice per (sample, region) plus BCE over all
    pixels, i.e. the mean over regions of the binary Dice-CE of each region.
    """

    def __init__(self, num_classes: int = 1, multilabel: bool = False, **kwargs: Any) -> None:
        super().__init__()
        if num_classes < 1:
            raise LossInputError(f"dicece: num_classes must be ≥ 1, got {num_classes}")
        self.num_classes = num_classes
        self.multilabel = multilabel
        if num_classes == 1 or multilabel:
            self.loss = MonaiDiceCELoss(sigmoid=True, **kwargs)
        else:
            self.loss = MonaiDiceCELoss(softmax=True, to_onehot_y=True, **kwargs)

    def parameter_groups(self) -> list[dict]:
        """No learnable parameters: ``[]``."""
        return []

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.ndim != 4 or logits.shape[1] != self.num_classes:
            raise LossInputError(
                f"dicece logits: expected (B, {self.num_classes}, H, W), got {tuple(logits.shape)}"
            )
        if self.multilabel:
            if target.shape != logits.shape:
                raise LossInputError(
                    f"dicece target: multi-label targets must be {tuple(logits.shape)}, "
                    f"got {tuple(target.shape)}"
                )
            height, width = logits.shape[-2:]
            return self.loss(
                logits.float().reshape(-1, 1, height, width), target.float().reshape(-1, 1, height, width)
            )
        target = as_mask_batch(target, "dicece target")
        if self.num_classes > 1:
            target = target.round()
        return self.loss(logits.float(), target)


def _masl_variants() -> dict[str, dict[str, Any]]:
    variants: dict[str, dict[str, Any]] = {
        "masl": {},
        "masl_paper": {"weighting": "paper"},
        "masl_fixed": {"weighting": "fixed"},
        "masl_nomod": {"modulation": False},
        "masl_ungated": {"gate_structure": False},  # the paper's structure term, without our overlap gate
    }
    for dropped in COMPONENT_NAMES:
        variants[f"masl_no_{dropped}"] = {"components": tuple(n for n in COMPONENT_NAMES if n != dropped)}
    return variants


_MASL_VARIANTS = _masl_variants()


def list_losses() -> list[str]:
    """Names accepted by :func:`create_loss`."""
    return [*_MASL_VARIANTS, "dicece"]


def create_loss(
    name: str = "masl", num_classes: int = 1, multilabel: bool = False, **kwargs: Any
) -> nn.Module:
    """Build a loss by name.

    Args:
        name: ``masl`` (learned weighting), ``masl_paper``, ``masl_fixed``, ``masl_nomod``,
            ``masl_ungated``, ``masl_no_<core|boundary|structure|scale|texture>`` or ``dicece``.
        num_classes: 1 for binary (sigmoid), ≥ 2 for multi-class (softmax, integer targets); the number
            of regions (sigmoid channels) with ``multilabel``.
        multilabel: overlapping regions, one sigmoid channel each, target (B, C, H, W) in {0, 1}.
        **kwargs: overrides passed to :class:`MASL` / :class:`DiceCELoss` (they win over the variant's).

    Raises:
        LossInputError: for an unknown name.
    """
    if name == "dicece":
        return DiceCELoss(num_classes=num_classes, multilabel=multilabel, **kwargs)
    if name not in _MASL_VARIANTS:
        raise LossInputError(f"unknown loss {name!r}; choose one of {', '.join(list_losses())}")
    return MASL(num_classes=num_classes, multilabel=multilabel, **{**_MASL_VARIANTS[name], **kwargs})
