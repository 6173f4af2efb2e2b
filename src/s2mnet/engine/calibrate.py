"""Timing a run's costs before it starts, for the time-budget planner (:mod:`s2mnet.planning.budget`).

The training step is timed on the code path that trains: a throwaway :class:`~s2mnet.engine.trainer.Trainer`
over copies of the model and the loss, fed real augmented samples of the training set, so data loading,
forward, loss, backward, clipping and the optimiser step are all in the figure. The run itself is not
touched: the copies are discarded, and every training epoch re-seeds its random streams from
``(seed, epoch)`` (:func:`s2mnet.engine.distributed.seed_epoch`), so a run planned from a budget trains
exactly as the same plan given by flags.
"""

from __future__ import annotations

import copy
import itertools
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import DataLoader, Subset

from s2mnet.engine.trainer import Trainer
from s2mnet.planning.recipe import add_training_recipe

#: Steps timed (after one untimed step that warms caches and builds oneDNN primitives).
TIMED_STEPS = 3


def time_training_step(
    model: torch.nn.Module,
    loss_fn: torch.nn.Module,
    plan: dict[str, Any],
    dataset: Any,
    device: torch.device,
    amp: str = "none",
    channels_last: bool = True,
    steps: int = TIMED_STEPS,
) -> float:
    """Median seconds of one optimiser step, data loading included, with this plan's batch.

    Args:
        model, loss_fn: the run's model and loss (copied; the originals are not changed).
        plan: the data plan (batch size; the recipe is added for a one-epoch throwaway run).
        dataset: the training :class:`~s2mnet.data.dataset.SegmentationDataset`.
        device, amp, channels_last: as the run trains.
        steps: timed steps.
    """
    batch = int(plan["batch_size"])
    indices = [i % len(dataset) for i in range((steps + 1) * batch)]
    loader = DataLoader(Subset(dataset, indices), batch_size=batch, shuffle=False, drop_last=True)
    trainer = Trainer(
        copy.deepcopy(model),
        copy.deepcopy(loss_fn),
        add_training_recipe({**plan, "epochs": 1}),
        loader,
        None,
        device,
        amp,
        channels_last,
    )
    stamps = [time.perf_counter()]
    trainer.train_epoch(on_step=lambda _loss: stamps.append(_synchronised_now(device)))
    durations = [later - earlier for earlier, later in itertools.pairwise(stamps)]
    return statistics.median(durations[1:] or durations)


def time_validation(validate: Callable[[torch.nn.Module], float] | None, model: torch.nn.Module) -> float:
    """Seconds of one validation (0 without one): the validator's own estimate, taken twice so that the
    second, without the first call's one-off costs, counts."""
    estimate = getattr(validate, "estimate_s", None)
    if not callable(estimate):
        return 0.0
    estimate(model)
    return float(estimate(model))


def _synchronised_now(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()
