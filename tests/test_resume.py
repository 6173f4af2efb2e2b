"""Crash-safe resume: a SIGKILLed run continues to the same weights; damaged states are refused clearly."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from s2mnet.cli import main
from s2mnet.engine.config import TrainConfig, resume_config
from s2mnet.engine.resume import STATE_KEY, load_training_state, save_training_state
from s2mnet.engine.rundir import TRAIN_STATE
from s2mnet.engine.train import train
from s2mnet.engine.trainer import Trainer
from s2mnet.errors import RunError

TINY = {"size": 32, "epochs": 3, "batch_size": 4, "samples_per_epoch": 8, "mode": "resize"}
#: A small S2M-Net (200k parameters) keeps the per-epoch checkpoint writes and the test fast.
SMALL = {"widths": [8, 8, 16, 16, 16], "stem_width": 8, "k": 8}
SMALL_ARGS = [f"--model-arg={key}={json.dumps(value)}" for key, value in SMALL.items()]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from s2mnet.data.synthetic import make_synthetic_dataset

    return make_synthetic_dataset(tmp_path_factory.mktemp("data"), n=8, size=32, seed=0)


@pytest.fixture(scope="module")
def stopped_run(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3-epoch run stopped by its time limit at the first step of epoch 2 (resumable from epoch 1).

    The clock is moved forward by an hour when the second epoch starts, so the stop does not depend on
    the machine's speed.
    """
    out = tmp_path_factory.mktemp("runs") / "stopped"
    config = TrainConfig(
        data=tiny_data,
        out=out,
        device="cpu",
        seed=1,
        plan_overrides=dict(TINY),
        quiet=True,
        tensorboard=False,
        time_limit_s=600.0,
        model_args=dict(SMALL),
    )
    real_clock, original_epoch = time.perf_counter, Trainer.train_epoch
    epochs_started = []

    def train_epoch(self: Trainer, *args, **kwargs):
        epochs_started.append(self.epoch)
        if len(epochs_started) == 2:
            monkeypatch.setattr(time, "perf_counter", lambda: real_clock() + 3600.0)
        return original_epoch(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setattr(Trainer, "train_epoch", train_epoch)
        summary = train(config)
    assert summary["stopped_by_time"] and summary["epochs_run"] == 1
    return out


def _copy(run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run, tmp_path / "run"))


def _state_epoch(path: Path) -> int:
    with safe_open(str(path), framework="pt") as handle:
        return json.loads(handle.metadata()[STATE_KEY])["state"]["trainer"]["epoch"]


def _edit_run_json(run: Path, **changes) -> None:
    config = json.loads((run / "run.json").read_text())
    config.update(changes)
    (run / "run.json").write_text(json.dumps(config))


# --- the acceptance test: SIGKILL mid-run, resume, same final weights -------------------------------


@pytest.mark.slow
def test_killed_run_resumes_to_the_weights_of_an_uninterrupted_run(tiny_data: Path, tmp_path: Path) -> None:
    epochs, seed = 4, 5
    plan = {**TINY, "epochs": epochs, "batch_size": 2}
    args = ["--data", str(tiny_data), "--device", "cpu", "--quiet", "--no-tensorboard", "--seed", str(seed)]
    args += [f"--{key.replace('_', '-')}={value}" for key, value in plan.items()] + SMALL_ARGS
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    s2m = [sys.executable, "-m", "s2mnet.cli", "train"]
    killed = tmp_path / "killed"
    victim = subprocess.Popen([*s2m, *args, "--out", str(killed)], env=env)
    state = killed / TRAIN_STATE
    deadline = time.monotonic() + 240
    while not (state.exists() and _state_epoch(state) >= 2):
        assert victim.poll() is None and time.monotonic() < deadline, "the run ended before epoch 2"
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert json.loads((killed / "run.json").read_text())["status"] == "running"
    assert 2 <= _state_epoch(state) < epochs, "killed too late to test a resume"
    resumed = subprocess.run([*s2m, "--resume", str(killed)], env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]

    full = tmp_path / "full"  # the same run uninterrupted, in this process with the subprocesses' threads
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(
            TrainConfig(
                data=tiny_data, out=full, device="cpu", seed=seed, plan_overrides=plan, quiet=True,
                tensorboard=False, model_args=dict(SMALL),
            )
        )  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    a, b = load_file(full / "last.safetensors"), load_file(killed / "last.safetensors")
    assert a.keys() == b.keys()
    assert max((a[k].double() - b[k].double()).abs().max().item() for k in a) <= 1e-6
    masl = [load_training_state(run / TRAIN_STATE)["trainer"]["loss"] for run in (full, killed)]
    assert torch.equal(masl[0]["weighting.raw"], masl[1]["weighting.raw"])
    config = json.loads((killed / "run.json").read_text())
    assert config["status"] == "finished" and config["resumed"][0]["from_epoch"] >= 2
    with open(killed / "train_log.csv") as handle:
        assert [int(row["epoch"]) for row in csv.DictReader(handle)] == list(range(1, epochs + 1))


