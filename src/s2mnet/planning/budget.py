"""The time-budget planner: how many steps, epochs and validations a run can afford, from timed costs.

``s2m train`` on a CPU plans from a wall-time budget (``--budget MINUTES``, default
:data:`DEFAULT_CPU_BUDGET_MIN`) instead of a fixed number of epochs: the engine times a few real training
steps and one validation on the planned data (:mod:`s2mnet.engine.calibrate`) and :func:`fit_to_budget`
turns the costs into the run's length. On a GPU there is no default budget: the plan is the paper's
recipe (150 epochs, method.md §4); a budget given there is planned the same way, never beyond the paper's
length.

Rules (docs/speed.md "Planning from a time budget"):

* What the budget pays for: the time already spent (discovery, fingerprint, timing), the validations, a
  reserve of :data:`RESERVE_SHARE` for checkpoints, logs and speed variation, and the training steps.
* Validations take at most :data:`VALIDATION_SHARE` of the budget and are at most
  :data:`MAX_VALIDATIONS`; at least :data:`MIN_VALIDATIONS` when the budget allows; the last epoch always
  validates (early stopping and the best checkpoint need them).
* Steps = the training time left ÷ the timed step; never more than the paper's run
  (:data:`PAPER_EPOCHS` epochs of 30 × the training cases, method.md §4). The virtual epoch keeps the
  planner's size unless the run would have more than :data:`MAX_EPOCHS` epochs; then it grows so that
  every epoch (and its checkpoint) carries enough steps.
* Learning rate: the paper's 1e-4 over its long GPU run (thousands of steps); below
  :data:`SHORT_RUN_STEPS` steps 1e-3, which converges within a CPU budget where 1e-4 does not
  (docs/speed.md). Warm-up, cosine decay and patience follow the recipe in epochs.
* Fewer than :data:`MIN_USEFUL_STEPS` steps: the plan is made and a warning says that the run will
  not converge, with what to change.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from s2mnet.planning.plan import validate_plan
from s2mnet.planning.recipe import PAPER_LR, SHORT_RUN_LR

DEFAULT_CPU_BUDGET_MIN = 15.0
VALIDATION_SHARE = 0.12
RESERVE_SHARE = 0.05
MIN_VALIDATIONS = 4
MAX_VALIDATIONS = 40
MAX_EPOCHS = 60
PAPER_EPOCHS = 150
PAPER_EXPANSION = 30
LARGE_SET = 1000
SHORT_RUN_STEPS = 3000
MIN_USEFUL_STEPS = 200


@dataclass(frozen=True)
class RunCosts:
    """What a run's parts cost on this machine, timed before training (seconds).

    Attributes:
        step_s: one optimiser step with its data loading (median of the timed steps).
        validation_s: one validation over the whole validation split (0 without one).
        spent_s: the budget already used (discovery, fingerprint, model build, the timing itself).
    """

    step_s: float
    validation_s: float
    spent_s: float


def steps_per_epoch(samples: int, batch: int) -> int:
    """Optimiser steps per virtual epoch as the training loader makes them (a last partial batch is
    dropped when the epoch holds at least two batches)."""
    return samples // batch if samples >= 2 * batch else math.ceil(samples / batch)


def fit_to_budget(
    plan: dict[str, Any],
    budget_s: float,
    costs: RunCosts,
    train_cases: int,
    flags: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """Set ``epochs``, ``samples_per_epoch``, ``val_every`` and ``lr`` so that the run fits ``budget_s``.

    Values set by a flag (``reasons[key] == "set by flag"``, or a value in ``flags``) are kept and
    planned around. Every choice gets its reason.

    Args:
        plan: the data plan (:func:`s2mnet.planning.planner.make_plan`), before the recipe.
        budget_s: the whole run's wall time, seconds (> 0).
        costs: the timed costs (:class:`RunCosts`).
        train_cases: training cases (the paper's run length: 150 epochs of 30 × the training cases for
            sets under 1000 cases, of one pass above).
        flags: recipe flags (``val_every``, ``lr``; ``None`` = not given); the recipe applies them.

    Returns:
        The plan with the budget's choices and ``budget_s``, and warnings (empty when the run fits).
    """
    plan, reasons = dict(plan), dict(plan.get("reasons", {}))
    warnings: list[str] = []
    flags = {key: value for key, value in (flags or {}).items() if value is not None}
    flagged = {key for key, why in reasons.items() if why == "set by flag"} | set(flags)
    batch, samples = int(plan["batch_size"]), int(plan["samples_per_epoch"])
    minutes = budget_s / 60
    left = budget_s - costs.spent_s - RESERVE_SHARE * budget_s
    step_s, validation_s = max(costs.step_s, 1e-6), max(costs.validation_s, 0.0)

    if validation_s and "val_every" in flags:  # validations every N epochs of the planner's size
        per_validation = steps_per_epoch(samples, batch) * int(flags["val_every"])
        steps = int(left / (step_s + validation_s / per_validation))
    else:
        validations = 0
        if validation_s:
            affordable = int(VALIDATION_SHARE * budget_s // validation_s)
            validations = min(MAX_VALIDATIONS, max(MIN_VALIDATIONS, affordable))
            while validations > 1 and validations * validation_s > 0.5 * max(left, 0.0):
                validations -= 1  # a budget too small for its validations: keep at least the last one
        steps = int((left - validations * validation_s) // step_s)
    paper_samples = PAPER_EXPANSION * train_cases if train_cases < LARGE_SET else train_cases
    paper_steps = PAPER_EPOCHS * steps_per_epoch(paper_samples, batch)
    steps = max(1, min(steps, paper_steps))

    if "samples_per_epoch" not in flagged and math.ceil(steps / steps_per_epoch(samples, batch)) > MAX_EPOCHS:
        samples = math.ceil(steps / MAX_EPOCHS) * batch
        plan["samples_per_epoch"] = samples
        reasons["samples_per_epoch"] = (
            f"{minutes:g}-min budget: virtual epoch enlarged to {samples // batch} steps "
            f"(at most {MAX_EPOCHS} epochs with a checkpoint each)"
        )
    per_epoch = steps_per_epoch(samples, batch)
    epochs = max(1, round(steps / per_epoch))
    plan["epochs"] = epochs
    if "val_every" in flags:
        val_every = int(flags["val_every"])
    else:
        val_every = max(1, math.ceil(epochs / validations)) if validations else 1
        plan["val_every"] = val_every
        reasons["val_every"] = (
            f"{minutes:g}-min budget: ≤ {VALIDATION_SHARE:.0%} of it validating ({validation_s:.1f} s each)"
        )
    validations = math.ceil(epochs / val_every) if validation_s else 0
    reasons["epochs"] = (
        f"{minutes:g}-min budget: {costs.spent_s:.0f} s spent, {validations} validations × "
        f"{validation_s:.1f} s, {epochs * per_epoch} steps × {step_s:.2f} s (timed)"
        + (", capped at the paper's run length" if steps == paper_steps else "")
    )
    if "lr" not in flagged:
        total = epochs * per_epoch
        if total < SHORT_RUN_STEPS:
            plan["lr"] = SHORT_RUN_LR
            reasons["lr"] = f"short run ({total} < {SHORT_RUN_STEPS} steps): 10x the paper's 1e-4"
        else:
            plan["lr"] = PAPER_LR
            reasons["lr"] = f"long run ({total} ≥ {SHORT_RUN_STEPS} steps): the paper's 1e-4"
    if epochs * per_epoch < MIN_USEFUL_STEPS:
        warnings.append(
            f"a {minutes:g}-min budget buys only {epochs * per_epoch} training steps of {step_s:.2f} s here; "
            "the model will not converge: raise --budget, or lower --size/--patch-size or --batch-size"
        )
    plan["budget_s"] = float(budget_s)
    reasons["budget_s"] = f"time budget of {minutes:g} min for the whole run"
    plan["reasons"] = reasons
    validate_plan(plan)
    return plan, warnings
