"""``s2m train --folds K``: K-fold cross-validation, each fold a complete run in ``RUN/fold_k/``.

Steps (docs/tool.md, "Cross-validation"; the folds' rules: :mod:`s2mnet.data.folds`, docs/data.md):

1. Discover and plan the data set once (the same fingerprint, preprocessing and size for every fold).
2. Make the folds: stratified by the class in the file names (BUSI), else by the masks
   (:func:`~s2mnet.data.folds.mask_strata`); groups kept together; a published test split held out.
3. Write ``RUN/cv.json`` (the manifest: folds, seed, strata and how they were made, test ids, fold
   folders, the budget's division, the command and the training configuration) and ``RUN/splits.json``
   (nnU-Net's ``splits_final.json`` shape, reused by ``s2m nnunet convert``). Under ``torchrun`` rank 0
   writes them.
4. Train each fold with :func:`s2mnet.engine.train.train` on its
   :func:`~s2mnet.data.folds.fold_run_splits` split (its held-out fold is the run's ``test`` part).

``--budget`` is the whole command's: it is divided equally over the folds this command trains
(``--fold k`` trains one fold and gives it all). Without ``--budget`` on a CPU each fold gets the single
run's default (15 min), so the whole command's default is K × 15 min: a 15-min total divided over five
folds trained S2M-Net for 35–70 steps per fold, which never left the all-background start on BUSI-100
(docs/results/crossval/README.md). ``--time-limit`` too bounds the whole command: each
fold gets what is left. :func:`resume_cv` continues a stopped cross-validation at the fold and epoch
where it stopped.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from s2mnet.engine.config import RESUME_CHANGEABLE, TrainConfig
from s2mnet.engine.console import jsonable, printer
from s2mnet.engine.outputs import check_output_dir, prepare_output_dir
from s2mnet.engine.rundir import (
    CV_MANIFEST,
    EVAL_CV_DIR,
    EVAL_DIRS,
    RUN_CONFIG,
    SPLITS_JSON,
    TRAIN_STATE,
    fold_dir,
    read_cv_manifest,
    read_run_config,
)
from s2mnet.errors import RunError, S2MError
from s2mnet.io_utils import atomic_write_json


def check_cv_output(out: str | Path, k: int, fold: int | None, overwrite: bool) -> None:
    """The output folder of ``--folds K [--fold k]``, checked before any work (cheap, no torch).

    ``--fold k`` may add a fold to an existing cross-validation run with the same ``K`` (folds trained
    in parallel); otherwise ``out`` must be new or empty, or an earlier cross-validation run with
    ``--overwrite``.
    """
    out = Path(out)
    if fold is not None and (out / CV_MANIFEST).is_file():
        declared = read_cv_manifest(out)["folds"]
        if declared != k:
            raise S2MError(f"{out}: a {declared}-fold cross-validation run; --folds {k} does not match it")
        check_output_dir(fold_dir(out, fold), overwrite=overwrite, marker=RUN_CONFIG)
        return
    check_output_dir(out, overwrite=overwrite, marker=CV_MANIFEST, what="cross-validation run")


def train_cv(config: TrainConfig, k: int, fold: int | None = None) -> dict[str, Any]:
    """Cross-validate as ``s2m train --folds K [--fold k]`` does (module docstring).

    Args:
        config: the training configuration (``out`` is the cross-validation run folder).
        k: number of folds (≥ 2).
        fold: train only this fold (``None`` → every fold).

    Returns:
        ``{"run_dir", "folds": {fold: summary of its run}}``.

    Raises:
        DataError: too few cases or a class smaller than ``k`` (:func:`~s2mnet.data.folds.make_folds`).
        S2MError: a bad output folder, ``--fold`` out of range.
    """
    if fold is not None and not 0 <= fold < k:
        raise S2MError(f"--fold {fold}: the folds are 0..{k - 1}")
    if _is_main():  # the other ranks of a torchrun would see rank 0's folder being written
        check_cv_output(config.out, k, fold, config.overwrite)
    from s2mnet.data.discover import discover

    index = discover(config.data)
    folds, plan = _make_folds(config, index, k)
    run_dir = Path(config.out)
    chosen = [fold] if fold is not None else list(range(k))
    budget = _budget_division(config, len(chosen))
    say = printer(config.quiet or not _is_main())
    say(f"cross-validation: {folds['source']}")
    for number, part in enumerate(folds["folds"]):
        say(f"  fold {number}: {len(part['val'])} held-out cases" + _strata_counts(folds, part["val"]))
    if folds["test"]:
        say(f"  published test split: {len(folds['test'])} cases, scored by the ensemble of the folds")
    say(f"budget: {budget['text']}")
    manifest = {
        "folds": k,
        "splits": SPLITS_JSON,
        "fold_dirs": [fold_dir(run_dir, f).name for f in range(k)],
        "test": folds["test"],
        "seed": folds["seed"],
        "source": folds["source"],
        "stratified_by": folds["stratified_by"],
        "strata": folds["strata"],
        "budget": budget,
        "data": str(Path(config.data).resolve()),
        "data_plan": {
            key: plan.get(key) for key in ("mode", "size", "patch_size", "preprocess", "num_classes")
        },
        "command": config.command or sys.argv,
        "train_config": jsonable(dataclasses.asdict(config)),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if _is_main():
        if fold is None or not (run_dir / CV_MANIFEST).is_file():
            owned = (
                CV_MANIFEST,
                SPLITS_JSON,
                EVAL_CV_DIR,
                f"{EVAL_CV_DIR}_tta",
                *EVAL_DIRS,
                *manifest["fold_dirs"],
            )
            prepare_output_dir(run_dir, overwrite=config.overwrite, marker=CV_MANIFEST, owned=owned)
            atomic_write_json(run_dir / SPLITS_JSON, folds["folds"])
            atomic_write_json(run_dir / CV_MANIFEST, manifest)
        elif _stored_folds(run_dir) != folds["folds"]:
            raise S2MError(f"{run_dir / SPLITS_JSON}: its folds differ from these (another seed or data?)")
    return _train_folds(config, index, folds, chosen, budget.get("per_fold_s"), resume=False)


def resume_cv(run_dir: str | Path, command: list[str] | None = None, **changes: Any) -> dict[str, Any]:
    """Continue a stopped cross-validation (``s2m train --resume RUN``): finished folds are skipped, a
    fold with a training state resumes at its epoch, a fold not started (or killed before its first
    state) starts.

    Args:
        run_dir: the cross-validation run folder.
        command: the resuming command line (recorded in each resumed fold's ``run.json``).
        changes: new values for :data:`~s2mnet.engine.config.RESUME_CHANGEABLE` fields.
    """
    refused = sorted(set(changes) - set(RESUME_CHANGEABLE))
    if refused:
        raise S2MError(
            f"--resume: {', '.join(refused)} cannot be changed (the run's stored settings are used)"
        )
    run_dir = Path(run_dir)
    manifest = read_cv_manifest(run_dir)
    stored = manifest.get("train_config")
    if not isinstance(stored, dict):
        raise RunError(f"{run_dir / CV_MANIFEST}: no train_config stored; this run cannot be resumed")
    known = {item.name for item in dataclasses.fields(TrainConfig)}
    values = {key: value for key, value in stored.items() if key in known}
    values["data"] = manifest.get("data") or values.get("data")  # absolute: resumable from any folder
    config = TrainConfig(**{**values, "out": run_dir, "overwrite": False, "command": command, **changes})
    from s2mnet.data.discover import discover

    index = discover(config.data)
    folds = {**manifest, "folds": _stored_folds(run_dir)}
    pending = [f for f in range(manifest["folds"]) if not _finished(fold_dir(run_dir, f))]
    if not pending:
        raise RunError(f"{run_dir}: every fold already finished; nothing to resume")
    printer(config.quiet or not _is_main())(
        f"resuming cross-validation {run_dir}: folds {', '.join(map(str, pending))} to finish"
    )
    per_fold = (manifest.get("budget") or {}).get("per_fold_s")
    return _train_folds(config, index, folds, pending, per_fold, resume=True)


def _train_folds(
    config: TrainConfig, index: Any, folds: dict, chosen: list[int], per_fold_s: float | None, resume: bool
) -> dict[str, Any]:
    """Train each chosen fold in turn (``resume``: continue a fold that has a training state); a
    ``--time-limit`` bounds them all together."""
    from s2mnet.data.folds import fold_run_splits
    from s2mnet.engine.config import resume_config
    from s2mnet.engine.train import train

    start = time.perf_counter()
    run_dir = Path(config.out)
    say = printer(config.quiet or not _is_main())
    summaries: dict[int, Any] = {}
    for number in chosen:
        left = None if config.time_limit_s is None else config.time_limit_s - (time.perf_counter() - start)
        if left is not None and left <= 0:
            say(f"time limit reached before fold {number}; continue with s2m train --resume {run_dir}")
            break
        path = fold_dir(run_dir, number)
        say(f"== fold {number} of 0..{len(folds['folds']) - 1}: {path}")
        if resume and (path / TRAIN_STATE).is_file() and (path / RUN_CONFIG).is_file():
            changes = {f: getattr(config, f) for f in RESUME_CHANGEABLE if f != "time_limit_s"}
            fold_config = resume_config(path, command=config.command, time_limit_s=left, **changes)
        else:
            split = fold_run_splits(folds, number, index, seed=int(folds.get("seed", config.seed)))
            fold_config = dataclasses.replace(
                config,
                out=path,
                splits=None,
                split=split,
                budget_s=per_fold_s if per_fold_s is not None else 0.0,
                time_limit_s=left,
                overwrite=config.overwrite or (path / RUN_CONFIG).is_file(),  # killed before its first state
                resume=False,
            )
        summaries[number] = summary = train(fold_config)
        if summary.get("stopped_by_time"):
            say(f"time limit reached in fold {number}; continue with s2m train --resume {run_dir}")
            break
    return {"run_dir": str(run_dir), "folds": summaries}


def _make_folds(config: TrainConfig, index: Any, k: int) -> tuple[dict, dict[str, Any]]:
    """The data plan of the whole data set, and its folds: strata from the names, else from the masks."""
    from s2mnet.data.folds import make_folds, mask_strata, name_strata
    from s2mnet.planning.fingerprint import fingerprint
    from s2mnet.planning.planner import make_plan

    overrides = dict(config.plan_overrides)
    if config.loss is not None:
        overrides["loss"] = config.loss
    plan = make_plan(fingerprint(index), device=_device_type(config), overrides=overrides)
    test = frozenset(index.known_split.get("test", [])) if index.known_split else frozenset()
    strata = name_strata(index, exclude=test)
    if strata is not None:
        return make_folds(index, k, config.seed, strata, stratified_by="class in the file names"), plan
    strata = mask_strata(index, k, plan, exclude=test)
    binary = int(plan.get("num_classes", 1)) == 1 and plan.get("label_mode") != "multilabel"
    how = "foreground in the masks (empty / small / large at the median)" if binary else "classes present"
    how += "; strata with fewer cases than folds merged into a neighbour"
    return make_folds(index, k, config.seed, strata, strict=False, stratified_by=how), plan


def _budget_division(config: TrainConfig, folds_trained: int) -> dict[str, Any]:
    """The whole command's ``--budget`` divided equally over the folds it trains (module docstring)."""
    from s2mnet.planning.budget import DEFAULT_CPU_BUDGET_MIN

    if config.plan_overrides.get("epochs") is not None:
        return {"total_s": None, "per_fold_s": None, "text": "none (--epochs given): every fold trains those"}
    total, given = config.budget_s, config.budget_s is not None
    if not given and _device_type(config) == "cpu":
        # A fold is a complete run: by default each gets the single run's CPU budget. A 15-min budget
        # divided over 5 folds (3 min each) left S2M-Net at the all-background start on every BUSI-100
        # fold (docs/results/crossval/README.md).
        total = 60.0 * DEFAULT_CPU_BUDGET_MIN * folds_trained
    if not total:
        return {"total_s": None, "per_fold_s": None, "text": "none: every fold trains the plan's epochs"}
    per_fold = total / folds_trained
    text = (
        f"{total / 60:g} min for the whole command, divided over {folds_trained} fold(s): "
        f"{per_fold / 60:.3g} min each"
        + (
            ""
            if given
            else f" (default on a CPU: {DEFAULT_CPU_BUDGET_MIN:g} min per fold; --budget sets the total)"
        )
    )
    return {"total_s": total, "per_fold_s": per_fold, "folds_trained": folds_trained, "text": text}


def _device_type(config: TrainConfig) -> str:
    """``"cuda"`` or ``"cpu"``: where the folds will train (``--device auto`` → CUDA when available)."""
    import torch

    if config.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return "cuda" if str(config.device).startswith("cuda") else "cpu"


def _strata_counts(folds: dict, ids: list[str]) -> str:
    strata = folds.get("strata") or {}
    if not strata:
        return ""
    counts: dict[str, int] = {}
    for case_id in ids:
        counts[strata.get(case_id, "?")] = counts.get(strata.get(case_id, "?"), 0) + 1
    return " (" + ", ".join(f"{name} {count}" for name, count in sorted(counts.items())) + ")"


def _stored_folds(run_dir: Path) -> list[dict[str, list[str]]]:
    from s2mnet.data.folds import folds_from_list
    from s2mnet.engine.rundir import read_run_json

    return folds_from_list(read_run_json(run_dir / SPLITS_JSON), str(run_dir / SPLITS_JSON))


def _finished(path: Path) -> bool:
    if not (path / RUN_CONFIG).is_file():
        return False
    stored = read_run_config(path)
    return stored.get("status") == "finished" and not stored.get("stopped_by_time")


def _is_main() -> bool:
    """Rank 0 under ``torchrun`` (``RANK`` unset in a single process)."""
    return int(os.environ.get("RANK", "0")) == 0
