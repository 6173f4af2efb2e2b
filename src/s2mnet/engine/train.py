"""Training: the paper's recipe by default, every choice printed, stored in the run and overridable.

Recipe (PAPER.md §4): AdamW (β = 0.9, 0.999, weight decay 1e-4) over the model's parameters AND the loss's
learnable weights (``loss.parameter_groups()``, MASL's w); learning rate 1e-4 with a linear warm-up then
cosine decay to 1e-6 (:mod:`s2mnet.engine.schedule`); gradient-norm clipping at 1.0 (model parameters;
MASL's weights are kept in [0.1, 10] by the loss itself); early stopping on the validation Dice (patience
50 of 150 epochs, i.e. a third of the run); "virtual epochs" for small sets (``samples_per_epoch`` draws
with replacement per epoch); augmentation by the dataset (:mod:`s2mnet.data`).

Choices the paper leaves open, and ours:

* Learning rate: 1e-4 is the paper's value for 150 epochs on a GPU. For short CPU budgets (fewer than 60
  epochs) the plan uses 1e-3, which converges in minutes where 1e-4 does not; ``--lr`` overrides it.
* Warm-up: ``min(10, epochs // 10)`` epochs (the paper's 10 of 150, scaled down for short runs); the
  schedule is stepped per iteration.
* Validation: every ``val_every`` epochs (and always at the last one) on the validation split, full images
  at their original size with the same inference (:func:`s2mnet.engine.inference.predict_probs`) and
  per-image Dice (:func:`s2mnet.engine.metrics.case_metrics`) as ``s2m evaluate``.

The run folder is written as described in :mod:`s2mnet.engine.checkpoint`; ``run.json`` is written first
(``"status": "running"``) and completed at the end, so an interrupted run is recognised and its best
checkpoint stays usable. After every epoch the whole training state (:meth:`Trainer.state_dict`, the log
rows) is written atomically to ``train_state.safetensors`` (:mod:`s2mnet.engine.resume`), from which
``s2m train --resume RUN`` (:func:`resume_config`) continues a killed run exactly.

Under ``torchrun`` the same code trains with DDP (:mod:`s2mnet.engine.distributed`): model and loss are
wrapped together in one :class:`TrainStep` module so that DDP averages the gradients of MASL's learnable
weights with the model's (one mechanism, and the weights stay identical on all ranks because they start
from rank 0's broadcast values and take identical steps); rank 0 alone prints, validates, logs and writes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import platform
import random
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from s2mnet.engine import distributed
from s2mnet.engine.checkpoint import (
    RUN_CONFIG,
    load_state_into,
    read_run_config,
    save_weights,
    write_run_config,
)
from s2mnet.engine.distributed import DistContext
from s2mnet.engine.outputs import check_output_dir, prepare_output_dir
from s2mnet.engine.resume import TRAIN_STATE, load_training_state, save_training_state
from s2mnet.engine.run_log import CURVES_PNG, LOG_CSV, TENSORBOARD_DIR, RunLogger
from s2mnet.engine.schedule import default_warmup_epochs, warmup_cosine
from s2mnet.errors import RunError, S2MError
from s2mnet.io_utils import atomic_write_json

PLAN_JSON = "plan.json"
SPLITS_JSON = "splits.json"
BEST_WEIGHTS = "best.safetensors"
LAST_WEIGHTS = "last.safetensors"
#: Everything the trainer writes into a run folder (and so may remove with ``--overwrite``).
RUN_FILES = (
    RUN_CONFIG,
    PLAN_JSON,
    SPLITS_JSON,
    BEST_WEIGHTS,
    LAST_WEIGHTS,
    TRAIN_STATE,
    LOG_CSV,
    CURVES_PNG,
    TENSORBOARD_DIR,
)
#: What ``s2m evaluate`` adds to a run (stale after retraining, so also removed by ``--overwrite``).
EVAL_DIRS = tuple(f"eval_{split}{tta}" for split in ("train", "val", "test", "all") for tta in ("", "_tta"))

#: The paper's learning rate (150 GPU epochs) and the one we use for short budgets (see module docstring).
PAPER_LR = 1e-4
SHORT_RUN_LR = 1e-3
SHORT_RUN_EPOCHS = 60

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
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        splits: a split file (``{"train": [...], "val": [...], "test": [...]}``, names by case id, image
            file name or stem); ``None`` → the published split or a seeded 70/15/15 split.
        plan_overrides: data-plan choices (``size``, ``patch_size``, ``mode``, ``preprocess``, ``epochs``,
            ``batch_size``, ``samples_per_epoch``, ``num_classes``, ``use_fov``...).
        lr, weight_decay, warmup_epochs, min_lr, clip_grad, patience, val_every: recipe overrides;
            ``patience=0`` disables early stopping.
        workers: DataLoader worker processes (``None`` → 0 on CPU, up to 8 on CUDA).
        amp: mixed precision on CUDA: ``"none"``, ``"bf16"`` or ``"fp16"`` (with a gradient scaler); on
            CPU a warning is printed and training runs in float32. SSTM's FFTs always run in float32.
        channels_last: NHWC memory format (faster convolutions on recent GPUs).
        compile: ``torch.compile`` the training step (model + loss); on a compile failure torch falls back
            to eager execution with a warning (``torch._dynamo.config.suppress_errors``).
        sync_bn: under ``torchrun``, convert BatchNorm to SyncBatchNorm (statistics over all ranks' batches).
        model_args, loss_args: keyword overrides for ``create_model`` / ``create_loss``.
        time_limit_s: stop after the epoch during which this wall time was exceeded (a safety budget).
        overwrite: replace an earlier s2m run in ``out`` (other files there are kept).
        quiet: print nothing; ``progress`` (None → only on a terminal) shows a tqdm bar with ETA.
        tensorboard: write TensorBoard event files.
        command: the command line to store in ``run.json``.
        resume: continue the run in ``out`` from its ``train_state.safetensors`` (build this config with
            :func:`resume_config`, which restores the stored configuration).
    """

    data: str | Path
    out: str | Path
    model: str = "s2mnet"
    loss: str | None = None
    seed: int = 42
    device: str = "auto"
    plan_overrides: dict[str, Any] = field(default_factory=dict)
    splits: str | Path | None = None
    lr: float | None = None
    weight_decay: float | None = None
    warmup_epochs: int | None = None
    min_lr: float | None = None
    clip_grad: float | None = None
    patience: int | None = None
    val_every: int | None = None
    workers: int | None = None
    amp: str = "none"
    channels_last: bool = False
    compile: bool = False
    sync_bn: bool = False
    model_args: dict[str, Any] = field(default_factory=dict)
    loss_args: dict[str, Any] = field(default_factory=dict)
    time_limit_s: float | None = None
    overwrite: bool = False
    quiet: bool = False
    progress: bool | None = None
    tensorboard: bool = True
    command: list[str] | None = None
    resume: bool = False