# --- resuming in-process -----------------------------------------------------------------------------


@pytest.mark.slow
def test_a_stopped_run_resumes_to_the_end_and_stale_temporaries_go(stopped_run: Path, tmp_path: Path) -> None:
    run = _copy(stopped_run, tmp_path)
    stale = run / f".{TRAIN_STATE}.abc123.tmp.safetensors"
    stale.write_bytes(b"half a write")  # what a kill during a state write leaves behind
    summary = train(resume_config(run, tensorboard=False, time_limit_s=None))  # a new time budget
    assert summary["epochs_run"] == 3 and not stale.exists()
    config = json.loads((run / "run.json").read_text())
    assert config["status"] == "finished" and config["resumed"][0]["from_epoch"] == 1
    assert _state_epoch(run / TRAIN_STATE) == 3


def test_a_damaged_state_is_refused_in_one_line(
    stopped_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run = _copy(stopped_run, tmp_path)
    state = run / TRAIN_STATE
    state.write_bytes(state.read_bytes()[:1000])  # truncated
    assert main(["train", "--resume", str(run)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and "damaged training state" in error and "\n" not in error


def test_a_failed_state_write_keeps_the_previous_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / TRAIN_STATE
    save_training_state(path, {"trainer": {"epoch": 1, "w": torch.ones(3)}, "rows": [{"epoch": 1}]})

    def crash(tensors: dict, filename: str, metadata: dict) -> None:
        Path(filename).write_bytes(b"partial")
        raise KeyboardInterrupt  # killed in the middle of the write

    monkeypatch.setattr("s2mnet.engine.checkpoint.save_file", crash)
    with pytest.raises(KeyboardInterrupt):
        save_training_state(path, {"trainer": {"epoch": 2, "w": torch.zeros(3)}, "rows": []})
    state = load_training_state(path)
    assert state["trainer"]["epoch"] == 1 and torch.equal(state["trainer"]["w"], torch.ones(3))
    assert state["rows"] == [{"epoch": 1}]
    assert sorted(p.name for p in tmp_path.iterdir()) == [TRAIN_STATE]


def test_state_round_trip_keeps_optimizer_keys_and_special_floats(tmp_path: Path) -> None:
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.ones(2))], lr=1e-3)
    optimizer.param_groups[0]["params"][0].grad = torch.ones(2)
    optimizer.step()
    path = tmp_path / "state.safetensors"
    save_training_state(path, {"opt": optimizer.state_dict(), "best": -float("inf"), "none": None})
    loaded = load_training_state(path)
    assert loaded["best"] == -float("inf") and loaded["none"] is None
    assert list(loaded["opt"]["state"]) == [0]  # integer parameter ids survive JSON
    fresh = torch.optim.AdamW([torch.nn.Parameter(torch.ones(2))], lr=1e-3)
    fresh.load_state_dict(loaded["opt"])
    assert torch.equal(
        fresh.state_dict()["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"]
    )


def test_resuming_a_finished_run_is_refused(stopped_run: Path, tmp_path: Path) -> None:
    run = _copy(stopped_run, tmp_path)
    _edit_run_json(run, status="finished", stopped_by_time=False, epochs_run=3)
    with pytest.raises(RunError, match=r"already finished \(3 epochs\); nothing to resume"):
        resume_config(run)


def test_resume_refuses_changed_settings(stopped_run: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["train", "--resume", str(stopped_run), "--lr", "0.1", "--epochs", "9"]) == 2
    assert "--epochs, --lr cannot be given" in capsys.readouterr().err
    with pytest.raises(Exception, match="model cannot be changed"):
        resume_config(stopped_run, model="unet")


def test_resume_refuses_a_state_of_another_architecture(stopped_run: Path, tmp_path: Path) -> None:
    run = _copy(stopped_run, tmp_path)
    config = json.loads((run / "run.json").read_text())
    config["train_config"]["model_args"]["widths"][-1] = 24  # another architecture than the state's
    (run / "run.json").write_text(json.dumps(config))
    with pytest.raises(RunError, match=r"train_state\.safetensors: weight .* has shape .* expects"):
        train(resume_config(run, tensorboard=False))


def test_no_checkpoint_is_unpickled() -> None:
    """Safety: the package never calls torch.load (weights are safetensors, states JSON + safetensors)."""
    package = Path(__file__).resolve().parents[1] / "src" / "s2mnet"
    offenders = [
        path.name
        for path in package.rglob("*.py")
        if "torch.load(" in (text := path.read_text()) and "weights_only=True" not in text
    ]
    assert offenders == []
