"""Experiment trackers for ``s2m train --tracker NAME``: ``none`` (default) or ``mlflow`` (extra
``[mlflow]``).

A tracker receives what the run folder receives, from rank 0 only (the
:class:`~s2mnet.engine.run_log.RunLogger` that calls it exists on rank 0 only):

* at the start, ``run.json`` and ``plan.json`` as parameters, flattened to dotted keys
  (``train_config.lr``, ``plan.size``), lists and other values as JSON, cut to MLflow's 500 characters;
* after every epoch, the epoch's log row (``train_loss``, ``val_dice``, ``best_dice``, ``lr``, the MASL
  weights...) as metrics at the run's optimisation ``step``;
* at the end, the run's report, ``curves.png``, ``train_log.csv``, the final ``run.json`` (best epoch and
  Dice, epochs run, wall time), ``plan.json`` and ``splits.json``, as artifacts, and the run's status.

MLflow's store: ``MLFLOW_TRACKING_URI`` when set (a server, a database, a folder); otherwise a local
``mlruns/`` folder beside the run folder (``RUNS/mlruns`` for ``--out RUNS/busi``, so that the runs of one
folder share a store), holding an SQLite database ``mlflow.db`` and the ``artifacts/`` (MLflow 3 refuses
plain-folder stores by default): ``mlflow ui --backend-store-uri sqlite:///RUNS/mlruns/mlflow.db``. The
experiment is ``s2mnet`` (``MLFLOW_EXPERIMENT_NAME`` overrides it) and the MLflow run is named after the
run folder.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from s2mnet.engine.rundir import CURVES_PNG, LOG_CSV, PLAN_JSON, RUN_CONFIG, SPLITS_JSON
from s2mnet.errors import S2MError
from s2mnet.io_utils import read_json

#: The names ``--tracker`` accepts.
TRACKERS = ("none", "mlflow")
#: The local MLflow store beside the run folder (without ``MLFLOW_TRACKING_URI``).
LOCAL_STORE = "mlruns"
#: MLflow's limit on a parameter value (characters).
MLFLOW_PARAM_LIMIT = 500
_ARTIFACTS = (CURVES_PNG, LOG_CSV, RUN_CONFIG, PLAN_JSON, SPLITS_JSON)


class Tracker(Protocol):
    """What :class:`~s2mnet.engine.run_log.RunLogger` calls."""

    def log_metrics(self, row: Mapping[str, Any], step: int) -> None:
        """One epoch's numeric values at ``step``."""

    def finish(self, status: str) -> None:
        """Upload the artifacts and close the run (``status``: ``"FINISHED"`` or ``"FAILED"``)."""


def check_tracker(name: str) -> None:
    """A known name whose package is installed (cheap: no import); one-line errors otherwise."""
    if name not in TRACKERS:
        raise S2MError(f"--tracker {name}: unknown tracker; choose one of {', '.join(TRACKERS)}")
    if name == "mlflow" and importlib.util.find_spec("mlflow") is None:
        raise S2MError("--tracker mlflow: the mlflow package is not installed; pip install 's2mnet[mlflow]'")


def make_tracker(name: str, run_dir: str | os.PathLike) -> Tracker | None:
    """The tracker ``name`` for the run folder ``run_dir`` (``None`` for ``"none"``)."""
    check_tracker(name)
    return MlflowTracker(Path(run_dir)) if name == "mlflow" else None


def flatten_params(
    values: Mapping[str, Any], prefix: str = "", limit: int = MLFLOW_PARAM_LIMIT
) -> dict[str, str]:
    """Nested dicts → ``{"a.b": "value"}``; lists and other values as JSON; values cut to ``limit``."""
    flat: dict[str, str] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten_params(value, f"{name}.", limit))
            continue
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        flat[name] = text if len(text) <= limit else text[: limit - 1] + "…"
    return flat


class MlflowTracker:
    """An MLflow run fed by the training loop (see the module docstring)."""

    def __init__(self, run_dir: Path) -> None:
        import mlflow

        self.mlflow = mlflow
        self.run_dir = run_dir
        experiment = os.environ.get("MLFLOW_EXPERIMENT_NAME") or "s2mnet"
        if not os.environ.get("MLFLOW_TRACKING_URI"):
            store = run_dir.resolve().parent / LOCAL_STORE
            store.mkdir(parents=True, exist_ok=True)
            mlflow.set_tracking_uri(f"sqlite:///{store / 'mlflow.db'}")
            if mlflow.get_experiment_by_name(experiment) is None:  # artifacts beside the database
                mlflow.create_experiment(experiment, artifact_location=(store / "artifacts").as_uri())
        mlflow.set_experiment(experiment)
        self.run = mlflow.start_run(run_name=run_dir.name)
        params: dict[str, str] = {}
        for name, prefix in ((RUN_CONFIG, ""), (PLAN_JSON, "plan.")):
            path = run_dir / name
            if path.is_file():
                params.update(flatten_params(read_json(path), prefix))
        mlflow.log_params(params)

    def log_metrics(self, row: Mapping[str, Any], step: int) -> None:
        """The epoch row's finite numbers (``epoch`` included) at ``step``."""
        metrics = {
            key: float(value)
            for key, value in row.items()
            if key != "step"
            and isinstance(value, int | float)
            and not isinstance(value, bool)
            and value == value
            and abs(value) != float("inf")
        }
        self.mlflow.log_metrics(metrics, step=step)

    def finish(self, status: str = "FINISHED") -> None:
        """Upload the run folder's logs, curves, configuration and report; end the MLflow run."""
        for name in _ARTIFACTS:
            if (self.run_dir / name).is_file():
                self.mlflow.log_artifact(str(self.run_dir / name))
        self.mlflow.end_run(status=status)