#: What ``--resume`` may change: where and how fast the run continues, never what it computes.
RESUME_CHANGEABLE = ("device", "workers", "time_limit_s", "quiet", "progress", "tensorboard")


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
    known = {item.name for item in dataclasses.fields(TrainConfig)}
    values = {key: value for key, value in saved.items() if key in known}
    values.update(data=stored.get("data", values.get("data")), out=run_dir, overwrite=False, resume=True)
    values.update(command=command, **changes)
    return TrainConfig(**values)


def resolve_device(name: str) -> torch.device:
    """``"auto"`` → CUDA when available, else CPU; an unavailable CUDA request is an :class:`S2MError`."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise S2MError(f"--device {name}: unknown device (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise S2MError(f"--device {name}: CUDA is not available on this machine (use --device cpu)")
    return device


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (libraries draw from the legacy global generator)
    torch.manual_seed(seed)


def add_training_recipe(plan: dict[str, Any], config: TrainConfig) -> dict[str, Any]:
    """Complete the data plan with the optimisation recipe; flags win, then the plan, then our defaults.

    Every value gets a ``reasons`` entry that says where it comes from.
    """
    plan = dict(plan)
    reasons = dict(plan.get("reasons", {}))
    epochs = int(plan["epochs"])

    def choose(key: str, flag: Any, default: Any, why: str) -> None:
        if flag is not None:
            plan[key], reasons[key] = flag, "set by flag"
        elif key not in plan:
            plan[key], reasons[key] = default, why

    if epochs < SHORT_RUN_EPOCHS:
        choose(
            "lr",
            config.lr,
            SHORT_RUN_LR,
            f"short run ({epochs} < {SHORT_RUN_EPOCHS} epochs): 10x the paper's 1e-4 to converge in budget",
        )
    else:
        choose("lr", config.lr, PAPER_LR, "paper: Adam lr 1e-4")
    choose("weight_decay", config.weight_decay, 1e-4, "paper: weight decay 1e-4")
    choose(
        "warmup_epochs",
        config.warmup_epochs,
        default_warmup_epochs(epochs),
        "paper: 10 warm-up epochs of 150; min(10, epochs // 10)",
    )
    choose("min_lr", config.min_lr, 1e-6, "paper: cosine decay to 1e-6")
    choose("clip_grad", config.clip_grad, 1.0, "paper: gradient clipping 1.0")
    choose(
        "patience",
        config.patience,
        max(10, math.ceil(epochs / 3)),
        "paper: patience 50 of 150 epochs; a third of the run, at least 10",
    )
    choose("val_every", config.val_every, 1, "validate every epoch")
    plan["reasons"] = reasons
    return plan


class TrainStep(torch.nn.Module):
    """Model and loss as one module, ``(images, masks, fov) → loss``, so that DDP synchronises both.

    Wrapping the loss with the model (rather than all-reducing MASL's gradients by hand) lets DDP average
    the gradients of MASL's learnable weights in the same buckets as the model's and broadcast rank 0's
    initial values of both at the start. The model runs under autocast (``amp_dtype``); the FOV restriction
    and the loss always run in float32.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        loss_fn: torch.nn.Module,
        amp_dtype: torch.dtype | None,
        device_type: str,
    ) -> None:
        super().__init__()
        self.model, self.loss_fn = model, loss_fn
        self.amp_dtype, self.device_type = amp_dtype, device_type

    def forward(self, images: torch.Tensor, masks: torch.Tensor, fov: torch.Tensor | None) -> torch.Tensor:
        autocast = (
            torch.autocast(device_type=self.device_type, dtype=self.amp_dtype)
            if self.amp_dtype is not None
            else contextlib.nullcontext()
        )
        with autocast:
            logits = self.model(images)
        if fov is not None:
            logits, masks = restrict_to_fov(logits.float(), masks, fov)
        return self.loss_fn(logits.float(), masks)


