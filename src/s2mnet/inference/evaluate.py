"""``s2m evaluate``: a trained run on its held-out split (or on another dataset), per image.

For every case: read the image, preprocess it as in training (``s2mnet.data.preprocess``), predict the
probabilities at the image's original size (:func:`~s2mnet.engine.predictor.predict_probs`, optional
8-way TTA), threshold at 0.5 (argmax for multi-class), and compute
:func:`~s2mnet.engine.metrics.case_metrics` against the ground truth, inside the field of view when the
plan uses one (fundus). Outputs, all written atomically into ``out_dir`` (default
``RUN/eval_<split>``, ``RUN/eval_<split>_tta`` with TTA):

* ``metrics.json``: top-level ``dice`` = mean per-image Dice, ``dice_std``, the other metrics (mean and
  ``_std``), ``per_class``, ``n_cases``, ``split``, ``tta``, ``fov``, ``empty_policy``, and ``cases``
  (every case's metrics, for paired comparisons between runs);
* ``cases.csv``: one row per case;
* ``volumes`` in ``metrics.json`` (NIfTI data, evaluated slice by slice): the 3-D Dice of every test
  volume, their mean ± std and per class (:class:`~s2mnet.engine.metrics.VolumeDice`), as BraTS and
  ACDC results are reported; the top-level values stay per slice;
* ``overlays/``: PNGs of the best and the worst cases by Dice; ``report.md``: summary and pictures;
  the folder is built beside its destination and swapped in at the end
  (:func:`~s2mnet.engine.outputs.staged_dir`): a failure leaves an earlier evaluation intact;
* ``trivial`` in ``metrics.json``: the mean Dice of the two trivial predictions, every pixel foreground
  (``dice_all_foreground``; multi-class: each class everywhere, averaged) and every pixel background
  (``dice_all_empty``), under the same empty-mask policy and FOV, to read the model's Dice against;
* ``warnings`` in ``metrics.json``: predictions (nearly) empty or all foreground on most cases
  (:func:`s2mnet.data.checks.prediction_warnings`); ``s2m evaluate`` prints them as ``warning: ...``.

The ground truth is read in the plan's label mode (:func:`s2mnet.data.labels.read_target`): multi-label
runs are scored per region (``per_class`` keyed by region name, top level = mean over regions) and their
overlays colour each pixel by the first region it belongs to.
"""

from __future__ import annotations

import csv
import io
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from s2mnet.data.checks import mask_fractions, prediction_warnings
from s2mnet.engine.checkpoint import load_model
from s2mnet.engine.metrics import EMPTY_POLICY, VolumeDice, case_metrics, summarize
from s2mnet.engine.outputs import staged_dir
from s2mnet.engine.predictor import THRESHOLD, predict_mask
from s2mnet.engine.rundir import RUN_CONFIG, is_cv_run, read_cv_manifest, run_data_path, run_plan
from s2mnet.errors import DataError, RunError, S2MError
from s2mnet.inference.report import save_overlay, write_report
from s2mnet.inference.strata import empty_truth_split
from s2mnet.io_utils import atomic_write_json, atomic_write_text, relative_path
from s2mnet.models import optimize_for_inference

SPLITS = ("test", "val", "train", "all")
#: Per-case fields that are not metrics (kept out of the summaries).
CASE_FIELDS = ("case_id", "truth_pixels", "pred_pixels")


