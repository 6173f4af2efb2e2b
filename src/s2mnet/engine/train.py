"""``s2m train``: discover, plan, split, build the run folder, train; every choice printed and stored.

Steps: discover the data (:mod:`s2mnet.data`), fingerprint and plan it (:mod:`s2mnet.planning`, the
recipe in :mod:`s2mnet.planning.recipe`), split, build the run folder (:mod:`s2mnet.engine.rundir`), then
the epoch loop (:mod:`s2mnet.engine.fit`) over a :class:`~s2mnet.engine.trainer.Trainer`.

* Validation: every ``val_every`` epochs (and always at the last one) on the validation split, full images
  at their original size with the same inference (:func:`s2mnet.engine.predictor.predict_mask`) and
  per-image Dice (:func:`s2mnet.engine.metrics.case_metrics`) as ``s2m evaluate``.
* ``run.json`` is written first (``"status": "running"``) and completed at the end, so an interrupted run
  is recognised and its best checkpoint stays usable; ``s2m train --resume RUN``
  (:func:`s2mnet.engine.config.resume_config`) continues a killed run exactly.
* Under ``torchrun`` the same code trains with DDP (:mod:`s2mnet.engine.distributed`); rank 0 alone
  prints, validates, logs and writes.
"""

from __future__ import annotations

