"""The epoch loop of ``s2m train``: train, validate, checkpoint, log, stop early or on the time limit.

After every epoch the weights, the log row and then the whole training state (:meth:`Trainer.state_dict`,
the log rows) are written atomically (:mod:`s2mnet.engine.resume`), so ``s2m train --resume RUN``
continues a killed run exactly. Rank 0 alone validates, logs and writes; its decisions are broadcast.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from s2mnet.engine.checkpoint import save_weights
from s2mnet.engine.config import TrainConfig
from s2mnet.engine.progress import Heartbeat, RunClock, duration
from s2mnet.engine.resume import save_training_state
from s2mnet.engine.run_log import RunLogger
from s2mnet.engine.rundir import BEST_WEIGHTS, LAST_WEIGHTS, TRAIN_STATE
from s2mnet.engine.trainer import Trainer


def fit(
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
    precise_bn = int(plan.get("precise_bn") or 0)
    min_epochs = int(plan.get("min_epochs") or 0)
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
    talk = not config.quiet and context.is_main
    validations = sum(1 for e in range(1, epochs + 1) if e % val_every == 0 or e == epochs)
    estimate = getattr(trainer.validate, "estimate_s", None)
    clock = RunClock(
        total_steps=epochs * trainer.steps_per_epoch,
        validations=validations if trainer.validate is not None else 0,
        batch_size=int(getattr(trainer.train_loader, "batch_size", 1) or 1),
        validation_estimate_s=estimate(trainer.model) if (talk and callable(estimate)) else None,
    )
    heartbeat = Heartbeat(say, enabled=talk and not show_bar)
    limit = config.time_limit_s

    def out_of_time() -> bool:
        return limit is not None and time.perf_counter() - start > limit

    def on_step(loss: float) -> None:
        clock.step_done()
        if talk and (line := clock.estimate_line()) is not None:
            say(line)
        heartbeat.maybe(lambda: _progress_line(trainer, clock, loss))

    try:
        for epoch in range(trainer.epoch + 1, 0 if stopped_early else epochs + 1):
            progress.set_description(f"epoch {epoch}/{epochs}")
            epoch_start = time.perf_counter()
            clock.restart()
            row: dict[str, Any] = {"epoch": epoch}
            row.update(trainer.train_epoch(progress, on_step=on_step, should_stop=out_of_time))
            if row.pop("interrupted", 0.0):
                stopped_by_time = True
                say(
                    f"time limit of {limit:.0f} s reached during epoch {epoch} (step {trainer.step}); "
                    f"stopping. The run can be continued from epoch {trainer.epoch} with --resume"
                )
                break
            val_dice, timed_out = math.nan, False
            if precise_bn and trainer.validate is not None and (epoch % val_every == 0 or epoch == epochs):
                trainer.recalibrate_batchnorm(precise_bn)
            if context.is_main:
                timed_out = out_of_time()
                last_epoch = epoch == epochs or timed_out
                if trainer.validate is not None and (epoch % val_every == 0 or last_epoch):
                    validation_start = time.perf_counter()
                    val_dice = trainer.validate(trainer.model)
                    clock.validation_done(time.perf_counter() - validation_start)
            val_dice, timed_out = context.broadcast_floats([val_dice, float(timed_out)])
            if not math.isnan(val_dice):
                row["val_dice"] = val_dice
            improved = _update_best(trainer, row.get("val_dice"), epoch)
            stalled = epoch - trainer.best_epoch >= patience and epoch >= min_epochs
            stopped_early = patience > 0 and trainer.validate is not None and stalled and epoch < epochs
            stopped_by_time = bool(timed_out) and epoch < epochs and not stopped_early
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
                eta = clock.eta(trainer.step)
                val_text = f"val Dice {row['val_dice']:.4f}" if "val_dice" in row else "val -"
                say(
                    f"epoch {epoch:>3}/{epochs}  loss {row['train_loss']:.4f}  {val_text}  best "
                    f"{max(trainer.best_dice, 0):.4f} (epoch {trainer.best_epoch})  lr {row['lr']:.2e}  "
                    f"{row['epoch_s']:.1f} s/epoch  ETA {duration(eta) if eta is not None else '-'}"
                )
            if stopped_early:
                say(f"early stopping: no validation Dice improvement for {patience} epochs")
                break
            if stopped_by_time:
                say(f"time limit of {limit:.0f} s reached after epoch {epoch}; stopping")
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


def _update_best(trainer: Trainer, val_dice: float | None, epoch: int) -> bool:
    """Track the best validation Dice; without validation every epoch counts as the best (= last)."""
    if trainer.validate is None:
        trainer.best_epoch = epoch
        return True
    if val_dice is not None and val_dice > trainer.best_dice:
        trainer.best_dice, trainer.best_epoch = float(val_dice), epoch
        return True
    return False


def _progress_line(trainer: Trainer, clock: RunClock, loss: float) -> str:
    """``epoch 3/40 step 120/320 (37 %)  loss 0.41  6.2 img/s  ETA 4:10 (validation included)``."""
    total = trainer.epochs * trainer.steps_per_epoch
    per_step = clock.seconds_per_step() or 0.0
    speed = clock.batch_size / per_step if per_step else 0.0
    eta = clock.eta(trainer.step)
    return (
        f"epoch {trainer.epoch + 1}/{trainer.epochs} step {trainer.step}/{total} "
        f"({100 * trainer.step / max(total, 1):.0f} %)  loss {loss:.4f}  {speed:.1f} img/s  "
        f"ETA {duration(eta) if eta is not None else '-'} (validation included)"
    )
