"""``s2m evaluate --run CVRUN``: out-of-fold metrics of a cross-validation run (docs/tool.md).

Every case of the folds is scored by the fold that did not train on it: fold k's run is evaluated on
its own ``test`` part, its held-out fold (:func:`s2mnet.inference.evaluate.evaluate_run`, the same
inference, metrics and trivial baselines as a single run). Written to ``RUN/eval_cv/``:

* ``fold_k/``: fold k's evaluation on its held-out fold (metrics.json, cases.csv, overlays, report);
* ``metrics.json``: top-level ``dice`` and ``n_cases`` (and every other metric, mean and ``_std``) over
  every out-of-fold case; ``per_fold`` (each fold's Dice and case count); ``trivial`` (the all-empty and
  all-foreground predictions' Dice over the same cases); ``cases`` (every case, with its ``fold``); and,
  when the run holds out a published test split, ``test``: that split scored by the ensemble of the folds
  (its own folder ``test/``);
* ``cases.csv``: one row per out-of-fold case, with a ``fold`` column; ``report.md``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from s2mnet.engine.metrics import summarize
from s2mnet.engine.outputs import staged_dir
from s2mnet.engine.rundir import EVAL_CV_DIR, cv_fold_dirs, read_cv_manifest
from s2mnet.inference.evaluate import CASE_FIELDS, cases_csv, evaluate_run
from s2mnet.inference.report import write_report
from s2mnet.inference.strata import empty_truth_split
from s2mnet.io_utils import atomic_write_json, atomic_write_text, relative_path

#: Summary fields of a fold's evaluation that are not averaged over cases.
_COUNTS = ("n_empty_truth", "n_empty_pred")


def evaluate_cv(
    run_dir: str | Path,
    tta: bool = False,
    json_path: str | Path | None = None,
    device: str | torch.device | None = None,
    which: str = "best",
    progress: bool | None = None,
) -> dict[str, Any]:
    """Out-of-fold evaluation of a cross-validation run, and its test split by the ensemble.

    Args:
        run_dir: a cross-validation run folder (``s2m train --folds K``), every fold trained.
        tta: 8-way dihedral test-time augmentation.
        json_path: also write ``metrics.json`` there.
        device: ``None`` → CUDA when available, else CPU.
        which: ``"best"`` or ``"last"`` checkpoint of each fold.
        progress: show progress bars; ``None`` → when standard error is a terminal.

    Returns:
        The metrics dict written to ``RUN/eval_cv/metrics.json`` (module docstring).

    Raises:
        RunError: not a cross-validation run, or a fold not trained yet.
    """
    run_dir = Path(run_dir)
    manifest = read_cv_manifest(run_dir)
    dirs = cv_fold_dirs(run_dir)
    out = run_dir / f"{EVAL_CV_DIR}{'_tta' if tta else ''}"
    options = {"tta": tta, "device": device, "which": which, "progress": progress}
    rows: list[dict] = []
    per_fold: dict[str, dict] = {}
    trivial = {"dice_all_foreground": 0.0, "dice_all_empty": 0.0}
    counts = dict.fromkeys(_COUNTS, 0)
    with staged_dir(out) as stage:  # the folder appears (or replaces an earlier one) only when complete
        for fold, path in enumerate(dirs):
            result = evaluate_run(path, split="test", out_dir=stage / path.name, **options)
            rows += [{"fold": fold, **row} for row in result["cases"]]
            per_fold[str(fold)] = {
                "dice": result["dice"],
                "n_cases": result["n_cases"],
                "run": relative_path(str(path)),
            }
            for key in trivial:  # means over every case: the folds' means weighted by their sizes
                trivial[key] += result["trivial"][key] * result["n_cases"]
            for key in _COUNTS:
                counts[key] += result[key]
        dropped = (*CASE_FIELDS, "fold")
        summary = summarize([{k: v for k, v in row.items() if k not in dropped} for row in rows])
        overall = {k: v for k, v in summary.items() if k != "per_class"}
        metrics: dict[str, Any] = {
            **overall,
            "per_class": summary.get("per_class", {"1": overall}),
            "n_cases": len(rows),
            **counts,
            "split": "out-of-fold",
            "folds": manifest["folds"],
            "per_fold": per_fold,
            "tta": tta,
            "checkpoint": which,
            "run": relative_path(str(run_dir)),
            "fold_source": manifest.get("source", ""),
            "trivial": {key: value / max(len(rows), 1) for key, value in trivial.items()},
            "empty_truth_split": empty_truth_split(rows),
        }
        if manifest.get("test"):
            test = evaluate_run(run_dir, split="test", out_dir=stage / "test", **options)
            metrics["test"] = {k: v for k, v in test.items() if k != "cases"}
        metrics["cases"] = rows
        atomic_write_text(stage / "cases.csv", cases_csv(rows))
        atomic_write_json(stage / "metrics.json", metrics)
        write_report(stage / "report.md", metrics, title=f"Out-of-fold evaluation of {run_dir.name}")
    if json_path is not None:
        atomic_write_json(json_path, metrics)
    return metrics
