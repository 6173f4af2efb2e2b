"""``s2m evaluate --pred DIR --truth DIR``: score a folder of masks made by any tool (ours, nnU-Net's...).

Pairing. Every mask file at the top of ``--pred`` (images: PNG, TIFF, BMP...; volumes: ``.nii``,
``.nii.gz``) is paired with the file of ``--truth`` that has the same key: the file stem, case-folded,
without the role words of :mod:`s2mnet.data.naming` (``_mask``, ``_seg``, ``_gt``, ``_label``, ``mask_``...,
``_image``, ``img_``...) and without nnU-Net's channel suffix (``case_0000`` → ``case``), numbers compared
by value (``img_007`` ↔ ``img_7``). Every prediction needs a truth; truths without a prediction are
listed in ``warnings``. With ``--images DIR`` the images are paired by the same key, for the overlays.

Labels. A file's values decide its encoding, as :func:`s2mnet.data.io.read_mask` reads them: when no mask
of either folder holds more than one non-zero value, every mask is binary ({0, 1}, {0, 255}, palette or
colour masks: foreground = non-zero); otherwise they are class maps (class indices, ``num_classes`` = the
largest value + 1) unless a value exceeds :data:`MAX_CLASS_VALUE` (grey-level or JPEG masks: decoded as
binary by :func:`~s2mnet.data.io.read_mask`, which names a file it cannot decode); class maps are scored
per class and averaged over the foreground classes, as for a multi-class run. NIfTI volumes are scored
in 3-D, with the voxel spacing of the truth's header, so HD95 and ASSD are in millimetres; 2-D masks are
scored per image in pixels. ``distance_unit`` in ``metrics.json`` and the report says which.

Outputs (all in one folder, default ``<PRED>_eval`` beside ``--pred``, built in a staging folder and
swapped in at the end, :func:`s2mnet.engine.outputs.staged_dir`): ``metrics.json`` (the keys of
``s2m evaluate --run``: ``dice``, ``dice_std``..., ``per_class``, ``n_cases``, ``trivial``, ``cases``, plus
``pred``, ``truth``, ``distance_unit``), ``cases.csv``, ``report.md`` and, with ``--images``,
``overlays/`` (best and worst cases: the prediction's contour in colour, the truth's dashed in cyan).
A non-empty output folder is replaced only with ``overwrite`` and only when an earlier ``s2m evaluate``
wrote it (it holds ``metrics.json``; :func:`s2mnet.engine.outputs.check_output_dir`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from s2mnet.data.checks import prediction_warnings
from s2mnet.data.formats.nifti import is_volume_file, read_label_volume
from s2mnet.data.io import read_image, read_mask
from s2mnet.data.mask_pairs import LISTED, keyed_files, mask_files, pair_folders, pair_key
from s2mnet.engine.metrics import EMPTY_POLICY, case_metrics, summarize
from s2mnet.engine.outputs import check_output_dir, staged_dir
from s2mnet.errors import DataError, S2MError
from s2mnet.inference.evaluate import CASE_FIELDS, cases_csv, extremes, foreground_pixels, safe_name
from s2mnet.inference.report import save_contour_overlay, write_report
from s2mnet.inference.strata import empty_truth_split
from s2mnet.io_utils import atomic_write_json, atomic_write_text, relative_path

#: Marker of an earlier ``s2m evaluate`` output folder (replaced without asking).
METRICS_FILE = "metrics.json"
#: Masks with several non-zero values are class maps only when no value exceeds this.
MAX_CLASS_VALUE = 63


def default_output(pred_dir: str | Path) -> Path:
    """``<PRED>_eval`` beside the predictions folder."""
    pred_dir = Path(pred_dir).resolve()
    return pred_dir.with_name(f"{pred_dir.name}_eval")


def _read(path: Path, multiclass: bool) -> np.ndarray:
    if is_volume_file(path):
        return np.asarray(read_label_volume(path), np.int64)
    return read_mask(path, multiclass=multiclass)


def _spacing(path: Path) -> tuple[float, float, float]:
    import nibabel as nib

    return tuple(float(z) for z in nib.load(str(path)).header.get_zooms()[:3])


def _num_classes(pairs: list[tuple[str, Path, Path]]) -> int:
    """1 when no mask holds more than one non-zero value, or when the values are too large to be class
    indices (above :data:`MAX_CLASS_VALUE`: lossy or grey-level binary masks); else the largest value + 1."""
    largest, several = 0, False
    for _, pred, truth in pairs:
        for path in (pred, truth):
            values = np.unique(_read(path, multiclass=True))
            several = several or np.count_nonzero(values) > 1
            largest = max(largest, int(values.max(initial=0)))
    return largest + 1 if several and largest <= MAX_CLASS_VALUE else 1


def score_folders(
    pred_dir: str | Path,
    truth_dir: str | Path,
    images_dir: str | Path | None = None,
    out_dir: str | Path | None = None,
    json_path: str | Path | None = None,
    overlays: int = 4,
    progress: bool | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Score every mask of ``pred_dir`` against its truth in ``truth_dir`` (see the module docstring).

    Args:
        pred_dir: the predicted masks.
        truth_dir: the ground-truth masks.
        images_dir: the images, for overlays of the best and worst cases (2-D masks only).
        out_dir: the output folder; ``None`` → :func:`default_output`.
        json_path: also write the metrics there.
        overlays: how many overlay pictures (best ``ceil(n/2)``, worst ``floor(n/2)``).
        progress: show a progress bar; ``None`` → when standard error is a terminal.
        overwrite: replace an earlier ``s2m evaluate`` output in ``out_dir`` (one with ``metrics.json``).

    Returns:
        The metrics dict written to ``metrics.json``.

    Raises:
        DataError: folders that do not pair, unreadable masks, a prediction whose size differs from its
            truth's, volumes mixed with images. S2MError: an output folder that s2m did not write.
    """
    pred_dir, truth_dir = Path(pred_dir), Path(truth_dir)
    out = Path(out_dir) if out_dir is not None else default_output(pred_dir)
    check_output_dir(out, overwrite=overwrite, marker=METRICS_FILE, what="evaluate")
    pairs, spare_truths = pair_folders(pred_dir, truth_dir)
    volumes = {is_volume_file(pred) and is_volume_file(truth) for _, pred, truth in pairs}
    if len(volumes) > 1 or any(is_volume_file(p) != is_volume_file(t) for _, p, t in pairs):
        raise DataError(f"{pred_dir}: mixes NIfTI volumes and 2-D masks; score them separately")
    volume = volumes == {True}
    if volume and images_dir is not None:
        raise S2MError("--images draws overlays of 2-D masks; NIfTI volumes are scored without it")
    num_classes = _num_classes(pairs)
    images = keyed_files(mask_files(Path(images_dir), "--images"), Path(images_dir)) if images_dir else {}

    iterator: Any = pairs
    if progress or (progress is None and sys.stderr.isatty()):
        from tqdm import tqdm

        iterator = tqdm(pairs, desc="evaluate", unit="case")
    rows, trivial, fractions, kept = [], [], [], {}
    for case_id, pred_path, truth_path in iterator:
        pred, truth = _read(pred_path, num_classes > 1), _read(truth_path, num_classes > 1)
        if pred.shape != truth.shape:
            raise DataError(
                f"{pred_path}: size {'x'.join(map(str, pred.shape[::-1]))} differs from its truth "
                f"{truth_path} ({'x'.join(map(str, truth.shape[::-1]))})"
            )
        if num_classes == 1:
            pred, truth = (pred > 0).astype(np.uint8), (truth > 0).astype(np.uint8)
        spacing = _spacing(truth_path) if volume else None
        metrics = case_metrics(pred, truth, num_classes=num_classes, spacing=spacing, volume=volume)
        rows.append(
            {
                "case_id": case_id,
                **metrics,
                "truth_pixels": foreground_pixels(truth) if not volume else int((truth > 0).sum()),
                "pred_pixels": foreground_pixels(pred) if not volume else int((pred > 0).sum()),
            }
        )
        trivial.append(_trivial_dice(truth, num_classes))
        fractions.append((float(np.mean(pred > 0)), float(np.mean(truth > 0))))
        if pair_key(pred_path) in images:
            kept[case_id] = (pred, truth, images[pair_key(pred_path)])
            best, worst = extremes(rows, overlays)
            for dropped in set(kept) - set(best) - set(worst):  # only the best and worst stay in memory
                del kept[dropped]

    summary = summarize([{k: v for k, v in row.items() if k not in CASE_FIELDS} for row in rows])
    overall = {k: v for k, v in summary.items() if k != "per_class"}
    warnings = prediction_warnings([f[0] for f in fractions], [f[1] for f in fractions])
    if spare_truths:
        names = ", ".join(path.name for path in spare_truths[:LISTED])
        warnings.append(
            f"{len(spare_truths)} truth mask(s) without a prediction were not scored ({names}...)"
        )
    result: dict[str, Any] = {
        **overall,
        "per_class": summary.get("per_class", {"1": overall}),
        "n_cases": len(rows),
        "n_empty_truth": sum(row["truth_pixels"] == 0 for row in rows),
        "n_empty_pred": sum(row["pred_pixels"] == 0 for row in rows),
        "num_classes": num_classes,
        "distance_unit": "mm" if volume else "px",
        "per": "volume" if volume else "image",
        "empty_policy": EMPTY_POLICY,
        "pred": relative_path(str(pred_dir)),
        "truth": relative_path(str(truth_dir)),
        "trivial": {
            "dice_all_foreground": float(np.mean([pair[0] for pair in trivial])),
            "dice_all_empty": float(np.mean([pair[1] for pair in trivial])),
        },
        "empty_truth_split": empty_truth_split(rows),
        "warnings": warnings,
        "cases": rows,
    }
    with staged_dir(out) as stage:
        atomic_write_text(stage / "cases.csv", cases_csv(rows))
        pictures = _write_overlays(stage / "overlays", rows, kept, overlays)
        atomic_write_json(stage / METRICS_FILE, result)
        write_report(stage / "report.md", result, pictures, title=f"Evaluation of {pred_dir.name}")
    if json_path is not None:
        atomic_write_json(json_path, result)
    return result


