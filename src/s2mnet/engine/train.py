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
checkpoint stays usable. Distributed training and resuming are not implemented yet; the :class:`Trainer`
keeps all its state in one object (:meth:`Trainer.state_dict`) so that they can be added.
"""

from __future__ import annotations

import contextlib
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
from torch.utils.data import DataLoader, RandomSampler

from s2mnet.engine.checkpoint import RUN_CONFIG, save_weights, write_run_config
from s2mnet.engine.outputs import check_output_dir, prepare_output_dir
from s2mnet.engine.run_log import CURVES_PNG, LOG_CSV, TENSORBOARD_DIR, RunLogger
from s2mnet.engine.schedule import default_warmup_epochs, warmup_cosine
from s2mnet.errors import S2MError
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
        amp: mixed precision on CUDA: ``"none"``, ``"bf16"`` or ``"fp16"`` (with a gradient scaler).
        channels_last: NHWC memory format (faster convolutions on recent GPUs).
        model_args, loss_args: keyword overrides for ``create_model`` / ``create_loss``.
        time_limit_s: stop after the epoch during which this wall time was exceeded (a safety budget).
        overwrite: replace an earlier s2m run in ``out`` (other files there are kept).
        quiet: print nothing; ``progress`` (None → only on a terminal) shows a tqdm bar with ETA.
        tensorboard: write TensorBoard event files.
        command: the command line to store in ``run.json``.
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
    model_args: dict[str, Any] = field(default_factory=dict)
    loss_args: dict[str, Any] = field(default_factory=dict)
    time_limit_s: float | None = None
    overwrite: bool = False
    quiet: bool = False
    progress: bool | None = None
    tensorboard: bool = True
    command: list[str] | None = None


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


class Trainer:
    """One training run: model, loss, optimiser, schedule, data and the best-so-far bookkeeping.

    Args:
        model: the network (already on ``device``).
        loss_fn: a loss with ``parameter_groups()`` (MASL's learnable weights are optimised with the model).
        plan: the completed plan (:func:`add_training_recipe`).
        train_loader: yields dicts with ``image`` (B, C, H, W) and ``mask`` (B, 1, H, W).
        validate: ``model → mean per-image validation Dice`` (``None`` when there is no validation split).
        device: where to train.
        amp: one of :data:`AMP_MODES` (ignored on CPU).
        channels_last: feed NHWC tensors.
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
    ) -> None:
        if amp not in AMP_MODES:
            raise S2MError(f"--amp {amp}: unknown mode (use one of {', '.join(AMP_MODES)})")
        self.model, self.loss_fn, self.plan = model, loss_fn, plan
        self.train_loader, self.validate, self.device = train_loader, validate, device
        self.amp = amp if device.type == "cuda" else "none"
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.use_fov = bool(plan.get("use_fov"))
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
        """Everything needed to continue this run (for a future resume / DDP)."""
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
        }

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.amp == "none":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.amp == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def train_epoch(self, progress: Any = None) -> dict[str, float]:
        """One (virtual) epoch; returns the mean loss and the loss's last logged values (MASL's ``last``)."""
        self.model.train()
        self.loss_fn.train()
        dataset = getattr(self.train_loader, "dataset", None)
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(self.epoch)  # a new augmentation stream per epoch
        total, count = 0.0, 0
        non_blocking = self.device.type == "cuda"
        for batch in self.train_loader:
            images = (
                batch["image"].to(self.device, non_blocking=non_blocking).to(memory_format=self.memory_format)
            )
            masks = batch["mask"].to(self.device, non_blocking=non_blocking)
            with self._autocast():
                logits = self.model(images)
            if self.use_fov and "fov" in batch:
                logits, masks = restrict_to_fov(logits.float(), masks, batch["fov"].to(self.device))
            loss = self.loss_fn(logits.float(), masks)  # the loss always runs in float32
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
        logits: ``(B, C, H, W)``; C = 1 (binary) or the class count.
        masks: ``(B, 1, H, W)`` targets.
        fov: ``(B, 1, H, W)`` bool, True inside the field of view.
    """
    inside = fov.bool()
    background = torch.full_like(logits[:1, :, :1, :1], -OUTSIDE_FOV_LOGIT)
    if logits.shape[1] > 1:
        background[:, 0] = OUTSIDE_FOV_LOGIT  # multi-class: class 0 (background) certain
    return torch.where(inside, logits, background), torch.where(inside, masks, torch.zeros_like(masks))


def train(config: TrainConfig) -> dict[str, Any]:
    """Train a model as ``s2m train`` does and return a summary.

    Steps: discover the data, fingerprint it, plan (printed, every choice overridable), split, then build
    the run folder, train with validation and early stopping, write checkpoints, logs and curves.

    Returns:
        ``{"run_dir", "best_dice", "best_epoch", "epochs_run", "stopped_early", "stopped_by_time",
        "wall_s"}``.
    """
    from s2mnet.data import (
        SegmentationDataset,
        discover,
        fingerprint,
        load_splits,
        make_plan,
        make_splits,
        save_splits,
    )
    from s2mnet.losses import create_loss
    from s2mnet.models import create_model

    say = _printer(config.quiet)
    start = time.perf_counter()
    device = resolve_device(config.device)
    seed_everything(config.seed)

    # The output folder and the data are checked before anything is written.
    check_output_dir(config.out, overwrite=config.overwrite, marker=RUN_CONFIG)
    index = discover(config.data)
    facts = fingerprint(index)
    overrides = dict(config.plan_overrides)
    if config.loss is not None:
        overrides["loss"] = config.loss
    plan = add_training_recipe(make_plan(facts, device=device.type, overrides=overrides), config)
    splits = load_splits(config.splits, index) if config.splits else make_splits(index, seed=config.seed)
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
    loss_fn = _build("loss", loss_name, create_loss, num_classes=int(plan["num_classes"]), **config.loss_args)

    run_dir = prepare_output_dir(
        config.out, overwrite=config.overwrite, marker=RUN_CONFIG, owned=RUN_FILES + EVAL_DIRS
    )
    say(f"s2m train: {len(index.cases)} cases in {config.data} ({index.layout}); device {device}")
    say(f"splits: {len(train_cases)} train, {len(val_cases)} val, {len(splits.get('test', []))} test")
    say(format_plan(plan))
    model.to(device)
    loss_fn.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    say(f"model {config.model}: {sum(p.numel() for p in model.parameters()):,} parameters; loss {loss_name}")

    run_config = {
        "status": "running",
        "model": model.config,
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
        "versions": _versions(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    write_run_config(run_dir, run_config)
    atomic_write_json(run_dir / PLAN_JSON, plan)
    save_splits(splits, run_dir / SPLITS_JSON)

    train_set = SegmentationDataset(train_cases, plan, train=True, seed=config.seed)
    loader = _train_loader(train_set, plan, config, device)
    validate = _make_validator(val_cases, plan, device) if val_cases else None
    if validate is None:
        say("warning: no validation cases; the last epoch is also saved as the best checkpoint")
    trainer = Trainer(model, loss_fn, plan, loader, validate, device, config.amp, config.channels_last)

    logger = RunLogger(run_dir, tensorboard=config.tensorboard)
    summary = _fit(trainer, logger, run_dir, config, say, start)
    logger.write_curves()
    logger.close()

    run_config.update(
        status="finished",
        best={"epoch": summary["best_epoch"], "dice": summary["best_dice"]},
        epochs_run=summary["epochs_run"],
        stopped_early=summary["stopped_early"],
        stopped_by_time=summary["stopped_by_time"],
        wall_s=round(time.perf_counter() - start, 1),
        loss_state={k: float(v) for k, v in getattr(loss_fn, "last", {}).items() if _is_scalar(v)},
    )
    write_run_config(run_dir, run_config)
    summary["wall_s"] = run_config["wall_s"]
    summary["run_dir"] = str(run_dir)
    say(
        f"done in {summary['wall_s']:.0f} s: best validation Dice {summary['best_dice']:.4f} at epoch "
        f"{summary['best_epoch']}; run saved to {run_dir}"
    )
    return summary


def _fit(
    trainer: Trainer,
    logger: RunLogger,
    run_dir: Path,
    config: TrainConfig,
    say: Callable[[str], None],
    start: float,
) -> dict[str, Any]:
    """The epoch loop: train, validate, checkpoint, log, stop early."""
    from tqdm.auto import tqdm

    plan = trainer.plan
    epochs, val_every, patience = trainer.epochs, int(plan["val_every"]), int(plan["patience"])
    show_bar = (not config.quiet) and (
        config.progress if config.progress is not None else sys.stderr.isatty()
    )
    progress = tqdm(
        total=epochs * trainer.steps_per_epoch, unit="step", dynamic_ncols=True, disable=not show_bar
    )
    stopped_early = stopped_by_time = False
    train_start = time.perf_counter()
    try:
        for epoch in range(1, epochs + 1):
            progress.set_description(f"epoch {epoch}/{epochs}")
            epoch_start = time.perf_counter()
            row: dict[str, Any] = {"epoch": epoch}
            row.update(trainer.train_epoch(progress))
            out_of_time = (
                config.time_limit_s is not None and time.perf_counter() - start > config.time_limit_s
            )
            last_epoch = epoch == epochs or out_of_time
            if trainer.validate is not None and (epoch % val_every == 0 or last_epoch):
                row["val_dice"] = trainer.validate(trainer.model)
            improved = _update_best(trainer, row.get("val_dice"), epoch)
            metadata = {"epoch": epoch, "val_dice": row.get("val_dice")}
            save_weights(run_dir / LAST_WEIGHTS, trainer.model.state_dict(), metadata)
            if improved:
                save_weights(run_dir / BEST_WEIGHTS, trainer.model.state_dict(), metadata)
            elapsed = time.perf_counter() - train_start
            row.update(
                step=trainer.step,
                lr=trainer.current_lr(),
                best_dice=trainer.best_dice,
                epoch_s=time.perf_counter() - epoch_start,
                elapsed_s=elapsed,
            )
            logger.log_epoch(row)
            eta = elapsed / epoch * (epochs - epoch)
            val_text = f"val Dice {row['val_dice']:.4f}" if "val_dice" in row else "val -"
            say(
                f"epoch {epoch:>3}/{epochs}  loss {row['train_loss']:.4f}  {val_text}  best "
                f"{max(trainer.best_dice, 0):.4f} (epoch {trainer.best_epoch})  lr {row['lr']:.2e}  "
                f"{row['epoch_s']:.1f} s/epoch  ETA {_duration(eta)}"
            )
            stalled = epoch - trainer.best_epoch >= patience
            if patience > 0 and trainer.validate is not None and stalled and epoch < epochs:
                say(f"early stopping: no validation Dice improvement for {patience} epochs")
                stopped_early = True
                break
            if out_of_time and epoch < epochs:
                say(f"time limit of {config.time_limit_s:.0f} s reached after epoch {epoch}; stopping")
                stopped_by_time = True
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
    dataset: Any, plan: dict[str, Any], config: TrainConfig, device: torch.device
) -> DataLoader:
    """Seeded, shuffled loader over the dataset's (virtual) epoch.

    The dataset's length is ``plan["samples_per_epoch"]`` (PAPER.md §4: small sets are expanded per epoch)
    and its augmentation depends only on (seed, epoch, index), so results do not depend on ``workers``.
    """
    generator = torch.Generator().manual_seed(config.seed)
    workers = config.workers
    if workers is None:
        workers = 0 if device.type == "cpu" else min(8, os.cpu_count() or 1)
    batch_size = min(int(plan["batch_size"]), len(dataset))
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=RandomSampler(dataset, generator=generator),
        num_workers=workers,
        pin_memory=device.type == "cuda",
        drop_last=len(dataset)
        >= 2 * batch_size,  # no 1-sample last batch for BatchNorm; keep tiny sets whole
        worker_init_fn=_seed_worker,
        generator=generator,
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
    from s2mnet.data import read_fov, read_image, read_mask
    from s2mnet.engine.evaluate import predict_mask
    from s2mnet.engine.metrics import case_metrics

    num_classes = int(plan["num_classes"])
    use_fov = bool(plan.get("use_fov"))

    def validate(model: torch.nn.Module) -> float:
        was_training = model.training
        model.eval()
        scores = []
        for case in cases:
            image = read_image(case.image)
            truth = read_mask(case.masks, multiclass=num_classes > 1)
            fov = read_fov(case.fov) if use_fov and case.fov is not None else None
            pred = predict_mask(model, image, plan, device=device)
            scores.append(
                case_metrics(pred, truth, num_classes=num_classes, fov=fov, distances=False)["dice"]
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
