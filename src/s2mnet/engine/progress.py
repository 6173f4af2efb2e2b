"""What ``s2m train`` says while it runs: an estimate of the run's length from its first timed steps, and a
progress line every ~10 s inside an epoch when the output is not a terminal (logs, CI, ``nohup``).

On a terminal tqdm's bar shows the same (steps, loss, speed); the line is for everything else, where a
bar prints nothing until it ends. The ETA counts the training steps left at the measured speed plus the
validations left at their measured (or, before the first one, estimated) cost.
"""

from __future__ import annotations

import time
from collections.abc import Callable


def duration(seconds: float) -> str:
    """``m:ss`` below an hour, else ``XhYY``."""
    seconds = max(0, round(seconds))
    if seconds < 3600:
        return f"{seconds // 60}:{seconds % 60:02d}"
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}"


class RunClock:
    """Measures step and validation times and turns them into an ETA.

    Args:
        total_steps: optimiser steps of the whole run.
        validations: validations of the whole run (every ``val_every`` epochs and at the end).
        batch_size: images per step on this process (for the images/s figure).
        validation_estimate_s: the cost of one validation before one was timed (``None``: unknown).
    """

    #: Steps timed before the run's length is estimated (the first step, which warms caches, is skipped).
    TIMED_STEPS = 3

    def __init__(
        self, total_steps: int, validations: int, batch_size: int, validation_estimate_s: float | None
    ) -> None:
        self.total_steps, self.validations, self.batch_size = total_steps, validations, batch_size
        self.validation_s = validation_estimate_s
        self.validations_done = 0
        self.step_times: list[float] = []
        self._last = time.perf_counter()

    def step_done(self) -> None:
        now = time.perf_counter()
        self.step_times.append(now - self._last)
        self._last = now

    def restart(self) -> None:
        """Forget the time spent outside training steps (validation, checkpoints)."""
        self._last = time.perf_counter()

    def validation_done(self, seconds: float) -> None:
        self.validations_done += 1
        self.validation_s = seconds

    def seconds_per_step(self) -> float | None:
        timed = self.step_times[1:] if len(self.step_times) > 1 else self.step_times
        recent = timed[-50:]
        return sum(recent) / len(recent) if recent else None

    def eta(self, steps_done: int) -> float | None:
        per_step = self.seconds_per_step()
        if per_step is None:
            return None
        left = max(0, self.total_steps - steps_done) * per_step
        return left + max(0, self.validations - self.validations_done) * (self.validation_s or 0.0)

    def estimate_line(self) -> str | None:
        """After :data:`TIMED_STEPS` steps: the run's expected length, once (``None`` otherwise)."""
        if len(self.step_times) != self.TIMED_STEPS + 1:
            return None
        per_step = self.seconds_per_step() or 0.0
        training = per_step * self.total_steps
        validation = (self.validation_s or 0.0) * self.validations
        known = "" if self.validation_s is not None else " (validation cost not known yet)"
        return (
            f"estimated run length: {self.total_steps} steps × {per_step:.2f} s = {duration(training)} "
            f"+ {self.validations} validations × {self.validation_s or 0:.1f} s = {duration(validation)} "
            f"→ about {duration(training + validation)}{known}; early stopping may end it sooner"
        )


class Heartbeat:
    """Prints a progress line at most every ``every_s`` seconds (only when enabled)."""

    def __init__(self, say: Callable[[str], None], enabled: bool, every_s: float = 10.0) -> None:
        self.say, self.enabled, self.every_s = say, enabled, every_s
        self._last = time.perf_counter()

    def maybe(self, make_line: Callable[[], str]) -> None:
        now = time.perf_counter()
        if self.enabled and now - self._last >= self.every_s:
            self._last = now
            self.say(make_line())
