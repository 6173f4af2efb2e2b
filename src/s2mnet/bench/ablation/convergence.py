"""When an ablation run has converged, and when it has failed (docs/bench.md, "Convergence").

Both are read from the run's validation curve (``[[step, val_dice], ...]``, from its ``train_log.csv``):
:func:`plateaued` is the convergence flag (a sensitivity analysis selects on it; the primary analysis keeps
every run), :func:`failed` flags a run that never left the all-background prediction or whose loss was
not finite.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

from s2mnet.planning.budget import steps_per_epoch

MIN_DELTA = 0.005


def plateaued(
    values: Sequence[float], patience: int, min_delta: float = MIN_DELTA, background: float = 0.0
) -> bool:
    """Whether a validation curve has converged (docs/bench.md, "Convergence").

    All of: more than ``patience`` values; the last ``patience`` lie within ``min_delta`` of the best of
    the whole curve (not falling away from it); the least-squares slope over the last ``patience + 1``
    values, times ``patience``, is at most ``min_delta`` in size (not still rising or falling); and the
    best is more than ``min_delta`` above ``background``, the validation Dice of the all-background
    prediction (a flat curve at that value has not started).
    """
    import numpy as np

    values = [float(v) for v in values]
    if patience < 1 or len(values) <= patience or not all(map(math.isfinite, values)):
        return False
    best = max(values)
    tail = values[-(patience + 1) :]
    slope = float(np.polyfit(np.arange(len(tail)), tail, 1)[0])
    return (
        best - min(values[-patience:]) <= min_delta
        and abs(slope) * patience <= min_delta + 1e-12
        and best > background + min_delta
    )


def failed(values: Sequence[float], background: float, min_delta: float, finite_loss: bool = True) -> bool:
    """A failed run: its training loss was not finite, or its validation Dice never rose more than
    ``min_delta`` above the all-background value ``background`` (it never left the empty prediction)."""
    finite = [float(v) for v in values if math.isfinite(float(v))]
    return not finite_loss or not finite or max(finite) <= background + min_delta


def finite_losses(run_dir: Path) -> bool:
    """Whether every logged training loss of the run is finite."""
    from s2mnet.engine.rundir import LOG_CSV

    path = run_dir / LOG_CSV
    if not path.is_file():
        return True
    with path.open(encoding="utf-8", newline="") as handle:
        losses = [r.get("train_loss") for r in csv.DictReader(handle)]
    return all(math.isfinite(float(v)) for v in losses if v not in (None, ""))


def read_curve(run_dir: Path) -> list[list[float]]:
    """``[[step, val_dice], ...]`` from the run's ``train_log.csv`` (epochs with a validation only)."""
    from s2mnet.engine.rundir import LOG_CSV

    path = run_dir / LOG_CSV
    if not path.is_file():
        return []
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [
        [int(float(r["step"])), float(r["val_dice"])] for r in rows if r.get("val_dice") not in (None, "")
    ]


def epochs_for_steps(max_steps: int, samples: int, batch: int) -> int:
    """The epoch cap that gives at least ``max_steps`` optimiser steps."""
    return max(1, math.ceil(max_steps / steps_per_epoch(samples, batch)))