import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from s2mnet.engine import distributed
from s2mnet.engine.config import TrainConfig
from s2mnet.engine.console import jsonable, printer, versions
from s2mnet.engine.device import resolve_device, seed_everything
from s2mnet.engine.distributed import DistContext
from s2mnet.engine.fit import fit
from s2mnet.engine.outputs import check_output_dir, prepare_output_dir, removed_on_failure
from s2mnet.engine.resume import load_resumable_state
from s2mnet.engine.run_log import RunLogger
from s2mnet.engine.rundir import (
    EVAL_DIRS,
    PLAN_JSON,
    RUN_CONFIG,
    RUN_FILES,
    SPLITS_JSON,
    TRAIN_STATE,
    read_run_config,
    write_run_config,
)
from s2mnet.engine.tracking import make_tracker
from s2mnet.engine.trainer import Trainer, is_scalar
from s2mnet.errors import RunError, S2MError
from s2mnet.io_utils import atomic_write_json
from s2mnet.planning.budget import RunCosts, fit_to_budget
from s2mnet.planning.plan import format_plan
from s2mnet.planning.recipe import add_training_recipe


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
    from s2mnet.data.dataset import SegmentationDataset
    from s2mnet.data.discover import discover
    from s2mnet.losses import create_loss
    from s2mnet.models import create_model

    say = printer(config.quiet or not context.is_main)
    start = time.perf_counter()
    device = resolve_device(device_name)
    seed_everything(config.seed)
    if config.sync_bn and context.enabled and device.type != "cuda":
        raise S2MError("--sync-bn: SyncBatchNorm works only on CUDA GPUs (leave it out on CPU)")
    if config.amp != "none" and device.type != "cuda":
        say(f"warning: --amp {config.amp} needs CUDA; training on {device} in float32")

    if config.resume:
        run_config = read_run_config(config.out)
        state = load_resumable_state(Path(config.out) / TRAIN_STATE)
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

    train_set = SegmentationDataset(train_cases, plan, train=True, seed=_data_seed(config))
    run_dir = Path(config.out)
    say(f"s2m train: {len(index.cases)} cases in {config.data} ({index.layout}); device {device}")
    say(f"splits: {len(train_cases)} train, {len(val_cases)} val, {len(splits.get('test', []))} test")
    model.to(device)
    loss_fn.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    validate = _make_validator(val_cases, plan, device) if val_cases else None
    if not config.resume:
        budget_s = _budget_s(config, device)
        if budget_s:
            parts = (model, loss_fn, plan, train_set, validate)
            costs = _time_costs(*parts, device, config, context, say, start)
            flags = {"val_every": config.val_every, "lr": config.lr}
            plan, warnings = fit_to_budget(plan, budget_s, costs, len(train_cases), flags)
            for line in warnings:
                say(f"warning: {line}")
        plan = add_training_recipe(plan, config)
        train_set.plan = plan
    loader = _train_loader(train_set, plan, config, device, context)
    per_rank_batch = int(loader.batch_size)
    batch_info = {
        "world_size": context.world_size,
        "backend": context.backend,
        "batch_size_per_rank": per_rank_batch,
        "effective_batch_size": per_rank_batch * context.world_size,
    }
    say(format_plan(plan))
    say(
        f"batch size {per_rank_batch} per process x {context.world_size} process(es) = effective batch size "
        f"{batch_info['effective_batch_size']}" + (f" ({context.backend} DDP)" if context.enabled else "")
    )
    say(f"model {config.model}: {sum(p.numel() for p in model.parameters()):,} parameters; loss {loss_name}")
    if context.is_main:
        with removed_on_failure(run_dir, enabled=not config.resume):  # a full disk leaves no half run
            if config.resume:
                run_config = _resumed_run_config(run_dir, run_config, int(state["trainer"]["epoch"]), config)
            else:
                run_config = _new_run_config(
                    config, plan, splits, model.config, loss_name, device, batch_info
                )
            write_run_config(run_dir, run_config)

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
        seed=_data_seed(config),
        compile=config.compile,
    )
    tracker = make_tracker(config.tracker, run_dir) if context.is_main else None
    logger = RunLogger(run_dir, tensorboard=config.tensorboard, tracker=tracker) if context.is_main else None
    if config.resume:
        trainer.load_state_dict(state["trainer"], run_dir / TRAIN_STATE)
        if logger is not None:
            logger.rows = [dict(row) for row in state["rows"]]
        say(f"resuming after epoch {trainer.epoch} of {trainer.epochs} (step {trainer.step})")
    summary = fit(trainer, logger, run_dir, config, say, start, state if config.resume else None)
    distributed.dump_rank_state(context, _final_tensors(trainer))
    summary["wall_s"] = round(time.perf_counter() - start, 1)
    summary["run_dir"] = str(run_dir)
    if logger is not None:
        logger.write_curves()
        run_config.update(
            status="finished",
            best={"epoch": summary["best_epoch"], "dice": summary["best_dice"]},
            epochs_run=summary["epochs_run"],
            stopped_early=summary["stopped_early"],
            stopped_by_time=summary["stopped_by_time"],
            wall_s=summary["wall_s"],
            loss_state={k: float(v) for k, v in getattr(loss_fn, "last", {}).items() if is_scalar(v)},
        )
        write_run_config(run_dir, run_config)
        logger.close()  # after run.json: a tracker uploads the final one
    best = f"best validation Dice {summary['best_dice']:.4f} at epoch {summary['best_epoch']}"
    if summary["epochs_run"] == 0:  # a time limit shorter than the first epoch: nothing to report yet
        best = f"no epoch finished within the time limit, no checkpoint yet (s2m train --resume {run_dir})"
    say(f"done in {summary['wall_s']:.0f} s: {best}; run saved to {run_dir}")
    if validate is not None and getattr(validate, "fractions", None) and context.is_main:
        from s2mnet.data.checks import prediction_warnings

        for line in prediction_warnings(validate.fractions, validate.truth_fractions):
            print(f"warning: last validation: {line}", file=sys.stderr)
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
    from s2mnet.data.splits import save_splits

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
        "train_config": jsonable(asdict(config)),
        "device": str(device),
        "distributed": batch_info,
        "versions": versions(),
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
    """Fingerprint, data plan and split of a new run (every rank computes the same, deterministically);
    the budget and the recipe complete the plan once the model is built (:func:`_train`)."""
    from s2mnet.data.labels import expect_label_maps
    from s2mnet.data.splits import load_splits, make_splits
    from s2mnet.planning.fingerprint import fingerprint
    from s2mnet.planning.planner import make_plan

    overrides = dict(config.plan_overrides)
    if config.loss is not None:
        overrides["loss"] = config.loss
    expect_label_maps(index, overrides)
    facts = fingerprint(index)
    for line in facts.get("warnings", []):
        print(f"warning: {line}", file=sys.stderr)
    plan = make_plan(facts, device=device.type, overrides=overrides)
    splits = config.split or (
        load_splits(config.splits, index) if config.splits else make_splits(index, config.seed)
    )
    return plan, splits


def _budget_s(config: TrainConfig, device: torch.device) -> float | None:
    """The run's time budget in seconds, or ``None``: none with ``--epochs`` or ``--budget 0``; the CPU
    default (:data:`~s2mnet.planning.budget.DEFAULT_CPU_BUDGET_MIN`) when not given; none on a GPU unless
    given (the paper's recipe)."""
    from s2mnet.planning.budget import DEFAULT_CPU_BUDGET_MIN

    if config.plan_overrides.get("epochs") is not None:
        return None
    if config.budget_s is None:
        return 60.0 * DEFAULT_CPU_BUDGET_MIN if device.type == "cpu" else None
    return float(config.budget_s) or None