def _trivial_dice(truth: np.ndarray, num_classes: int) -> tuple[float, float]:
    """Dice of predicting every pixel foreground (each class everywhere, averaged) and of predicting none."""
    classes = [truth > 0] if num_classes == 1 else [truth == c for c in range(1, num_classes)]
    full = [2 * float(mask.sum()) / (mask.sum() + mask.size) for mask in classes]
    none = [float(not mask.any()) for mask in classes]
    return float(np.mean(full)), float(np.mean(none))


def _write_overlays(
    folder: Path, rows: list[dict], kept: dict[str, tuple], count: int
) -> list[tuple[str, Path]]:
    """Best and worst cases with an image: the prediction's contour and the truth's (dashed)."""
    best, worst = extremes(rows, count)
    dice = {row["case_id"]: row["dice"] for row in rows}
    pictures = []
    for label, ids in (("best", best), ("worst", worst)):
        for rank, case_id in enumerate(ids, start=1):
            if case_id not in kept:
                continue
            pred, truth, image = kept[case_id]
            caption = f"{label} {rank}: {case_id} (Dice {dice[case_id]:.4f}; truth dashed)"
            path = folder / f"{label}{rank}_{safe_name(case_id)}.png"
            pictures.append((caption, save_contour_overlay(path, read_image(image), pred, truth, caption)))
    return pictures
