"""The run folder: every file name ``s2m train``, ``evaluate``, ``predict`` and ``export`` read or write,
and the readers of its JSON files (one owner; docs/tool.md, "Run folders").

A run folder (``s2m train --out RUN``) holds:

* ``run.json``: everything needed to rebuild and use the model — ``model`` (the ``model.config`` dict,
  such that ``create_model(**config)`` rebuilds the architecture), ``plan`` (preprocessing and
  inference choices), ``loss``, ``classes``, the command line, versions, ``status``.
* ``plan.json``: the plan alone; ``splits.json``: the train/val/test case ids.
* ``best.safetensors`` / ``last.safetensors``: model weights (no pickle: loading never executes code).
* ``train_state.safetensors``: the whole training state after the last epoch (``--resume``).
* ``train_log.csv``, ``curves.png``, ``tensorboard/``: the learning curves.
* ``eval_<split>[_tta]/``: what ``s2m evaluate`` wrote (``metrics.json``, ``cases.csv``, overlays).

A cross-validation run (``s2m train --folds K --out RUN``) holds instead ``cv.json`` (the manifest: the
number of folds, their folders, the held-out test ids, the strata, the budget's division), ``splits.json``
in nnU-Net's ``splits_final.json`` shape (a list of ``{"train": [...], "val": [...]}``) and one complete
run folder per fold, ``fold_0/`` … ``fold_{K-1}/`` (:func:`is_cv_run`, :func:`cv_fold_dirs`);
``s2m evaluate`` adds ``eval_cv/`` (:data:`EVAL_CV_DIR`, the out-of-fold evaluation).

Everything read from a run folder is validated before anything is built from it
(:func:`validate_run_config`, :func:`validate_stored_plan`): a hand-edited or hostile ``run.json`` with
``num_classes: 1e9``, ``plan.size: -5`` or ``"data": "../../etc"`` is a one-line :class:`RunError`, never
a huge allocation or a scan of another folder.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path, PurePath
from typing import Any

from s2mnet.errors import RunError, S2MError
from s2mnet.io_utils import atomic_write_json, read_json
from s2mnet.planning.plan import validate_plan

RUN_CONFIG = "run.json"
PLAN_JSON = "plan.json"
SPLITS_JSON = "splits.json"
BEST_WEIGHTS = "best.safetensors"
LAST_WEIGHTS = "last.safetensors"
TRAIN_STATE = "train_state.safetensors"
LOG_CSV = "train_log.csv"
CURVES_PNG = "curves.png"
TENSORBOARD_DIR = "tensorboard"
METRICS_JSON = "metrics.json"
#: The manifest of a cross-validation run (``s2m train --folds K``) and its fold folders' names.
CV_MANIFEST = "cv.json"
FOLD_DIR_PREFIX = "fold_"
#: The most folds a cross-validation run may declare.
MAX_FOLDS = 100
#: The checkpoints a run has, by the name used on the command line (``--which`` / ``--weights``).
CHECKPOINTS = {"best": BEST_WEIGHTS, "last": LAST_WEIGHTS}
#: Everything the trainer writes into a run folder (and so may remove with ``--overwrite``).
RUN_FILES = (
    RUN_CONFIG,
    PLAN_JSON,
    SPLITS_JSON,
    BEST_WEIGHTS,
    LAST_WEIGHTS,
    TRAIN_STATE,
    LOG_CSV,
    CURVES_PNG,
    TENSORBOARD_DIR,
)
#: What ``s2m evaluate`` adds to a run (stale after retraining, so also removed by ``--overwrite``).
EVAL_DIRS = tuple(f"eval_{split}{tta}" for split in ("train", "val", "test", "all") for tta in ("", "_tta"))
#: What ``s2m evaluate --run CVRUN`` writes into a cross-validation run (out-of-fold and test metrics).
EVAL_CV_DIR = "eval_cv"

#: Accepted ranges of the values a run folder declares (inclusive).
IN_CHANNELS_RANGE = (1, 64)
NUM_CLASSES_RANGE = (1, 1024)
#: Any other integer of the ``model`` section (widths, k, heads...) and the length of its lists.
MODEL_INT_RANGE = (0, 4096)
_MODEL_LIST_LENGTH = 64


def eval_dir(run_dir: str | Path, split: str, tta: bool) -> Path:
    """Where ``s2m evaluate`` writes the evaluation of ``split`` (``eval_test``, ``eval_test_tta``...)."""
    return Path(run_dir) / f"eval_{split}{'_tta' if tta else ''}"


def weights_path(run_dir: str | Path, which: str) -> Path:
    """``RUN/best.safetensors`` or ``RUN/last.safetensors``; another name is an :class:`S2MError`."""
    if which not in CHECKPOINTS:
        raise S2MError(f"checkpoint {which!r}: use one of {', '.join(CHECKPOINTS)}")
    return Path(run_dir) / CHECKPOINTS[which]


def require_run(run: str | Path) -> None:
    """A missing run folder or ``run.json`` is a one-line error naming it (cheap: no heavy import)."""
    run = Path(run)
    if not run.is_dir():
        raise S2MError(f"{run}: run folder not found")
    if not (run / RUN_CONFIG).is_file() and not is_cv_run(run):
        raise S2MError(f"{run / RUN_CONFIG}: missing; {run} is not an s2m run folder (see s2m train --out)")


def fold_dir(run_dir: str | Path, fold: int) -> Path:
    """``RUN/fold_<fold>``: the run folder of one fold of a cross-validation run."""
    return Path(run_dir) / f"{FOLD_DIR_PREFIX}{fold}"


def is_cv_run(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` is a cross-validation run (it holds ``cv.json``)."""
    return (Path(run_dir) / CV_MANIFEST).is_file()


