"""``TrainConfig``: everything ``s2m train`` accepts, and the stored configuration of a run to resume."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from s2mnet.engine.rundir import RUN_CONFIG, TRAIN_STATE, read_run_config, run_data_path
from s2mnet.errors import RunError, S2MError

AMP_MODES = ("none", "bf16", "fp16")


@dataclass
class TrainConfig:
    """Everything ``s2m train`` accepts; ``None`` means "let the plan decide" (the choice is printed).

    Attributes:
        data: dataset folder (any layout :func:`s2mnet.data.discover` understands).
        out: run folder to create.
        model: registry name (:func:`s2mnet.models.list_models`).
        loss: registry name (:func:`s2mnet.losses.create_loss`); ``None`` → the plan's (``masl``).
        seed: seeds Python, NumPy, torch, the data order, the augmentation and the split.
        data_seed: seeds the data order, the augmentation and the per-epoch random streams instead of
            ``seed`` (which then fixes only the initialisation and the split); ``None`` → ``seed``. The
            claims lab's A/A control trains with another initialisation on the data order of its pair.
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        splits: a split file (``{"train": [...], "val": [...], "test": [...]}``, names by case id, image
            file name or stem); ``None`` → the published split or a seeded 70/15/15 split.
        split: an in-memory split ``{"train", "val", "test", "source", "seed"}`` of case ids, used
            instead of ``splits`` (a cross-validation fold's, :func:`s2mnet.data.folds.fold_run_splits`).
        plan_overrides: data-plan choices (``size``, ``patch_size``, ``mode``, ``preprocess``, ``epochs``,
            ``batch_size``, ``samples_per_epoch``, ``num_classes``, ``use_fov``...).
        lr, weight_decay, warmup_epochs, min_lr, clip_grad, patience, min_epochs, val_every, precise_bn:
            recipe overrides; ``patience=0`` disables early stopping, ``min_epochs=N`` keeps it from
            stopping before epoch N (a run that has not left its start yet); ``precise_bn=N``
            re-estimates BatchNorm's running statistics from N training batches before each validation
            (0 = off, the default).
        workers: DataLoader worker processes (``None`` → 0 on CPU, up to 8 on CUDA).
        amp: mixed precision on CUDA: ``"none"``, ``"bf16"`` or ``"fp16"`` (with a gradient scaler); on
            CPU a warning is printed and training runs in float32. SSTM's FFTs always run in float32.
        channels_last: NHWC memory format (default on): the same maths, and 1.5× faster S2M-Net training
            steps on a CPU (oneDNN convolutions without layout reorders; docs/speed.md) as on recent GPUs.
        compile: ``torch.compile`` the training step (model + loss); on a compile failure torch falls back
            to eager execution with a warning (``torch._dynamo.config.suppress_errors``).
        sync_bn: under ``torchrun``, convert BatchNorm to SyncBatchNorm (statistics over all ranks' batches).
        model_args, loss_args: keyword overrides for ``create_model`` / ``create_loss``.
        budget_s: plan the run's length from this wall-time budget (seconds; :mod:`s2mnet.planning.budget`):
            a few timed steps and one timed validation decide epochs, validations and learning rate.
            ``None`` → :data:`~s2mnet.planning.budget.DEFAULT_CPU_BUDGET_MIN` minutes on a CPU, no budget
            on a GPU (the paper's 150 epochs); ``0`` → no budget. Ignored when ``epochs`` is set.
        time_limit_s: stop within one training step of this wall time (resumable); a hard limit, where
            ``budget_s`` plans a run to fit.
        overwrite: replace an earlier s2m run in ``out`` (other files there are kept).
        quiet: print nothing; ``progress`` (None → only on a terminal) shows a tqdm bar with ETA.
        tensorboard: write TensorBoard event files.
        tracker: experiment tracker, ``"none"`` or ``"mlflow"`` (:mod:`s2mnet.engine.tracking`).
        command: the command line to store in ``run.json``.
        resume: continue the run in ``out`` from its ``train_state.safetensors`` (build this config with
            :func:`resume_config`, which restores the stored configuration).
    """

    data: str | Path
    out: str | Path
    model: str = "s2mnet"
    loss: str | None = None
    seed: int = 42
    data_seed: int | None = None
    device: str = "auto"
    plan_overrides: dict[str, Any] = field(default_factory=dict)
    splits: str | Path | None = None
    split: dict[str, Any] | None = None
    lr: float | None = None
    weight_decay: float | None = None
    warmup_epochs: int | None = None
    min_lr: float | None = None
    clip_grad: float | None = None
    patience: int | None = None
    min_epochs: int | None = None
    val_every: int | None = None
    precise_bn: int | None = None
    workers: int | None = None
    amp: str = "none"
    channels_last: bool = True
    compile: bool = False
    sync_bn: bool = False
    model_args: dict[str, Any] = field(default_factory=dict)
    loss_args: dict[str, Any] = field(default_factory=dict)
    budget_s: float | None = None
    time_limit_s: float | None = None
    overwrite: bool = False
    quiet: bool = False
    progress: bool | None = None
    tensorboard: bool = True
    tracker: str = "none"
    command: list[str] | None = None
    resume: bool = False


#: What ``--resume`` may change: where and how fast the run continues, never what it computes.
RESUME_CHANGEABLE = ("device", "workers", "time_limit_s", "quiet", "progress", "tensorboard", "tracker")


def resume_config(run_dir: str | Path, command: list[str] | None = None, **changes: Any) -> TrainConfig:
    """The configuration of a stopped run, to continue it with :func:`train` (``s2m train --resume RUN``).

    The stored ``run.json`` (``train_config``) is authoritative; only :data:`RESUME_CHANGEABLE` fields may
    be given. A run that finished (other than by its time limit) is refused with a clear message.

    Args:
        run_dir: the run folder.
        command: the resuming command line (recorded in ``run.json``).
        changes: new values for :data:`RESUME_CHANGEABLE` fields.
    """
    refused = sorted(set(changes) - set(RESUME_CHANGEABLE))
    if refused:
        names = ", ".join(refused)
        raise S2MError(f"--resume: {names} cannot be changed (the run's stored settings are used)")
    run_dir = Path(run_dir)
    stored = read_run_config(run_dir)
    if stored.get("status") == "finished" and not stored.get("stopped_by_time"):
        raise RunError(
            f"{run_dir}: this run already finished ({stored.get('epochs_run')} epochs); nothing to resume"
        )
    saved = stored.get("train_config")
    if not isinstance(saved, dict):
        raise RunError(f"{run_dir / RUN_CONFIG}: no train_config stored; this run cannot be resumed")
    if (run_dir / TRAIN_STATE).is_file():  # a damaged or foreign state: one line now, not a traceback later
        from s2mnet.engine.resume import load_resumable_state

        load_resumable_state(run_dir / TRAIN_STATE)
    known = {item.name for item in dataclasses.fields(TrainConfig)}
    values = {key: value for key, value in saved.items() if key in known}
    data = run_data_path(stored, run_dir)  # absolute, or relative to the run folder (never "..")
    values.update(data=data if data is not None else values.get("data"), out=run_dir, overwrite=False)
    values.update(resume=True)
    values.update(command=command, **changes)
    return TrainConfig(**values)