def evaluate_run(
    run_dir: str | Path,
    data_dir: str | Path | None = None,
    split: str = "test",
    tta: bool = False,
    json_path: str | Path | None = None,
    out_dir: str | Path | None = None,
    overlays: int = 4,
    device: str | torch.device | None = None,
    which: str = "best",
    progress: bool | None = None,
) -> dict[str, Any]:
    """Evaluate a run folder and write its metrics, per-case CSV, overlays and report.

    Args:
        run_dir: a folder written by ``s2m train``.
        data_dir: the dataset; ``None`` → the run's own (``run.json["data"]``). A different dataset is
            evaluated on all its cases (its ids are not in the run's splits).
        split: ``"test"`` (default), ``"val"``, ``"train"`` or ``"all"``, from the run's ``splits.json``.
        tta: 8-way dihedral test-time augmentation.
        json_path: also write ``metrics.json`` there (``s2m evaluate --json FILE``).
        out_dir: where to write the outputs; ``None`` → ``RUN/eval_<split>[_tta]``.
        overlays: how many overlay pictures: the best ``ceil(n/2)`` and the worst ``floor(n/2)`` cases.
        device: ``None`` → CUDA when available, else CPU.
        which: ``"best"`` or ``"last"`` checkpoint.
        progress: show a progress bar; ``None`` → when standard error is a terminal.

    Returns:
        The metrics dict written to ``metrics.json``.

    Raises:
        RunError: missing or incomplete run folder. DataError: missing dataset, unreadable files, case
            ids of the split absent from the dataset. S2MError: unknown or empty split.
    """
    from s2mnet.data.discover import discover
    from s2mnet.data.io import read_fov, read_image
    from s2mnet.data.labels import is_multilabel, label_mode, read_target, region_names

    if split not in SPLITS:
        raise S2MError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    run_dir = Path(run_dir)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model, config = load_model(run_dir, which=which, device=device)
    model = optimize_for_inference(model)  # BN folded, channels-last, fused blocks (docs/speed.md)
    plan = run_plan(run_dir, config)
    num_classes = int(plan.get("num_classes", config.get("num_classes", 1)))
    regions = region_names(plan) if is_multilabel(plan) else None
    tubular = bool(plan.get("tubular", plan.get("mode") == "patch"))

    run_data = run_data_path(config, run_dir)  # absolute, or relative to the run folder (never "..")
    if data_dir is None and run_data is None:
        raise RunError(f"{run_dir / RUN_CONFIG}: no 'data' entry; pass the dataset folder with --data")
    data_path = Path(data_dir if data_dir is not None else run_data)
    if not data_path.is_dir():
        raise DataError(f"{data_path}: dataset folder not found")
    index = discover(data_path)
    own_data = run_data is not None and run_data.resolve() == data_path.resolve()
    if own_data and split != "all":
        cases = _split_cases(index, split, run_dir)
    else:
        split = "all"
        cases = list(index.cases)
    if not cases:
        raise DataError(f"{data_path}: no cases to evaluate")

    out = Path(out_dir) if out_dir is not None else run_dir / f"eval_{split}{'_tta' if tta else ''}"
    rows: list[dict] = []
    kept: dict[str, np.ndarray] = {}  # predicted masks of the current best / worst cases, for overlays
    trivial: list[tuple[float, float]] = []  # Dice of all-foreground / all-empty predictions per case
    fractions: list[tuple[float, float]] = []  # foreground share of the prediction and of the truth
    used_fov = False
    volumes = VolumeDice(num_classes=num_classes, regions=regions)
    iterator = cases
    if progress or (progress is None and sys.stderr.isatty()):
        from tqdm import tqdm

        iterator = tqdm(cases, desc="evaluate", unit="image")
    for case in iterator:
        image = read_image(case)
        truth = read_target(case, plan)
        if truth.shape[-2:] != image.shape[:2]:
            raise DataError(
                f"{case.masks[0]}: mask size {truth.shape[-1]}x{truth.shape[-2]} differs from the image "
                f"{case.image.name} ({image.shape[1]}x{image.shape[0]})"
            )
        fov = read_fov(case.fov) if plan.get("use_fov") and case.fov is not None else None
        used_fov = used_fov or fov is not None
        pred = predict_mask(model, image, plan, tta=tta, device=device)
        if fov is not None:
            pred = np.where(fov, pred, 0).astype(np.uint8)
        metrics = case_metrics(
            pred, truth, num_classes=num_classes, fov=fov, tubular=tubular, regions=regions
        )
        rows.append(
            {
                "case_id": case.case_id,
                **metrics,
                "truth_pixels": foreground_pixels(truth),
                "pred_pixels": foreground_pixels(pred),
            }
        )
        trivial.append(_trivial_dice(truth, num_classes, fov, regions))
        fractions.append((*mask_fractions([pred]), *mask_fractions([truth])))
        if case.slice is not None:
            volumes.add(case.group or case.image.name, pred, truth, fov)
        kept[case.case_id] = pred
        _keep_extremes(kept, rows, overlays)

    metric_rows = [{k: v for k, v in row.items() if k not in CASE_FIELDS} for row in rows]
    summary = summarize(metric_rows)
    overall = {k: v for k, v in summary.items() if k != "per_class"}
    result: dict[str, Any] = {
        **overall,  # "dice" (mean per-image Dice) first, then "dice_std", "iou", ...
        "per_class": summary.get("per_class", {"1": overall}),
        "n_cases": len(rows),
        "n_empty_truth": sum(row["truth_pixels"] == 0 for row in rows),
        "n_empty_pred": sum(row["pred_pixels"] == 0 for row in rows),
        "split": split,
        "tta": tta,
        "fov": used_fov,
        "tubular": tubular,
        "threshold": THRESHOLD,
        "num_classes": num_classes,
        "label_mode": label_mode(plan),
        "empty_policy": EMPTY_POLICY,
        "run": relative_path(str(run_dir)),
        "data": relative_path(str(data_path)),
        "checkpoint": which,
    }
    if regions is not None:
        result["regions"] = plan["regions"]
    elif isinstance(config.get("classes"), list):
        result["class_names"] = {str(i): name for i, name in enumerate(config["classes"])}
    if volumes.counts:
        result["volumes"] = volumes.result()  # per_class keyed as the top-level per_class
    result["trivial"] = {
        "dice_all_foreground": float(np.mean([pair[0] for pair in trivial])),
        "dice_all_empty": float(np.mean([pair[1] for pair in trivial])),
    }
    result["empty_truth_split"] = empty_truth_split(rows)
    result["warnings"] = prediction_warnings([f[0] for f in fractions], [f[1] for f in fractions])
    result["cases"] = rows

    with staged_dir(out) as stage:  # the folder appears (or replaces an earlier one) only when complete
        atomic_write_text(stage / "cases.csv", cases_csv(rows))
        pictures = _write_overlays(stage / "overlays", cases, rows, kept, overlays, num_classes, plan)
        atomic_write_json(stage / "metrics.json", result)
        write_report(stage / "report.md", result, pictures, title=f"Evaluation of {run_dir.name} ({split})")
    if json_path is not None:
        atomic_write_json(json_path, result)
    return result