def read_cv_manifest(run_dir: str | Path) -> dict[str, Any]:
    """Read and check ``RUN/cv.json``: ``folds`` (int in 2..MAX_FOLDS) and ``test`` (list of ids).

    Raises:
        RunError: a missing or malformed manifest, naming the file and the problem.
    """
    path = Path(run_dir) / CV_MANIFEST
    if not path.is_file():
        raise RunError(f"{path}: missing; {run_dir} is not a cross-validation run (s2m train --folds K)")
    manifest = read_run_json(path)
    if not isinstance(manifest, dict):
        raise RunError(f"{path}: expected a JSON object, got {_json_type(manifest)}")
    folds = manifest.get("folds")
    if isinstance(folds, bool) or not isinstance(folds, int) or not 2 <= folds <= MAX_FOLDS:
        raise RunError(f"{path}: 'folds' must be an integer in 2..{MAX_FOLDS}, got {_shown(folds)}")
    test = manifest.get("test", [])
    if not isinstance(test, list) or not all(isinstance(x, str) for x in test):
        raise RunError(f"{path}: 'test' must be a list of case ids")
    return manifest


def cv_fold_dirs(run_dir: str | Path, folds: list[int] | None = None) -> list[Path]:
    """The fold run folders of a cross-validation run (``folds`` picks some; default all), each checked.

    Raises:
        RunError: a fold number outside the run's folds, or a fold folder without a finished ``run.json``.
    """
    count = read_cv_manifest(run_dir)["folds"]
    chosen = list(range(count)) if folds is None else list(folds)
    bad = [f for f in chosen if not 0 <= f < count]
    if bad or not chosen:
        shown = ",".join(map(str, bad)) or "(none)"
        raise RunError(f"{run_dir}: --folds {shown}: the run has folds 0..{count - 1}")
    dirs = [fold_dir(run_dir, f) for f in chosen]
    for path in dirs:
        if not (path / RUN_CONFIG).is_file():
            raise RunError(f"{path}: fold not trained yet (no {RUN_CONFIG}); s2m train --resume {run_dir}")
    return dirs


def write_run_config(run_dir: str | Path, config: dict[str, Any]) -> None:
    """Write ``run.json`` atomically."""
    atomic_write_json(Path(run_dir) / RUN_CONFIG, config)


