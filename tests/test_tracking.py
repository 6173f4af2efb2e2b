"""``s2m train --tracker``: the MLflow tracker through a fake ``mlflow`` module, and the one-line errors."""

from __future__ import annotations

import importlib.machinery
import sys
import types
from pathlib import Path

import pytest

from s2mnet.cli import main
from s2mnet.engine.tracking import MLFLOW_PARAM_LIMIT, flatten_params


class FakeMlflow(types.ModuleType):
    """Records the calls the tracker makes."""

    def __init__(self) -> None:
        super().__init__("mlflow")
        self.__spec__ = importlib.machinery.ModuleSpec("mlflow", None)
        self.calls: list[tuple] = []
        self.params: dict[str, str] = {}
        self.metrics: list[tuple[dict, int]] = []
        self.artifacts: list[str] = []

    def set_tracking_uri(self, uri: str) -> None:
        self.calls.append(("uri", uri))

    def get_experiment_by_name(self, name: str) -> None:
        return None

    def create_experiment(self, name: str, artifact_location: str) -> None:
        self.calls.append(("create", name, artifact_location))

    def set_experiment(self, name: str) -> None:
        self.calls.append(("experiment", name))

    def start_run(self, run_name: str) -> object:
        self.calls.append(("start", run_name))
        return object()

    def log_params(self, params: dict[str, str]) -> None:
        assert all(len(value) <= MLFLOW_PARAM_LIMIT for value in params.values())
        self.params.update(params)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.metrics.append((metrics, step))

    def log_artifact(self, path: str) -> None:
        self.artifacts.append(Path(path).name)

    def end_run(self, status: str) -> None:
        self.calls.append(("end", status))


def test_flatten_params_nests_keys_and_respects_the_limit() -> None:
    flat = flatten_params({"plan": {"size": 32, "modes": ["a", "b"], "empty": {}}, "note": "x" * 900})
    assert flat["plan.size"] == "32" and flat["plan.modes"] == '["a", "b"]' and flat["plan.empty"] == "{}"
    assert len(flat["note"]) == MLFLOW_PARAM_LIMIT and flat["note"].endswith("…")


@pytest.mark.slow
def test_a_tiny_run_reaches_mlflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from s2mnet.data.synthetic import make_synthetic_dataset
    from s2mnet.engine.train import train
    from test_train import tiny_config

    fake = FakeMlflow()
    monkeypatch.setitem(sys.modules, "mlflow", fake)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    data = make_synthetic_dataset(tmp_path / "data", n=8, size=32, seed=0)
    train(tiny_config(data, tmp_path / "runs" / "busi", tracker="mlflow"))
    store = (tmp_path / "runs" / "mlruns").resolve()
    assert fake.calls[:2] == [
        ("uri", f"sqlite:///{store / 'mlflow.db'}"),
        ("create", "s2mnet", (store / "artifacts").as_uri()),
    ]
    assert ("start", "busi") in fake.calls and fake.calls[-1] == ("end", "FINISHED")
    assert fake.params["plan.size"] == "32" and fake.params["train_config.seed"] == "7"
    assert [step for _, step in fake.metrics] == [2, 4]  # 8 samples / batch 4 = 2 steps per epoch
    assert {"train_loss", "val_dice", "epoch"} <= set(fake.metrics[-1][0])
    assert {"curves.png", "train_log.csv", "run.json", "plan.json"} <= set(fake.artifacts)


def test_the_tracking_uri_of_the_environment_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from s2mnet.engine.tracking import make_tracker

    fake = FakeMlflow()
    monkeypatch.setitem(sys.modules, "mlflow", fake)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "run.json").write_text('{"model": {"name": "s2mnet"}}')
    tracker = make_tracker("mlflow", tmp_path / "run")
    tracker.log_metrics({"epoch": 1, "step": 3, "val_dice": float("nan"), "train_loss": 0.5}, step=3)
    tracker.finish("FINISHED")
    assert [call[0] for call in fake.calls] == ["experiment", "start", "end"]
    assert fake.params == {"model.name": "s2mnet"} and fake.metrics == [
        ({"epoch": 1.0, "train_loss": 0.5}, 3)
    ]
    assert fake.artifacts == ["run.json"]


@pytest.mark.parametrize(
    ("tracker", "fragment"),
    [("wandb", "unknown tracker; choose one of none, mlflow"), ("mlflow", "pip install 's2mnet[mlflow]'")],
)
def test_bad_trackers_are_one_line(tmp_path, capsys, monkeypatch, tracker: str, fragment: str) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)  # not installed
    (tmp_path / "data").mkdir()
    status = main(
        ["train", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "o"), "--tracker", tracker]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and fragment in err[0] and f"--tracker {tracker}" in err[0]
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_real_mlflow_store_beside_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mlflow = pytest.importorskip("mlflow")
    from s2mnet.engine.tracking import make_tracker

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    run_dir = tmp_path / "runs" / "r1"
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text('{"seed": 7, "model": {"name": "s2mnet"}}')
    (run_dir / "train_log.csv").write_text("epoch,step\n1,2\n")
    tracker = make_tracker("mlflow", run_dir)
    tracker.log_metrics({"epoch": 1, "step": 2, "val_dice": 0.5}, step=2)
    tracker.finish("FINISHED")
    client = mlflow.tracking.MlflowClient(f"sqlite:///{tmp_path / 'runs' / 'mlruns' / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("s2mnet").experiment_id])
    assert run.info.status == "FINISHED" and run.data.params == {"seed": "7", "model.name": "s2mnet"}
    assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "val_dice")] == [(2, 0.5)]
    assert sorted(a.path for a in client.list_artifacts(run.info.run_id)) == ["run.json", "train_log.csv"]
