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

from s2mnet.errors import LossInputError
from s2mnet.losses.components import COMPONENT_NAMES
from s2mnet.losses.descriptors import as_mask_batch
from s2mnet.losses.masl import MASL
from s2mnet.registry import Registry

LOSSES: Registry[type[nn.Module]] = Registry("loss", LossInputError)


@LOSSES.register("dicece", "MONAI Dice + cross-entropy (equal weights), the usual baseline")
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


LOSSES.add("masl", MASL, "MASL with our defaults (uncertainty weighting, overlap-gated structure term)")
LOSSES.add(
    "masl_paper",
    MASL,
    "MASL with the paper's weighting (learnable w in the normalised ratio)",
    weighting="paper",
)
LOSSES.add("masl_fixed", MASL, "MASL with all weights fixed (as the authors' code)", weighting="fixed")
LOSSES.add("masl_nomod", MASL, "MASL without morphology modulation (α = 1)", modulation=False)
LOSSES.add("masl_ungated", MASL, "MASL with the paper's ungated structure term", gate_structure=False)
for _dropped in COMPONENT_NAMES:
    LOSSES.add(
        f"masl_no_{_dropped}",
        MASL,
        f"MASL without the {_dropped} component",
        components=tuple(n for n in COMPONENT_NAMES if n != _dropped),
    )


def list_losses() -> list[str]:
    """Names accepted by :func:`create_loss`."""
    return LOSSES.names()


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
    entry = LOSSES.get(name)
    return entry.target(num_classes=num_classes, multilabel=multilabel, **{**entry.defaults, **kwargs})