def read_run_config(run_dir: str | Path) -> dict[str, Any]:
    """Read ``run.json``; a missing folder or file is a :class:`RunError` naming it.

    A cross-validation run has no ``run.json`` of its own: its configuration is its first trained
    fold's (every fold shares the plan, classes and model; :func:`s2mnet.engine.checkpoint.load_ensemble`
    checks it), with ``"cv_run"`` set to the run folder.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"{run_dir}: run folder not found")
    path = run_dir / RUN_CONFIG
    if not path.is_file() and is_cv_run(run_dir):
        count = read_cv_manifest(run_dir)["folds"]
        trained = [f for f in range(count) if (fold_dir(run_dir, f) / RUN_CONFIG).is_file()]
        if not trained:
            raise RunError(f"{run_dir}: no fold trained yet; s2m train --resume {run_dir}")
        return {**read_run_config(fold_dir(run_dir, trained[0])), "cv_run": str(run_dir)}
    if not path.is_file():
        raise RunError(f"{path}: missing; {run_dir} is not a finished s2m run folder")
    return validate_run_config(read_run_json(path), run_dir)


def read_run_json(path: str | Path) -> Any:
    """Parse a JSON file of a run folder; invalid JSON is a :class:`RunError` naming the file."""
    return read_json(path, RunError)


def run_plan(run_dir: str | Path, config: dict) -> dict:
    """The run's plan: ``run.json["plan"]``, else ``plan.json``."""
    run_dir = Path(run_dir)
    if isinstance(config.get("plan"), dict):
        return config["plan"]
    path = run_dir / PLAN_JSON
    if not path.is_file():
        raise RunError(f"{path}: missing, and {run_dir / RUN_CONFIG} has no 'plan'")
    return validate_stored_plan(read_run_json(path), path)


def validate_run_config(config: Any, run_dir: str | Path) -> dict[str, Any]:
    """Check the values of a ``run.json`` before anything is built from them; return it unchanged.

    Checked when present: the file is a JSON object; ``model`` is an object whose ``in_channels`` lies in
    :data:`IN_CHANNELS_RANGE`, ``num_classes`` in :data:`NUM_CLASSES_RANGE` and whose other numbers are
    finite (integers in :data:`MODEL_INT_RANGE`); the top-level ``in_channels`` / ``num_classes``; the
    ``plan`` (:func:`validate_stored_plan`; its ``in_channels`` must equal the model's); ``data`` is an
    absolute path, or a relative one without ``..`` (read relative to the run folder, :func:`run_data_path`).

    Raises:
        RunError: naming ``run.json`` and the offending key.
    """
    source = Path(run_dir) / RUN_CONFIG
    if not isinstance(config, dict):
        raise RunError(f"{source}: expected a JSON object, found {_json_type(config)}")
    model = config.get("model")
    if model is not None:
        if not isinstance(model, dict):
            raise RunError(f"{source}: 'model' must be an object, found {_json_type(model)}")
        if "name" in model and not isinstance(model["name"], str):
            raise RunError(f"{source}: 'model.name' must be a string, found {_json_type(model['name'])}")
        _check_counts(model, source, "model.")
        for key, value in model.items():
            if key not in ("name", "in_channels", "num_classes"):
                _check_model_value(value, source, f"model.{key}")
    _check_counts(config, source, "")
    if config.get("plan") is not None:
        if not isinstance(config["plan"], dict):
            raise RunError(f"{source}: 'plan' must be an object, found {_json_type(config['plan'])}")
        validate_stored_plan(config["plan"], source, "plan.")
        model_channels, plan_channels = (model or {}).get("in_channels"), config["plan"].get("in_channels")
        if None not in (model_channels, plan_channels) and model_channels != plan_channels:
            raise RunError(
                f"{source}: 'model.in_channels' = {_shown(model_channels)} differs from 'plan.in_channels' = "
                f"{_shown(plan_channels)}"
            )
    run_data_path(config, run_dir)
    return config


def validate_stored_plan(plan: Any, source: str | Path, prefix: str = "") -> dict[str, Any]:
    """Check a run's plan (``run.json["plan"]``, ``plan.json`` or ONNX metadata); return it unchanged.

    Every key's type, allowed values and bounds come from the plan's one schema
    (:func:`s2mnet.planning.plan.validate_plan`); ``in_channels`` / ``num_classes`` are checked as in
    :func:`validate_run_config`.

    Raises:
        RunError: naming the file and the offending key.
    """
    validate_plan(plan, source, error=RunError, prefix=prefix, strict=False)
    _check_counts(plan, source, prefix)
    return plan


