"""What ``s2m train`` says while it runs: run-length estimate, ETA with validation, progress lines."""

from __future__ import annotations

import pytest

from s2mnet.engine import progress
from s2mnet.engine.progress import Heartbeat, RunClock, duration


@pytest.mark.parametrize(("seconds", "text"), [(0, "0:00"), (59.6, "1:00"), (125, "2:05"), (3725, "1h02")])
def test_duration(seconds: float, text: str) -> None:
    assert duration(seconds) == text


def _clock_with_steps(monkeypatch: pytest.MonkeyPatch, step_s: list[float], **kwargs) -> RunClock:
    now = [100.0]
    monkeypatch.setattr(progress.time, "perf_counter", lambda: now[0])
    clock = RunClock(**kwargs)
    for seconds in step_s:
        now[0] += seconds
        clock.step_done()
    return clock


def test_eta_counts_steps_left_and_validations_left(monkeypatch: pytest.MonkeyPatch) -> None:
    # the first step (5 s: warm-up) is left out of the speed; the others take 2 s
    clock = _clock_with_steps(
        monkeypatch,
        [5.0, 2.0, 2.0, 2.0],
        total_steps=10,
        validations=3,
        batch_size=4,
        validation_estimate_s=1.5,
    )
    assert clock.seconds_per_step() == 2.0
    assert clock.eta(steps_done=4) == 6 * 2.0 + 3 * 1.5
    clock.validation_done(4.0)  # a measured validation replaces the estimate
    assert clock.eta(steps_done=4) == 6 * 2.0 + 2 * 4.0


def test_the_run_length_is_estimated_once_after_the_timed_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    kwargs = {"total_steps": 100, "validations": 10, "batch_size": 8, "validation_estimate_s": 3.0}
    early = _clock_with_steps(monkeypatch, [1.0, 0.5, 0.5], **kwargs)
    assert early.estimate_line() is None
    clock = _clock_with_steps(monkeypatch, [1.0, 0.5, 0.5, 0.5], **kwargs)
    line = clock.estimate_line()
    assert (
        line is not None and "100 steps × 0.50 s = 0:50" in line and "10 validations × 3.0 s = 0:30" in line
    )
    assert "about 1:20" in line
    clock.step_done()
    assert clock.estimate_line() is None


def test_heartbeat_prints_at_most_every_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [0.0]
    monkeypatch.setattr(progress.time, "perf_counter", lambda: now[0])
    lines: list[str] = []
    beat = Heartbeat(lines.append, enabled=True, every_s=10.0)
    for t in (1.0, 9.0, 10.5, 12.0, 21.0):
        now[0] = t
        beat.maybe(lambda t=t: f"t={t}")
    assert lines == ["t=10.5", "t=21.0"]
    silent = Heartbeat(lines.append, enabled=False)
    now[0] = 100.0
    silent.maybe(lambda: "never")
    assert lines == ["t=10.5", "t=21.0"]