def _time_costs(
    model: torch.nn.Module,
    loss_fn: torch.nn.Module,
    plan: dict[str, Any],
    train_set: Any,
    validate: Callable[[torch.nn.Module], float] | None,
    device: torch.device,
    config: TrainConfig,
    context: DistContext,
    say: Callable[[str], None],
    start: float,
) -> RunCosts:
    """Seconds of one training step and of one validation here (:mod:`s2mnet.engine.calibrate`) and of
    the run so far (since ``start``); rank 0's figures for every rank, so that all ranks plan the same run."""
    from s2mnet.engine.calibrate import TIMED_STEPS, time_training_step, time_validation

    say(f"timing {TIMED_STEPS} training steps and one validation to plan the run's budget")
    step_s = time_training_step(model, loss_fn, plan, train_set, device, config.amp, config.channels_last)
    validation_s = time_validation(validate, model) if context.is_main else 0.0
    spent_s = time.perf_counter() - start
    return RunCosts(*context.broadcast_floats([step_s, validation_s, spent_s]))


def _resumed_plan(config: TrainConfig, index: Any, run_config: dict[str, Any]) -> tuple[dict[str, Any], dict]:
    """The stored plan and split of the run being resumed."""
    from s2mnet.data.splits import load_splits

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


def _build(kind: str, name: str, factory: Callable[..., torch.nn.Module], **kwargs: Any) -> torch.nn.Module:
    """``factory(name, **kwargs)``; an unknown name or a bad ``--model-arg``/``--loss-arg`` → S2MError."""
    try:
        return factory(name, **kwargs)
    except (KeyError, ValueError, TypeError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        raise S2MError(f"--{kind} {name}: cannot build it ({message})") from None


def _train_loader(
    dataset: Any, plan: dict[str, Any], config: TrainConfig, device: torch.device, context: DistContext
) -> DataLoader:
    """Seeded, shuffled loader over this rank's shard of the dataset's (virtual) epoch.

    The dataset's length is ``plan["samples_per_epoch"]`` (method.md §4: small sets are expanded per epoch)
    and its augmentation depends only on (seed, epoch, index), so results do not depend on ``workers``.
    The order comes from :func:`s2mnet.engine.distributed.make_sampler` (seed + epoch, one shard per rank).
    """
    sampler = distributed.make_sampler(dataset, context, _data_seed(config))
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
        generator=torch.Generator().manual_seed(_data_seed(config)),
    )


def _data_seed(config: TrainConfig) -> int:
    """The seed of the data order and augmentation: ``config.data_seed``, else ``config.seed``."""
    return config.seed if config.data_seed is None else config.data_seed


def _seed_worker(worker_id: int) -> None:
    """Seed Python and NumPy in each worker from torch's per-worker seed (derived from the loader's)."""
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 (libraries draw from the legacy global generator)


def _make_validator(
    cases: list[Any], plan: dict[str, Any], device: torch.device
) -> Callable[[torch.nn.Module], float]:
    """Mean per-image Dice over ``cases`` at their original size, with the inference of ``s2m evaluate``.

    Same steps as :func:`s2mnet.inference.evaluate.evaluate_run` (preprocess, whole-image prediction,
    threshold 0.5, FOV when the plan uses it, the empty-mask policy), without the distance metrics.
    """
    from s2mnet.data.checks import mask_fractions
    from s2mnet.data.io import read_fov, read_image
    from s2mnet.data.labels import is_multilabel, read_target, region_names
    from s2mnet.engine.metrics import case_metrics
    from s2mnet.engine.predictor import predict_mask

    num_classes = int(plan["num_classes"])
    regions = region_names(plan) if is_multilabel(plan) else None
    use_fov = bool(plan.get("use_fov"))

    def validate(model: torch.nn.Module) -> float:
        was_training = model.training
        model.eval()
        scores = []
        validate.fractions, validate.truth_fractions = [], []  # type: ignore[attr-defined]
        for case in cases:
            image = read_image(case)
            truth = read_target(case, plan)
            fov = read_fov(case.fov) if use_fov and case.fov is not None else None
            pred = predict_mask(model, image, plan, device=device)
            validate.fractions.extend(mask_fractions([pred]))  # type: ignore[attr-defined]
            validate.truth_fractions.extend(mask_fractions([truth]))  # type: ignore[attr-defined]
            scores.append(
                case_metrics(pred, truth, num_classes=num_classes, fov=fov, distances=False, regions=regions)[
                    "dice"
                ]
            )
        model.train(was_training)
        return float(np.mean(scores))

    def estimate_s(model: torch.nn.Module) -> float:
        """A validation's cost before one has run: one case timed, times the number of cases."""
        was_training = model.training
        model.eval()
        begin = time.perf_counter()
        predict_mask(model, read_image(cases[0]), plan, device=device)
        model.train(was_training)
        return (time.perf_counter() - begin) * len(cases)

    validate.estimate_s = estimate_s  # type: ignore[attr-defined]  (read by the epoch loop's ETA)
    return validate


def _default_class_names(num_classes: int) -> list[str]:
    return (
        ["background", "foreground"] if num_classes == 1 else ["background", *map(str, range(1, num_classes))]
    )
