"""The optimisation recipe that completes a data plan: learning rate, warm-up, decay, clipping, patience.

Recipe (paper §4): AdamW (β = 0.9, 0.999, weight decay 1e-4), learning rate 1e-4 with a linear warm-up
then cosine decay to 1e-6, gradient-norm clipping at 1.0, early stopping on the validation Dice
(patience 50 of 150 epochs, i.e. a third of the run), "virtual epochs" for small sets.

Choices the paper leaves open, and ours (docs/choices.md):

* Learning rate: 1e-4 is the paper's value for 150 epochs on a GPU. For short CPU budgets (fewer than 60
  epochs) the plan uses 1e-3, which converges in minutes where 1e-4 does not; ``--lr`` overrides it.
* Warm-up: ``min(10, epochs // 10)`` epochs (the paper's 10 of 150, scaled down for short runs); the
  schedule is stepped per iteration.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from s2mnet.planning.plan import validate_plan


def default_warmup_epochs(epochs: int) -> int:
    """Warm-up length scaled with the run: the paper's 10 of 150 epochs, at most 10, none below 10 epochs."""
    return min(10, epochs // 10)


#: The recipe's settings that a flag (``TrainConfig`` field of the same name) can set.
RECIPE_KEYS = (
    "lr",
    "weight_decay",
    "warmup_epochs",
    "min_lr",
    "clip_grad",
    "patience",
    "min_epochs",
    "val_every",
    "precise_bn",
)

#: The paper's learning rate (150 GPU epochs) and the one we use for short budgets (see module docstring).
PAPER_LR = 1e-4
SHORT_RUN_LR = 1e-3
SHORT_RUN_EPOCHS = 60


def default_lr(epochs: int) -> float:
    """The recipe's peak learning rate for a run of ``epochs`` (see the module docstring)."""
    return SHORT_RUN_LR if epochs < SHORT_RUN_EPOCHS else PAPER_LR


def add_training_recipe(plan: Mapping[str, Any], flags: Mapping[str, Any] | Any = None) -> dict[str, Any]:
    """Complete the data plan with the optimisation recipe; flags win, then the plan, then our defaults.

    Every value gets a ``reasons`` entry that says where it comes from.

    Args:
        plan: the data plan (:func:`s2mnet.planning.plan.make_plan`).
        flags: the values of :data:`RECIPE_KEYS` given by flags (``None`` = not given), as a mapping or as
            an object with those attributes (a :class:`~s2mnet.engine.config.TrainConfig`).
    """
    config = _Flags(flags)
    plan = dict(plan)
    reasons = dict(plan.get("reasons", {}))
    epochs = int(plan["epochs"])

    def choose(key: str, flag: Any, default: Any, why: str) -> None:
        if flag is not None:
            plan[key], reasons[key] = flag, "set by flag"
        elif key not in plan:
            plan[key], reasons[key] = default, why

    if default_lr(epochs) == SHORT_RUN_LR:
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
    choose(
        "min_epochs",
        config.min_epochs,
        0,
        "early stopping may stop from the first validations on (the paper names no minimum)",
    )
    choose("val_every", config.val_every, 1, "validate every epoch")
    choose(
        "precise_bn",
        config.precise_bn,
        0,
        "off: BatchNorm running statistics as trained (the paper's); --precise-bn N re-estimates them "
        "from N batches before each validation (docs/speed.md)",
    )
    plan["reasons"] = reasons
    validate_plan(plan)
    return plan


class _Flags:
    """Attribute access to the recipe flags, whether given as a mapping or as a config object."""

    def __init__(self, flags: Mapping[str, Any] | Any) -> None:
        self._flags = flags

    def __getattr__(self, key: str) -> Any:
        if key not in RECIPE_KEYS:
            raise AttributeError(key)
        if self._flags is None:
            return None
        if isinstance(self._flags, Mapping):
            return self._flags.get(key)
        return getattr(self._flags, key, None)
