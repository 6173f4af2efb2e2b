"""nnU-Net v2 trainers shipped by s2mnet: MASL as the loss, and short CPU-budget schedules.

nnU-Net finds a trainer named with ``-tr`` by importing every module of its own
``nnunetv2/training/nnUNetTrainer`` folder and then, when the name is not there, every module of the
folders listed in the environment variable ``nnUNet_extTrainer`` (nnunetv2 2.8.1 does). No patching is
needed: point it at this package's folder (``python -c "import s2mnet.nnunet as m; print(m.trainer_dir())"``)
and ``nnUNetv2_train`` as well as ``nnUNetv2_predict`` (which looks the trainer up again from the
checkpoint) find the classes below. nnU-Net imports each module of that folder as a top-level module
(``commands``, ``convert``, ``network``, ``plans``, ``trainer``) until one has the class; all of them
use absolute imports, so this is harmless.

Trainers (all are :class:`nnUNetTrainer` subclasses with its optimiser, schedule, augmentation and
validation; with or without the ``2d_s2mnet`` configuration):

* ``nnUNetTrainerMASL`` (1000 epochs) and ``nnUNetTrainerMASL_{1epoch,5epochs,10epochs,20epochs,
  50epochs,100epochs,250epochs,500epochs}``: nnU-Net's Dice + CE replaced by MASL
  (:class:`s2mnet.losses.MASL`, learned weighting) on the softmax outputs (binary datasets included: class
  1 one-vs-rest + cross-entropy); region-based datasets use MASL's multi-label form. Deep supervision as
  nnU-Net's: the same MASL on every output, weights 1, 1/2, 1/4… (the lowest 0), normalised. MASL's
  learnable weights join the SGD optimiser (no weight decay) and are stored beside each checkpoint
  (``checkpoint_final.masl.json``…: JSON, nothing is unpickled), so ``--c`` continues them.
  ``nnUNetTrainerMASLNoDeepSupervision``: the same on the full-resolution output only. Datasets with
  an ignore label are refused (MASL has no ignore label).
* ``nnUNetTrainer_5epochs_30iters`` and ``nnUNetTrainerMASL_5epochs_30iters``: 5 epochs of 30 training
  and 5 validation iterations (nnU-Net's epochs have 250 and 50), and the final validation without
  test-time mirroring, for comparisons on a CPU budget (docs/results/nnunet_DRIVE/). The first is nnU-Net's
  own trainer (Dice + CE), only shorter; training augmentation is nnU-Net's, mirroring included.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from s2mnet.errors import S2MError
from s2mnet.io_utils import read_json
from s2mnet.nnunet.plans import write_json

__all__ = [
    "MASL_EPOCH_VARIANTS",
    "nnUNetTrainerMASL",
    "nnUNetTrainerMASLNoDeepSupervision",
    "nnUNetTrainerMASL_5epochs_30iters",
    "nnUNetTrainer_5epochs_30iters",
]


class MASLForNNUNet(torch.nn.Module):
    """MASL on nnU-Net's outputs and targets (a class map ``(B, 1, H, W)`` or regions ``(B, C, H, W)``).

    Args:
        num_heads: the label manager's ``num_segmentation_heads``.
        regions: region-based training (sigmoid per region, MASL's multi-label form).
        variant: a MASL name of :func:`s2mnet.losses.create_loss` (``masl``, ``masl_fixed``…).
    """

    def __init__(self, num_heads: int, regions: bool, variant: str = "masl") -> None:
        super().__init__()
        from s2mnet.losses import create_loss

        if not regions and num_heads < 2:
            raise S2MError(f"nnU-Net softmax outputs need at least 2 heads, got {num_heads}")
        self.masl = create_loss(variant, num_classes=num_heads, multilabel=regions)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The loss of one output and its target."""
        return self.masl(logits, target)


class nnUNetTrainerMASL(nnUNetTrainer):
    """nnU-Net's trainer with MASL as the loss (module docstring)."""

    #: MASL variant (:func:`s2mnet.losses.create_loss` name).
    masl_variant = "masl"
    #: When set, replace nnU-Net's schedule length (epochs, train and validation iterations per epoch).
    epochs: int | None = None
    iterations: int | None = None
    val_iterations: int | None = None
    deep_supervision: bool = True

    def __init__(
        self,
        plans: dict,
        configuration: str,
        fold: int,
        dataset_json: dict,
        device: torch.device = torch.device("cuda"),  # noqa: B008 (nnU-Net's signature)
    ) -> None:
        super().__init__(plans, configuration, fold, dataset_json, device)
        _apply_schedule(self)
        self.enable_deep_supervision = self.deep_supervision
        self.masl: MASLForNNUNet | None = None

    def _build_loss(self) -> torch.nn.Module:
        if self.label_manager.ignore_label is not None:
            raise S2MError(
                f"dataset {self.plans_manager.dataset_name} has an ignore label; MASL has none "
                "(train it with nnUNetTrainer)"
            )
        self.masl = MASLForNNUNet(
            self.label_manager.num_segmentation_heads, self.label_manager.has_regions, self.masl_variant
        ).to(self.device)
        if not self.enable_deep_supervision:
            return self.masl
        weights = np.array([1 / (2**i) for i in range(len(self._get_deep_supervision_scales()))])
        weights[-1] = 1e-6 if self.is_ddp and not self._do_i_compile() else 0  # as nnUNetTrainer
        return DeepSupervisionWrapper(self.masl, weights / weights.sum())

    def initialize(self) -> None:
        """nnU-Net's initialisation, then MASL's learnable weights join the optimiser."""
        super().initialize()
        if self.masl is not None:
            for group in self.masl.masl.parameter_groups():
                self.optimizer.add_param_group({k: v for k, v in group.items() if k != "name"})

    def on_epoch_end(self) -> None:
        """Log MASL's component weights, then nnU-Net's epoch end."""
        if self.masl is not None:
            weights = ", ".join(f"{w:.3f}" for w in self.masl.masl.weights.tolist())
            self.print_to_log_file(f"MASL weights (core, boundary, structure, scale, texture): {weights}")
        super().on_epoch_end()

    def save_checkpoint(self, filename: str) -> None:
        """nnU-Net's checkpoint, and MASL's learned weights beside it (``<checkpoint>.masl.json``)."""
        super().save_checkpoint(filename)
        written = self.local_rank == 0 and not self.disable_checkpointing and os.path.isfile(filename)
        if written and self.masl is not None:
            state = {key: value.detach().cpu().tolist() for key, value in self.masl.state_dict().items()}
            write_json(Path(masl_state_path(filename)), state)

    def load_checkpoint(self, filename_or_checkpoint: dict | str) -> None:
        """nnU-Net's loading, then MASL's weights from ``<checkpoint>.masl.json`` when it exists."""
        super().load_checkpoint(filename_or_checkpoint)
        if self.masl is None or not isinstance(filename_or_checkpoint, str):
            return
        path = Path(masl_state_path(filename_or_checkpoint))
        if path.is_file():
            state = read_json(path, what="MASL state file")
            self.masl.load_state_dict({key: torch.tensor(value) for key, value in state.items()})
        else:
            self.print_to_log_file(f"{path} not found: MASL's weights start from their initial values")


def masl_state_path(checkpoint: str | os.PathLike) -> str:
    """Where :class:`nnUNetTrainerMASL` keeps MASL's weights for a checkpoint (JSON, no pickle)."""
    return str(Path(checkpoint).with_suffix(".masl.json"))


def _apply_schedule(trainer: nnUNetTrainer) -> None:
    cls = type(trainer)
    if getattr(cls, "epochs", None) is not None:
        trainer.num_epochs = cls.epochs
    if getattr(cls, "iterations", None) is not None:
        trainer.num_iterations_per_epoch = cls.iterations
    if getattr(cls, "val_iterations", None) is not None:
        trainer.num_val_iterations_per_epoch = cls.val_iterations


class nnUNetTrainerMASLNoDeepSupervision(nnUNetTrainerMASL):
    """MASL on the full-resolution output only (``decoder.deep_supervision`` off)."""

    deep_supervision = False


def _validate_without_mirroring(trainer: nnUNetTrainer, save_probabilities: bool) -> None:
    """nnU-Net's final validation with test-time mirroring off (4× fewer forward passes)."""
    axes, trainer.inference_allowed_mirroring_axes = trainer.inference_allowed_mirroring_axes, None
    try:
        nnUNetTrainer.perform_actual_validation(trainer, save_probabilities)
    finally:
        trainer.inference_allowed_mirroring_axes = axes


class nnUNetTrainer_5epochs_30iters(nnUNetTrainer):
    """nnU-Net's own trainer (Dice + CE), 5 epochs of 30 training / 5 validation iterations (CPU budget)."""

    epochs, iterations, val_iterations = 5, 30, 5

    def __init__(
        self,
        plans: dict,
        configuration: str,
        fold: int,
        dataset_json: dict,
        device: torch.device = torch.device("cuda"),  # noqa: B008
    ) -> None:
        super().__init__(plans, configuration, fold, dataset_json, device)
        _apply_schedule(self)

    def perform_actual_validation(self, save_probabilities: bool = False) -> None:
        """The final validation without test-time mirroring (CPU budget)."""
        _validate_without_mirroring(self, save_probabilities)


class nnUNetTrainerMASL_5epochs_30iters(nnUNetTrainerMASL):
    """``nnUNetTrainerMASL`` with the schedule of :class:`nnUNetTrainer_5epochs_30iters`."""

    epochs, iterations, val_iterations = 5, 30, 5

    def perform_actual_validation(self, save_probabilities: bool = False) -> None:
        """The final validation without test-time mirroring (CPU budget)."""
        _validate_without_mirroring(self, save_probabilities)


#: ``nnUNetTrainerMASL_<X>epochs`` classes, as nnU-Net's ``nnUNetTrainer_<X>epochs``.
MASL_EPOCH_VARIANTS: dict[str, type] = {}
for _epochs in (1, 5, 10, 20, 50, 100, 250, 500):
    _name = f"nnUNetTrainerMASL_{_epochs}epoch{'s' if _epochs > 1 else ''}"
    MASL_EPOCH_VARIANTS[_name] = type(
        _name, (nnUNetTrainerMASL,), {"epochs": _epochs, "__doc__": f"nnUNetTrainerMASL, {_epochs} epochs."}
    )
    globals()[_name] = MASL_EPOCH_VARIANTS[_name]
del _epochs, _name
