"""Segmentation losses: MASL (method.md §3), its ablation variants, and the Dice + CE baseline.

Use :func:`create_loss` by name; pass ``loss.parameter_groups()`` to the optimizer (MASL's weights are
learnable).
"""

from __future__ import annotations

from s2mnet.errors import LossInputError
from s2mnet.losses.components import COMPONENT_NAMES
from s2mnet.losses.descriptors import DESCRIPTOR_NAMES, morphology_descriptors, soft_compactness
from s2mnet.losses.masl import MASL
from s2mnet.losses.registry import DiceCELoss, create_loss, list_losses

__all__ = [
    "COMPONENT_NAMES",
    "DESCRIPTOR_NAMES",
    "MASL",
    "DiceCELoss",
    "LossInputError",
    "create_loss",
    "list_losses",
    "morphology_descriptors",
    "soft_compactness",
]