def run_inputs(run_dir: str | Path) -> list[Path]:
    """What an output file of a command reading this run may never replace: the run's own files (run.json,
    plan.json, splits.json, weights, training state, cv.json) and its dataset folder."""
    run_dir = Path(run_dir)
    names = (RUN_CONFIG, PLAN_JSON, SPLITS_JSON, BEST_WEIGHTS, LAST_WEIGHTS, TRAIN_STATE, CV_MANIFEST)
    data = run_data_path(read_run_config(run_dir), run_dir) if (run_dir / RUN_CONFIG).is_file() else None
    return [*(run_dir / name for name in names), *([data] if data is not None else [])]


def run_data_path(config: dict[str, Any], run_dir: str | Path) -> Path | None:
    """The run's dataset folder (``run.json["data"]``): absolute as stored, relative to the run folder.

    Raises:
        RunError: a value that is not a string, or a relative path that climbs out with ``..``.
    """
    data = config.get("data")
    if data is None:
        return None
    source = Path(run_dir) / RUN_CONFIG
    if not isinstance(data, str) or not data.strip() or "\x00" in data:
        raise RunError(f"{source}: 'data' must be a folder path, found {_shown(data)}")
    path = Path(os.path.expanduser(data)) if data.startswith("~") else Path(data)
    if path.is_absolute():
        return path
    if ".." in PurePath(data).parts:
        raise RunError(
            f"{source}: 'data' = {data!r} is a relative path leaving the run folder; refused "
            "(store an absolute path, or pass the dataset with --data)"
        )
    return Path(run_dir) / path


def _check_counts(section: dict[str, Any], source: Path, prefix: str) -> None:
    for key, span in (("in_channels", IN_CHANNELS_RANGE), ("num_classes", NUM_CLASSES_RANGE)):
        value = section.get(key)
        if value is not None and not _in_range(value, span):
            raise RunError(f"{source}: '{prefix}{key}' = {_shown(value)} must be an integer in {_span(span)}")


def check_model_args(arguments: dict[str, Any], source: str | Path) -> None:
    """Bound model constructor arguments given outside a run.json (``--arch-kwargs``) as run.json's are.

    Raises:
        RunError: a number that is not finite, an integer outside :data:`MODEL_INT_RANGE` (a network of
            that width would not fit), or a long list, naming ``source`` and the key.
    """
    for key, value in arguments.items():
        _check_model_value(value, source, key)


def _check_model_value(value: Any, source: str | Path, name: str) -> None:
    """Model arguments: finite numbers, integers in :data:`MODEL_INT_RANGE`, short lists."""
    if isinstance(value, list):
        if len(value) > _MODEL_LIST_LENGTH:
            raise RunError(f"{source}: '{name}' has {len(value)} entries (at most {_MODEL_LIST_LENGTH})")
        for item in value:
            _check_model_value(item, source, name)
    elif isinstance(value, bool) or value is None or isinstance(value, str):
        return
    elif isinstance(value, int):
        if not _in_range(value, MODEL_INT_RANGE):
            raise RunError(f"{source}: '{name}' = {_shown(value)} must lie in {_span(MODEL_INT_RANGE)}")
    elif isinstance(value, float):
        if not math.isfinite(value) or abs(value) > MODEL_INT_RANGE[1]:
            raise RunError(f"{source}: '{name}' = {_shown(value)} is not a sane number")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_model_value(item, source, f"{name}.{key}")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _in_range(value: Any, span: tuple[int, int]) -> bool:
    """An integer (``3`` or ``3.0``, not ``True``) within ``span``."""
    return _is_number(value) and float(value).is_integer() and span[0] <= value <= span[1]


def _span(span: tuple[int, int]) -> str:
    return f"{span[0]}..{span[1]}"


def _shown(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, float) or math.isfinite(value) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")