class Trainer:
    """One training run: model, loss, optimiser, schedule, data and the best-so-far bookkeeping.

    Args:
        model: the network (already on ``device``).
        loss_fn: a loss with ``parameter_groups()`` (MASL's learnable weights are optimised with the model).
        plan: the completed plan (:func:`add_training_recipe`).
        train_loader: yields dicts with ``image`` (B, C, H, W) and ``mask`` (B, 1, H, W); its sampler's and
            dataset's ``set_epoch`` are called at the start of every epoch.
        validate: ``model → mean per-image validation Dice`` (``None`` when there is no validation split).
        device: where to train.
        amp: one of :data:`AMP_MODES` (CUDA only; ignored on CPU, where the caller warns).
        channels_last: feed NHWC tensors.
        context: the distributed context (default: one process); DDP wraps the :class:`TrainStep` when on.
        seed: the run's seed; each epoch re-seeds the random streams from ``(seed, epoch, rank)``.
        compile: ``torch.compile`` the training step (falls back to eager with a warning on failure).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        loss_fn: torch.nn.Module,
        plan: dict[str, Any],
        train_loader: DataLoader,
        validate: Callable[[torch.nn.Module], float] | None,
        device: torch.device,
        amp: str = "none",
        channels_last: bool = False,
        context: DistContext | None = None,
        seed: int = 0,
        compile: bool = False,
    ) -> None:
        if amp not in AMP_MODES:
            raise S2MError(f"--amp {amp}: unknown mode (use one of {', '.join(AMP_MODES)})")
        self.model, self.loss_fn, self.plan = model, loss_fn, plan
        self.train_loader, self.validate, self.device = train_loader, validate, device
        self.context, self.seed = context or DistContext(), seed
        self.amp = amp if device.type == "cuda" else "none"
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.use_fov = bool(plan.get("use_fov"))
        amp_dtype = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[self.amp]
        self.step_module: torch.nn.Module = TrainStep(model, loss_fn, amp_dtype, device.type)
        if self.context.enabled:
            self.step_module = distributed.wrap_ddp(self.step_module, device)
        if compile:
            from torch import _dynamo

            _dynamo.config.suppress_errors = True  # a failed compile warns and runs eagerly
            self.step_module.compile()
        self.optimizer = torch.optim.AdamW(
            [{"params": [p for p in model.parameters() if p.requires_grad]}, *loss_fn.parameter_groups()],
            lr=float(plan["lr"]),
            betas=(0.9, 0.999),
            weight_decay=float(plan["weight_decay"]),
        )
        self.steps_per_epoch = len(train_loader)
        self.epochs = int(plan["epochs"])
        self.scheduler = warmup_cosine(
            self.optimizer,
            total_steps=self.epochs * self.steps_per_epoch,
            warmup_steps=int(plan["warmup_epochs"]) * self.steps_per_epoch,
            min_lr=float(plan["min_lr"]),
        )
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp == "fp16")
        self.epoch = 0
        self.step = 0
        self.best_dice = -math.inf
        self.best_epoch = 0

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue this run (see :func:`s2mnet.engine.resume.save_training_state`)."""
        return {
            "model": self.model.state_dict(),
            "loss": self.loss_fn.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch,
            "step": self.step,
            "best_dice": self.best_dice,
            "best_epoch": self.best_epoch,
            "world_size": self.context.world_size,
            "steps_per_epoch": self.steps_per_epoch,
        }

    def load_state_dict(self, state: dict[str, Any], source: str | Path) -> None:
        """Restore :meth:`state_dict`; a state of another architecture, loss or run shape is a RunError.

        Args:
            state: as returned by :meth:`state_dict` (after a round trip through the state file).
            source: the file it came from, named in errors.
        """
        if state.get("world_size", 1) != self.context.world_size:
            raise RunError(
                f"{source}: the run was trained on {state.get('world_size')} process(es); resume it with the "
                f"same number (torchrun --nproc_per_node), not {self.context.world_size}"
            )
        if state.get("steps_per_epoch") != self.steps_per_epoch:
            raise RunError(
                f"{source}: {state.get('steps_per_epoch')} steps per epoch stored, {self.steps_per_epoch} "
                "now (the data or the batch size changed); cannot resume"
            )
        load_state_into(self.model, state["model"], source)
        try:
            self.loss_fn.load_state_dict(state["loss"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
        except (RuntimeError, ValueError, KeyError) as exc:
            detail = _first_line(exc)
            raise RunError(f"{source}: the stored loss/optimiser state does not fit ({detail})") from None
        if state["scaler"]:  # empty when the stored run trained without fp16
            self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.best_dice, self.best_epoch = float(state["best_dice"]), int(state["best_epoch"])

    def train_epoch(self, progress: Any = None) -> dict[str, float]:
        """One (virtual) epoch; returns the mean loss and the loss's last logged values (MASL's ``last``).

        The mean loss is over all ranks' samples; the loss's logged values are this rank's last batch.
        """
        self.model.train()
        self.loss_fn.train()
        distributed.seed_epoch(
            self.seed, self.epoch, self.context.rank, getattr(self.train_loader, "generator", None)
        )
        for name in ("sampler", "dataset"):
            part = getattr(self.train_loader, name, None)
            if hasattr(part, "set_epoch"):
                part.set_epoch(self.epoch)  # a new order and augmentation stream per epoch
        total, count = 0.0, 0
        non_blocking = self.device.type == "cuda"
        for batch in self.train_loader:
            images = (
                batch["image"].to(self.device, non_blocking=non_blocking).to(memory_format=self.memory_format)
            )
            masks = batch["mask"].to(self.device, non_blocking=non_blocking)
            fov = batch["fov"].to(self.device) if self.use_fov and "fov" in batch else None
            loss = self.step_module(images, masks, fov)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"non-finite training loss at epoch {self.epoch + 1}, step {self.step}"
                )
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), float(self.plan["clip_grad"]))
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            self.step += 1
            total += loss.item() * images.shape[0]
            count += images.shape[0]
            if progress is not None:
                progress.update(1)
                progress.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
        self.epoch += 1
        self.context.broadcast_buffers(self.model)
        total, count = self.context.sum_floats([total, float(count)])
        stats = {"train_loss": total / max(count, 1)}
        stats.update({k: float(v) for k, v in getattr(self.loss_fn, "last", {}).items() if _is_scalar(v)})
        return stats

    def current_lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])