def _trivial_dice(
    truth: np.ndarray, num_classes: int, fov: np.ndarray | None, regions: list[str] | None
) -> tuple[float, float]:
    """Dice of predicting every pixel foreground, and of predicting none (overlap metrics only)."""
    empty, ones = np.zeros_like(truth), np.ones_like(truth)
    if regions is None and num_classes > 1:  # each class everywhere, averaged over the classes
        classes = range(1, num_classes)
        full = np.mean([case_metrics(ones, truth == c, fov=fov, distances=False)["dice"] for c in classes])
    else:
        full = case_metrics(ones, truth, num_classes, fov, distances=False, regions=regions)["dice"]
    none = case_metrics(empty, truth, num_classes, fov, distances=False, regions=regions)["dice"]
    return float(full), float(none)


def foreground_pixels(mask: np.ndarray) -> int:
    """Pixels in any foreground class or region (``(H, W)`` map or ``(C, H, W)`` region stack)."""
    foreground = mask > 0
    return int((foreground.any(axis=0) if foreground.ndim == 3 else foreground).sum())


def _split_cases(index, split: str, run_dir: Path) -> list:
    """The cases of ``split`` in the run's ``splits.json`` (``load_splits`` checks every id exists)."""
    from s2mnet.data.splits import load_splits

    if is_cv_run(run_dir) and not (run_dir / RUN_CONFIG).is_file():  # a fold ensemble: the held-out test
        if split != "test":
            raise S2MError(f"{run_dir}: a cross-validation run's ensemble is evaluated on 'test' or 'all'")
        wanted = read_cv_manifest(run_dir)["test"]
    else:
        wanted = load_splits(run_dir / "splits.json", index)[split]
    if not wanted:
        raise S2MError(f"{run_dir / 'splits.json'}: split {split!r} is empty; try another --split or 'all'")
    by_id = {case.case_id: case for case in index.cases}
    return [by_id[case_id] for case_id in wanted]


