"""One training run's state and step: model and loss as one DDP-able module, AdamW, schedule, AMP.

Recipe (paper §4, docs/method.md "Training"): AdamW (β = 0.9, 0.999, weight decay 1e-4) over the model's
parameters AND the loss's learnable weights (``loss.parameter_groups()``, MASL's w); learning rate with a
linear warm-up then cosine decay (:mod:`s2mnet.engine.schedule`); gradient-norm clipping (model
parameters; MASL's weights are kept in [0.1, 10] by the loss itself). The values come from the plan
(:mod:`s2mnet.planning.recipe`).

Under ``torchrun`` (:mod:`s2mnet.engine.distributed`) model and loss are wrapped together in one
:class:`TrainStep` module so that DDP averages the gradients of MASL's learnable weights with the model's
(one mechanism, and the weights stay identical on all ranks because they start from rank 0's broadcast
values and take identical steps).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from s2mnet.engine import distributed
from s2mnet.engine.checkpoint import load_state_into
from s2mnet.engine.config import AMP_MODES
from s2mnet.engine.distributed import DistContext
from s2mnet.engine.schedule import warmup_cosine
from s2mnet.errors import RunError, S2MError, first_line


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
            detail = first_line(exc)
            raise RunError(f"{source}: the stored loss/optimiser state does not fit ({detail})") from None
        if state["scaler"]:  # empty when the stored run trained without fp16
            self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.best_dice, self.best_epoch = float(state["best_dice"]), int(state["best_epoch"])

    def train_epoch(
        self,
        progress: Any = None,
        on_step: Callable[[float], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> dict[str, float]:
        """One (virtual) epoch; returns the mean loss and the loss's last logged values (MASL's ``last``).

        The mean loss is over all ranks' samples; the loss's logged values are this rank's last batch.

        Args:
            progress: a tqdm bar advanced by one per step.
            on_step: called with the step's loss after every optimiser step.
            should_stop: asked after every step (single process only); when it answers True the epoch is
                abandoned: ``{"interrupted": 1.0}`` is returned and :attr:`epoch` is not advanced, so the
                state on disk (the last finished epoch) stays the one to resume from.
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
            if on_step is not None:
                on_step(loss.item())
            if should_stop is not None and not self.context.enabled and should_stop():
                return {"interrupted": 1.0, "train_loss": total / max(count, 1)}
        self.epoch += 1
        self.context.broadcast_buffers(self.model)
        total, count = self.context.sum_floats([total, float(count)])
        stats = {"train_loss": total / max(count, 1)}
        stats.update({k: float(v) for k, v in getattr(self.loss_fn, "last", {}).items() if is_scalar(v)})
        return stats

    def recalibrate_batchnorm(self, batches: int) -> None:
        """Re-estimate every BatchNorm's running statistics from ``batches`` training batches ("precise
        BN", Wu & Johnson 2021, "Rethinking 'Batch' in BatchNorm"): forward passes in train mode without
        gradients, ``momentum=None`` (an exact average); no weight changes.

        Early in training the running statistics (momentum 0.1 from mean 0 / variance 1) lag behind the
        weights, and eval-mode predictions underestimate what the weights have learnt (docs/speed.md,
        "Why S2M-Net seems to start slowly"). The batches are the first of the epoch just trained (same
        order and augmentation), so a resumed run recalibrates identically; under DDP every rank
        recalibrates on its shard and rank 0's statistics are then broadcast.
        """
        norms = [m for m in self.model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        if batches < 1 or not norms:
            return
        momenta = [norm.momentum for norm in norms]
        for norm in norms:
            norm.reset_running_stats()
            norm.momentum = None
        was_training = self.model.training
        self.model.train()
        with torch.no_grad():
            for count, batch in enumerate(self.train_loader):
                if count == batches:
                    break
                self.model(batch["image"].to(self.device).to(memory_format=self.memory_format))
        for norm, momentum in zip(norms, momenta, strict=True):
            norm.momentum = momentum
        self.model.train(was_training)
        self.context.broadcast_buffers(self.model)

    def current_lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])


#: Logit given to pixels outside the field of view: sigmoid(-30) ≈ 1e-13, i.e. certain background.
OUTSIDE_FOV_LOGIT = 30.0


def restrict_to_fov(
    logits: torch.Tensor, masks: torch.Tensor, fov: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Make the pixels outside the field of view certain, correct background, for any loss.

    method.md §4 trains fundus models inside the FOV mask. MASL's components (boundary differences,
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


def is_scalar(value: Any) -> bool:
    return isinstance(value, int | float) or (isinstance(value, torch.Tensor) and value.numel() == 1)
