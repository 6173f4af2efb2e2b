"""S2M-Net inside nnU-Net v2 (docs/nnunet.md).

* :mod:`s2mnet.nnunet.network`: ``S2MNetNNUNet``, the network nnU-Net builds from the plans'
  ``network_class_name`` ``s2mnet.nnunet.network.S2MNetNNUNet`` (deep supervision included).
* :mod:`s2mnet.nnunet.plans`: adds the ``2d_s2mnet`` configuration to a planned dataset
  (``s2m nnunet add-config``); plain JSON, no nnunetv2 or torch import.
* :mod:`s2mnet.nnunet.convert`: any dataset ``s2m`` reads → an nnU-Net raw dataset with the same split
  (``s2m nnunet convert``).
* :mod:`s2mnet.nnunet.trainer`: ``nnUNetTrainerMASL`` and its variants (MASL as nnU-Net's loss) and the
  short CPU-budget trainers, found by nnU-Net through ``nnUNet_extTrainer`` (:func:`trainer_dir`). It
  imports nnunetv2; nothing else here does.

This package module holds only constants (no torch, no submodule imports), so ``s2m --help`` stays
fast and the submodules import it without an import circle.
"""

from __future__ import annotations

from pathlib import Path

#: Name of the configuration ``s2m nnunet add-config`` adds to the plans.
CONFIGURATION = "2d_s2mnet"
#: nnU-Net's configuration it inherits from (spacing, normalisation, preprocessed data, batch size).
BASE_CONFIGURATION = "2d"
#: Dotted path nnU-Net's plans use for the network class.
NETWORK_CLASS_NAME = "s2mnet.nnunet.network.S2MNetNNUNet"
#: The strides (nnU-Net's ``pool_op_kernel_sizes``) that describe S2M-Net: a full-resolution stem and
#: five stride-2 encoder stages (bottleneck at 1/32).
S2MNET_STRIDES: list[list[int]] = [[1, 1]] + [[2, 2]] * 5
#: Patch sizes must be multiples of this, so that every deep-supervision scale is exact.
PATCH_MULTIPLE = 32

__all__ = [
    "BASE_CONFIGURATION",
    "CONFIGURATION",
    "NETWORK_CLASS_NAME",
    "PATCH_MULTIPLE",
    "S2MNET_STRIDES",
    "trainer_dir",
]


def trainer_dir() -> Path:
    """The folder to put in ``nnUNet_extTrainer`` so that nnU-Net finds our trainers by name."""
    return Path(__file__).resolve().parent