#: Logit given to pixels outside the field of view: sigmoid(-30) ≈ 1e-13, i.e. certain background.
OUTSIDE_FOV_LOGIT = 30.0


def restrict_to_fov(
    logits: torch.Tensor, masks: torch.Tensor, fov: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Make the pixels outside the field of view certain, correct background, for any loss.

    PAPER.md §4 trains fundus models inside the FOV mask. MASL's components (boundary differences,
    compactness, ...) take no pixel weights, so instead of weighting we replace the logits outside the FOV
    by a constant confident background (no gradient flows there, every pixel-wise term is ≈ 0) and set
    the target there to background.

    Args:
        logits: ``(B, C, H, W)``; C = 1 (binary), the class count, or the region count (multi-label).
        masks: ``(B, 1, H, W)`` targets, or ``(B, C, H, W)`` regions (multi-label: every region absent).
        fov: ``(B, 1, H, W)`` bool, True inside the field of view.
    """
    inside = fov.bool()
    background = torch.full_like(logits[:1, :, :1, :1], -OUTSIDE_FOV_LOGIT)
    if logits.shape[1] > 1 and masks.shape[1] == 1:
        background[:, 0] = OUTSIDE_FOV_LOGIT  # multi-class: class 0 (background) certain
    return torch.where(inside, logits, background), torch.where(inside, masks, torch.zeros_like(masks))


def train(config: TrainConfig) -> dict[str, Any]:
    """Train a model as ``s2m train`` does and return a summary (on every rank under ``torchrun``).

    Steps: discover the data, fingerprint it, plan (printed, every choice overridable), split, then build
    the run folder, train with validation and early stopping, write checkpoints, logs and curves. With
    ``config.resume`` the stored plan, split and training state of the run in ``config.out`` are used.

    Returns:
        ``{"run_dir", "best_dice", "best_epoch", "epochs_run", "stopped_early", "stopped_by_time",
        "wall_s"}``.
    """
    context, device_name = distributed.setup(config.device)
    try:
        return _train(config, context, device_name)
    finally:
        distributed.teardown(context)


def _train(config: TrainConfig, context: DistContext, device_name: str) -> dict[str, Any]:
    from s2mnet.data import SegmentationDataset, discover
    from s2mnet.losses import create_loss
    from s2mnet.models import create_model

    say = _printer(config.quiet or not context.is_main)
    start = time.perf_counter()
    device = resolve_device(device_name)
    seed_everything(config.seed)
    if config.sync_bn and context.enabled and device.type != "cuda":
        raise S2MError("--sync-bn: SyncBatchNorm works only on CUDA GPUs (leave it out on CPU)")
    if config.amp != "none" and device.type != "cuda":
        say(f"warning: --amp {config.amp} needs CUDA; training on {device} in float32")

    if config.resume:
        run_config = read_run_config(config.out)
        state = load_training_state(Path(config.out) / TRAIN_STATE)
    else:
        error = None
        if context.is_main:  # the output folder is checked before anything is read or written
            try:
                check_output_dir(config.out, overwrite=config.overwrite, marker=RUN_CONFIG)
            except S2MError as exc:
                error = exc
        context.agree(error)
    index = discover(config.data)
    if config.resume:
        plan, splits = _resumed_plan(config, index, run_config)
    else:
        plan, splits = _new_plan(config, index, device)
    by_id = {case.case_id: case for case in index.cases}
    train_cases = [by_id[case_id] for case_id in splits["train"]]
    val_cases = [by_id[case_id] for case_id in splits["val"]]
    if not train_cases:
        raise S2MError(f"{config.data}: no training cases after the split ({len(index.cases)} cases found)")

    loss_name = str(plan.get("loss") or "masl")
    model = _build(
        "model",
        config.model,
        create_model,
        in_channels=int(plan["in_channels"]),
        num_classes=int(plan["num_classes"]),
        **config.model_args,
    )
    loss_fn = _build(
        "loss",
        loss_name,
        create_loss,
        num_classes=int(plan["num_classes"]),
        multilabel=plan.get("label_mode") == "multilabel",
        **config.loss_args,
    )
    if config.sync_bn and context.enabled:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    elif config.sync_bn:
        say("warning: --sync-bn has no effect in a single process (run under torchrun)")

    train_set = SegmentationDataset(train_cases, plan, train=True, seed=config.seed)
    loader = _train_loader(train_set, plan, config, device, context)
    per_rank_batch = int(loader.batch_size)
    batch_info = {
        "world_size": context.world_size,
        "backend": context.backend,
        "batch_size_per_rank": per_rank_batch,
        "effective_batch_size": per_rank_batch * context.world_size,
    }
    run_dir = Path(config.out)
    say(f"s2m train: {len(index.cases)} cases in {config.data} ({index.layout}); device {device}")
    say(f"splits: {len(train_cases)} train, {len(val_cases)} val, {len(splits.get('test', []))} test")
    say(format_plan(plan))
    say(
        f"batch size {per_rank_batch} per process x {context.world_size} process(es) = effective batch size "
        f"{batch_info['effective_batch_size']}" + (f" ({context.backend} DDP)" if context.enabled else "")
    )
    model.to(device)
    loss_fn.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    say(f"model {config.model}: {sum(p.numel() for p in model.parameters()):,} parameters; loss {loss_name}")
    if context.is_main:
        if config.resume:
            run_config = _resumed_run_config(run_dir, run_config, int(state["trainer"]["epoch"]), config)
        else:
            run_config = _new_run_config(config, plan, splits, model.config, loss_name, device, batch_info)
        write_run_config(run_dir, run_config)

    validate = _make_validator(val_cases, plan, device) if val_cases else None
    if validate is None:
        say("warning: no validation cases; the last epoch is also saved as the best checkpoint")
    trainer = Trainer(
        model,
        loss_fn,
        plan,
        loader,
        validate,
        device,
        config.amp,
        config.channels_last,
        context=context,
        seed=config.seed,
        compile=config.compile,
    )
    logger = RunLogger(run_dir, tensorboard=config.tensorboard) if context.is_main else None
    if config.resume:
        trainer.load_state_dict(state["trainer"], run_dir / TRAIN_STATE)
        if logger is not None:
            logger.rows = [dict(row) for row in state["rows"]]
        say(f"resuming after epoch {trainer.epoch} of {trainer.epochs} (step {trainer.step})")
    summary = _fit(trainer, logger, run_dir, config, say, start, state if config.resume else None)
    distributed.dump_rank_state(context, _final_tensors(trainer))
    summary["wall_s"] = round(time.perf_counter() - start, 1)
    summary["run_dir"] = str(run_dir)
    if logger is not None:
        logger.write_curves()
        logger.close()
        run_config.update(
            status="finished",
            best={"epoch": summary["best_epoch"], "dice": summary["best_dice"]},
            epochs_run=summary["epochs_run"],
            stopped_early=summary["stopped_early"],
            stopped_by_time=summary["stopped_by_time"],
            wall_s=summary["wall_s"],
            loss_state={k: float(v) for k, v in getattr(loss_fn, "last", {}).items() if _is_scalar(v)},
        )
        write_run_config(run_dir, run_config)
    say(
        f"done in {summary['wall_s']:.0f} s: best validation Dice {summary['best_dice']:.4f} at epoch "
        f"{summary['best_epoch']}; run saved to {run_dir}"
    )
    context.barrier()
    return summary


def _new_run_config(
    config: TrainConfig,
    plan: dict[str, Any],
    splits: dict,
    model_config: dict[str, Any],
    loss_name: str,
    device: torch.device,
    batch_info: dict[str, Any],
) -> dict[str, Any]:
    """Create the run folder (``--overwrite`` removes only s2m's files), write the plan and the split, and
    return the ``run.json`` content of a new run (``"status": "running"``)."""
    from s2mnet.data import save_splits

    run_dir = prepare_output_dir(
        config.out, overwrite=config.overwrite, marker=RUN_CONFIG, owned=RUN_FILES + EVAL_DIRS
    )
    atomic_write_json(run_dir / PLAN_JSON, plan)
    save_splits(splits, run_dir / SPLITS_JSON)
    return {
        "status": "running",
        "model": model_config,
        "plan": plan,
        "loss": {"name": loss_name, **config.loss_args},
        "num_classes": int(plan["num_classes"]),
        "in_channels": int(plan["in_channels"]),
        "classes": plan.get("classes", _default_class_names(int(plan["num_classes"]))),
        "seed": config.seed,
        "data": str(Path(config.data).resolve()),
        "splits": SPLITS_JSON,
        "command": config.command or sys.argv,
        "train_config": _jsonable(asdict(config)),
        "device": str(device),
        "distributed": batch_info,
        "versions": _versions(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _resumed_run_config(
    run_dir: Path, run_config: dict[str, Any], epoch: int, config: TrainConfig
) -> dict[str, Any]:
    """``run.json`` of a resumed run: running again, with the resume recorded; stale temporaries removed."""
    _remove_stale_temporaries(run_dir)
    resumed = {
        "from_epoch": epoch,
        "command": config.command or sys.argv,
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    return {**run_config, "status": "running", "resumed": [*run_config.get("resumed", []), resumed]}


def _new_plan(config: TrainConfig, index: Any, device: torch.device) -> tuple[dict[str, Any], dict]:
    """Fingerprint, plan and split a new run (every rank computes the same, deterministically)."""
    from s2mnet.data import fingerprint, load_splits, make_plan, make_splits
    from s2mnet.data.labels import expect_label_maps

    overrides = dict(config.plan_overrides)
    if config.loss is not None:
        overrides["loss"] = config.loss
    expect_label_maps(index, overrides)
    plan = add_training_recipe(make_plan(fingerprint(index), device=device.type, overrides=overrides), config)
    splits = load_splits(config.splits, index) if config.splits else make_splits(index, seed=config.seed)
    return plan, splits


def _resumed_plan(config: TrainConfig, index: Any, run_config: dict[str, Any]) -> tuple[dict[str, Any], dict]:
    """The stored plan and split of the run being resumed."""
    from s2mnet.data import load_splits

    run_dir = Path(config.out)
    plan = run_config.get("plan")
    if not isinstance(plan, dict):
        raise RunError(f"{run_dir / RUN_CONFIG}: no plan stored; this run cannot be resumed")
    return plan, load_splits(run_dir / SPLITS_JSON, index)


def _remove_stale_temporaries(run_dir: Path) -> None:
    """Delete temporary files a killed write left behind (their targets are intact, see io_utils)."""
    for name in RUN_FILES:
        for stale in run_dir.glob(f".{name}.*.tmp*"):
            if stale.is_file():
                stale.unlink()


def _final_tensors(trainer: Trainer) -> dict[str, torch.Tensor]:
    """Model and loss state of this rank, for :func:`s2mnet.engine.distributed.dump_rank_state`."""
    tensors = {f"model.{k}": v for k, v in trainer.model.state_dict().items()}
    tensors.update({f"loss.{k}": v for k, v in trainer.loss_fn.state_dict().items()})
    return tensors


def _fit(
    trainer: Trainer,
    logger: RunLogger | None,
    run_dir: Path,
    config: TrainConfig,
    say: Callable[[str], None],
    start: float,
    resumed: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The epoch loop: train, validate, checkpoint, log, stop early; save the training state every epoch.

    Rank 0 (``logger`` not ``None``) validates and takes the stopping decisions; they are broadcast so that
    all ranks stop together. ``resumed`` is a loaded training state: the loop continues after its epoch.
    """
    from tqdm.auto import tqdm

    plan, context = trainer.plan, trainer.context
    epochs, val_every, patience = trainer.epochs, int(plan["val_every"]), int(plan["patience"])
    show_bar = (
        (not config.quiet)
        and context.is_main
        and (config.progress if config.progress is not None else sys.stderr.isatty())
    )
    progress = tqdm(
        total=epochs * trainer.steps_per_epoch,
        initial=trainer.step,
        unit="step",
        dynamic_ncols=True,
        disable=not show_bar,
    )
    stopped_early = bool(resumed and resumed.get("stopped_early"))
    stopped_by_time = False
    train_start = time.perf_counter() - (float(resumed.get("elapsed_s", 0.0)) if resumed else 0.0)
    try:
        for epoch in range(trainer.epoch + 1, 0 if stopped_early else epochs + 1):
            progress.set_description(f"epoch {epoch}/{epochs}")
            epoch_start = time.perf_counter()
            row: dict[str, Any] = {"epoch": epoch}
            row.update(trainer.train_epoch(progress))
            val_dice, out_of_time = math.nan, False
            if context.is_main:
                limit = config.time_limit_s
                out_of_time = limit is not None and time.perf_counter() - start > limit
                last_epoch = epoch == epochs or out_of_time
                if trainer.validate is not None and (epoch % val_every == 0 or last_epoch):
                    val_dice = trainer.validate(trainer.model)
            val_dice, out_of_time = context.broadcast_floats([val_dice, float(out_of_time)])
            if not math.isnan(val_dice):
                row["val_dice"] = val_dice
            improved = _update_best(trainer, row.get("val_dice"), epoch)
            stalled = epoch - trainer.best_epoch >= patience
            stopped_early = patience > 0 and trainer.validate is not None and stalled and epoch < epochs
            stopped_by_time = bool(out_of_time) and epoch < epochs and not stopped_early
            elapsed = time.perf_counter() - train_start
            row.update(
                step=trainer.step,
                lr=trainer.current_lr(),
                best_dice=trainer.best_dice,
                epoch_s=time.perf_counter() - epoch_start,
                elapsed_s=elapsed,
            )
            if logger is not None:
                _save_epoch(trainer, logger, run_dir, row, improved, stopped_early, elapsed)
                eta = elapsed / epoch * (epochs - epoch)
                val_text = f"val Dice {row['val_dice']:.4f}" if "val_dice" in row else "val -"
                say(
                    f"epoch {epoch:>3}/{epochs}  loss {row['train_loss']:.4f}  {val_text}  best "
                    f"{max(trainer.best_dice, 0):.4f} (epoch {trainer.best_epoch})  lr {row['lr']:.2e}  "
                    f"{row['epoch_s']:.1f} s/epoch  ETA {_duration(eta)}"
                )
            if stopped_early:
                say(f"early stopping: no validation Dice improvement for {patience} epochs")
                break
            if stopped_by_time:
                say(f"time limit of {config.time_limit_s:.0f} s reached after epoch {epoch}; stopping")
                break
    finally:
        progress.close()
    return {
        "best_dice": float(trainer.best_dice),
        "best_epoch": trainer.best_epoch,
        "epochs_run": trainer.epoch,
        "stopped_early": stopped_early,
        "stopped_by_time": stopped_by_time,
    }


def _save_epoch(
    trainer: Trainer,
    logger: RunLogger,
    run_dir: Path,
    row: dict[str, Any],
    improved: bool,
    stopped_early: bool,
    elapsed: float,
) -> None:
    """Rank 0's writes after an epoch: weights, log row, then the training state (last, so that a state
    on disk always comes with the weights and log rows of its epoch)."""
    metadata = {"epoch": row["epoch"], "val_dice": row.get("val_dice")}
    weights = trainer.model.state_dict()
    save_weights(run_dir / LAST_WEIGHTS, weights, metadata)
    if improved:
        save_weights(run_dir / BEST_WEIGHTS, weights, metadata)
    logger.log_epoch(row)
    save_training_state(
        run_dir / TRAIN_STATE,
        {
            "trainer": trainer.state_dict(),
            "rows": logger.rows,
            "stopped_early": stopped_early,
            "elapsed_s": elapsed,
        },
    )


def _build(kind: str, name: str, factory: Callable[..., torch.nn.Module], **kwargs: Any) -> torch.nn.Module:
    """``factory(name, **kwargs)``; an unknown name or a bad ``--model-arg``/``--loss-arg`` → S2MError."""
    try:
        return factory(name, **kwargs)
    except (KeyError, ValueError, TypeError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        raise S2MError(f"--{kind} {name}: cannot build it ({message})") from None


def _update_best(trainer: Trainer, val_dice: float | None, epoch: int) -> bool:
    """Track the best validation Dice; without validation every epoch counts as the best (= last)."""
    if trainer.validate is None:
        trainer.best_epoch = epoch
        return True
    if val_dice is not None and val_dice > trainer.best_dice:
        trainer.best_dice, trainer.best_epoch = float(val_dice), epoch
        return True
    return False


def _train_loader(
    dataset: Any, plan: dict[str, Any], config: TrainConfig, device: torch.device, context: DistContext
) -> DataLoader:
    """Seeded, shuffled loader over this rank's shard of the dataset's (virtual) epoch.

    The dataset's length is ``plan["samples_per_epoch"]`` (PAPER.md §4: small sets are expanded per epoch)
    and its augmentation depends only on (seed, epoch, index), so results do not depend on ``workers``.
    The order comes from :func:`s2mnet.engine.distributed.make_sampler` (seed + epoch, one shard per rank).
    """
    sampler = distributed.make_sampler(dataset, context, config.seed)
    workers = config.workers
    if workers is None:
        workers = 0 if device.type == "cpu" else min(8, os.cpu_count() or 1)
    shard = len(sampler)
    batch_size = min(int(plan["batch_size"]), shard)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        drop_last=shard >= 2 * batch_size,  # no 1-sample last batch for BatchNorm; keep tiny sets whole
        worker_init_fn=_seed_worker,
        generator=torch.Generator().manual_seed(config.seed),
    )


def _seed_worker(worker_id: int) -> None:
    """Seed Python and NumPy in each worker from torch's per-worker seed (derived from the loader's)."""
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 (libraries draw from the legacy global generator)


def _make_validator(
    cases: list[Any], plan: dict[str, Any], device: torch.device
) -> Callable[[torch.nn.Module], float]:
    """Mean per-image Dice over ``cases`` at their original size, with the inference of ``s2m evaluate``.

    Same steps as :func:`s2mnet.engine.evaluate.evaluate_run` (preprocess, whole-image prediction,
    threshold 0.5, FOV when the plan uses it, the empty-mask policy), without the distance metrics.
    """
    from s2mnet.data import read_fov, read_image
    from s2mnet.data.labels import is_multilabel, read_target, region_names
    from s2mnet.engine.evaluate import predict_mask
    from s2mnet.engine.metrics import case_metrics

    num_classes = int(plan["num_classes"])
    regions = region_names(plan) if is_multilabel(plan) else None
    use_fov = bool(plan.get("use_fov"))

    def validate(model: torch.nn.Module) -> float:
        was_training = model.training
        model.eval()
        scores = []
        for case in cases:
            image = read_image(case)
            truth = read_target(case, plan)
            fov = read_fov(case.fov) if use_fov and case.fov is not None else None
            pred = predict_mask(model, image, plan, device=device)
            scores.append(
                case_metrics(pred, truth, num_classes=num_classes, fov=fov, distances=False, regions=regions)[
                    "dice"
                ]
            )
        model.train(was_training)
        return float(np.mean(scores))

    return validate


def format_plan(plan: dict[str, Any]) -> str:
    """The plan as aligned ``key: value  (reason)`` lines, as printed by ``s2m train``."""
    reasons = plan.get("reasons", {})
    lines = ["plan:"]
    for key, value in plan.items():
        if key == "reasons":
            continue
        reason = reasons.get(key)
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        lines.append((f"  {key:<18} {shown:<16}" + (f" ({reason})" if reason else "")).rstrip())
    return "\n".join(lines)


def _default_class_names(num_classes: int) -> list[str]:
    return (
        ["background", "foreground"] if num_classes == 1 else ["background", *map(str, range(1, num_classes))]
    )


def _versions() -> dict[str, str]:
    import monai

    from s2mnet import __version__

    return {
        "s2mnet": __version__,
        "torch": torch.__version__,
        "monai": monai.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _is_scalar(value: Any) -> bool:
    return isinstance(value, int | float) or (isinstance(value, torch.Tensor) and value.numel() == 1)


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    return (
        f"{seconds // 60}:{seconds % 60:02d}"
        if seconds < 3600
        else f"{seconds // 3600}h{seconds // 60 % 60:02d}"
    )


def _printer(quiet: bool) -> Callable[[str], None]:
    if quiet:
        return lambda message: None
    from tqdm.auto import tqdm

    return lambda message: tqdm.write(message)