def _ranked(rows: list[dict]) -> list[str]:
    """Case ids from the best to the worst Dice (ties: by id, for determinism)."""
    return [row["case_id"] for row in sorted(rows, key=lambda row: (-row["dice"], row["case_id"]))]


def extremes(rows: list[dict], count: int) -> tuple[list[str], list[str]]:
    """``(best, worst)`` case ids: ceil(count/2) best, floor(count/2) worst, no case twice."""
    ranked = _ranked(rows)
    best = ranked[: (count + 1) // 2]
    worst = [case_id for case_id in reversed(ranked) if case_id not in best][: count // 2]
    return best, worst


def _keep_extremes(kept: dict[str, np.ndarray], rows: list[dict], count: int) -> None:
    """Drop the stored predictions that can no longer be among the best or worst ``count`` cases."""
    best, worst = extremes(rows, count)
    for case_id in set(kept) - set(best) - set(worst):
        del kept[case_id]


def _write_overlays(
    folder: Path,
    cases: list,
    rows: list[dict],
    kept: dict[str, np.ndarray],
    count: int,
    num_classes: int,
    plan: dict,
) -> list[tuple[str, Path]]:
    from s2mnet.data.io import read_fov, read_image
    from s2mnet.data.labels import display_map, is_multilabel, read_target

    multilabel = is_multilabel(plan)
    if multilabel:  # overlays colour each pixel by the first region it belongs to (display_map)
        num_classes += 1
    for stale in [*folder.glob("best*.png"), *folder.glob("worst*.png")]:  # pictures of an earlier evaluation
        stale.unlink()
    best, worst = extremes(rows, count)
    by_id = {case.case_id: case for case in cases}
    dice = {row["case_id"]: row["dice"] for row in rows}
    pictures = []
    for label, ids in (("best", best), ("worst", worst)):
        for rank, case_id in enumerate(ids, start=1):
            case = by_id[case_id]
            fov = read_fov(case.fov) if plan.get("use_fov") and case.fov is not None else None
            caption = f"{label} {rank}: {case_id} (Dice {dice[case_id]:.4f})"
            name = f"{label}{rank}_{safe_name(case_id)}.png"
            truth, pred = read_target(case, plan), kept[case_id]
            if multilabel:
                truth, pred = display_map(truth), display_map(pred)
            path = save_overlay(
                folder / name,
                read_image(case),
                truth,
                pred,
                title=caption,
                num_classes=num_classes,
                fov=fov,
            )
            pictures.append((caption, path))
    return pictures


def safe_name(case_id: str) -> str:
    """A file name made of ``case_id`` (characters outside ``[A-Za-z0-9._-]`` become ``_``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", case_id).strip("_") or "case"


def cases_csv(rows: list[dict]) -> str:
    """One row per case; multi-class rows get ``<metric>_c<k>`` columns per foreground class."""
    flat_rows = []
    for row in rows:
        flat = {k: v for k, v in row.items() if k != "per_class"}
        for cls, values in (row.get("per_class") or {}).items():
            flat.update({f"{name}_c{cls}": value for name, value in values.items()})
        flat_rows.append(flat)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(flat_rows[0]), lineterminator="\n")
    writer.writeheader()
    for flat in flat_rows:
        writer.writerow({k: f"{v:.6f}" if isinstance(v, float) else v for k, v in flat.items()})
    return buffer.getvalue()
