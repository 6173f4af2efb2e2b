"""Per-image segmentation metrics with an explicit empty-mask policy.

Overlap and distance metrics come from MONAI (``compute_dice``, ``compute_iou``, confusion-matrix
precision / recall, ``compute_hausdorff_distance(percentile=95)``, symmetric
``compute_average_surface_distance``). clDice (Shit et al., CVPR 2021) is computed on hard masks with
scikit-image's ``skeletonize``: MONAI only ships the *soft* clDice loss, not the metric.

Paper §4: per-image Dice at threshold 0.5, also IoU, precision, recall and HD95; we add ASSD and, for
tubular structures, clDice. Distances are in pixels unless ``spacing`` is given.

Empty-mask policy (``EMPTY_POLICY``; MONAI would return NaN or inf here, which averaging code then tends
to drop silently, so that an empty prediction could *improve* a mean):

* truth and prediction both empty: Dice = IoU = precision = recall = clDice = 1, HD95 = ASSD = 0;
* exactly one of them empty (a missed object, or a false alarm on an empty image): Dice = IoU =
  precision = recall = clDice = 0, and HD95 = ASSD = the image diagonal (the largest distance possible
  in the image: a finite worst case, so that means stay defined).

Every value is therefore finite, and :func:`summarize` averages over all cases, skipping nothing.
With a field-of-view mask, pixels outside it are set to background in both masks before anything is
computed, so every count (and every surface) lies inside the FOV.

Multi-label runs (overlapping regions, :mod:`s2mnet.data.labels`) pass ``(C, H, W)`` region stacks and
the region names: each region is scored as a binary mask, ``per_class`` is keyed by region name, and the
top level is the mean over regions (BraTS: the mean of ET, TC and WT Dice).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from monai.metrics import (
    compute_average_surface_distance,
    compute_confusion_matrix_metric,
    compute_dice,
    compute_hausdorff_distance,
    compute_iou,
    get_confusion_matrix,
)
from skimage.morphology import skeletonize

EMPTY_POLICY = (
    "both empty: dice=iou=precision=recall=cldice=1, hd95=assd=0; exactly one empty: "
    "dice=iou=precision=recall=cldice=0, hd95=assd=image diagonal; no case is skipped in means"
)

OVERLAP_METRICS = ("dice", "iou", "precision", "recall")
DISTANCE_METRICS = ("hd95", "assd")


def case_metrics(
    pred: np.ndarray | torch.Tensor,
    truth: np.ndarray | torch.Tensor,
    num_classes: int = 1,
    fov: np.ndarray | torch.Tensor | None = None,
    tubular: bool = False,
    spacing: float | Sequence[float] | None = None,
    distances: bool = True,
    regions: Sequence[str] | None = None,
    volume: bool = False,
) -> dict:
    """Metrics of one image (see the module docstring for the empty-mask policy).

    Args:
        pred: predicted mask (H, W), integers: {0, 1} for binary, class indices if ``num_classes`` > 1.
        truth: ground-truth mask (H, W), same encoding.
        num_classes: 1 for binary (one sigmoid channel); K > 1 for K softmax classes incl. background 0.
        fov: optional boolean field-of-view mask (H, W); metrics are computed inside it only.
        tubular: also compute clDice (thin, tubular structures such as vessels).
        spacing: pixel size (one number or one per axis) for the distances; ``None`` → pixels.
        distances: compute HD95 and ASSD (the slow part); ``False`` for quick validation.
        regions: multi-label: the C region names; ``pred`` and ``truth`` are then ``(C, H, W)`` {0, 1}
            stacks (``num_classes`` is ignored).
        volume: ``pred`` and ``truth`` are ``(X, Y, Z)`` volumes (3-D overlap and surface distances;
            give ``spacing`` per axis for millimetres); no ``fov`` or ``regions``.

    Returns:
        ``{"dice", "iou", "precision", "recall", ["hd95", "assd"], ["cldice"]}`` as floats; for
        multi-class also ``"per_class": {"1": {...}, ...}`` and the top-level values are the mean over
        the foreground classes 1..K-1; for multi-label ``"per_class": {region name: {...}}`` and the mean
        over regions.
    """
    pred_arr = _as_int_array(pred, stacked=regions is not None or volume)
    truth_arr = _as_int_array(truth, stacked=regions is not None or volume)
    expected_ndim = 2 if regions is None and not volume else 3
    if pred_arr.shape != truth_arr.shape or pred_arr.ndim != expected_ndim:
        layout = "(X, Y, Z)" if volume else "(H, W)" if regions is None else "(C, H, W)"
        raise ValueError(
            f"prediction {pred_arr.shape} and truth {truth_arr.shape} must be equal {layout} shapes"
        )
    if regions is not None and len(regions) != pred_arr.shape[0]:
        raise ValueError(f"{len(regions)} region names for {pred_arr.shape[0]} region masks")
    if fov is not None:
        inside = _as_int_array(fov).astype(bool)
        if inside.shape != pred_arr.shape[-2:]:
            raise ValueError(f"FOV {inside.shape} does not match the masks {pred_arr.shape}")
        pred_arr = np.where(inside, pred_arr, 0)
        truth_arr = np.where(inside, truth_arr, 0)

    if regions is not None:
        per_class = {
            name: _binary_metrics(pred_arr[c] > 0, truth_arr[c] > 0, tubular, spacing, distances)
            for c, name in enumerate(regions)
        }
    else:
        classes = [1] if num_classes == 1 else list(range(1, num_classes))
        per_class = {
            str(c): _binary_metrics(pred_arr == c, truth_arr == c, tubular, spacing, distances)
            for c in classes
        }
    if num_classes == 1 and regions is None:
        return per_class["1"]
    names = next(iter(per_class.values())).keys()
    result: dict = {name: float(np.mean([m[name] for m in per_class.values()])) for name in names}
    result["per_class"] = per_class
    return result


def summarize(rows: Sequence[dict]) -> dict:
    """Mean and standard deviation (population, ddof=0) over cases of every metric; skips nothing.

    Args:
        rows: outputs of :func:`case_metrics`, one per image.

    Returns:
        ``{name: mean, name + "_std": std, ...}`` for every numeric top-level metric, plus
        ``"per_class"`` (the same per class) when the rows have it.
    """
    if not rows:
        return {}
    summary = _mean_std(rows)
    if "per_class" in rows[0]:
        summary["per_class"] = {c: _mean_std([r["per_class"][c] for r in rows]) for c in rows[0]["per_class"]}
    return summary


class VolumeDice:
    """3-D Dice per volume, accumulated slice by slice (NIfTI data evaluated as 2-D slices).

    BraTS and ACDC results are reported per volume, not per slice. MONAI's ``DiceMetric`` would need each
    whole predicted volume in memory; Dice only needs three counts per class (intersection, predicted and
    true voxels), so they are summed over a volume's slices here — exact, and constant memory per volume.
    A class empty in both prediction and truth of a volume scores 1, one-sided 0 (``EMPTY_POLICY``).
    """

    def __init__(self, num_classes: int = 1, regions: Sequence[str] | None = None) -> None:
        """Args: ``num_classes`` / ``regions`` as for :func:`case_metrics`."""
        self.regions = list(regions) if regions is not None else None
        self.num_classes = num_classes
        self.keys = (
            self.regions if self.regions is not None else [str(c) for c in range(1, max(num_classes, 2))]
        )
        self.counts: dict[str, np.ndarray] = {}  # volume id → (classes, 3): intersection, pred, truth

    def add(self, volume: str, pred: np.ndarray, truth: np.ndarray, fov: np.ndarray | None = None) -> None:
        """Add one slice (the encodings of :func:`case_metrics`) to ``volume``'s counts."""
        pred_arr = _as_int_array(pred, stacked=self.regions is not None)
        truth_arr = _as_int_array(truth, stacked=self.regions is not None)
        if fov is not None:
            inside = _as_int_array(fov).astype(bool)
            pred_arr, truth_arr = np.where(inside, pred_arr, 0), np.where(inside, truth_arr, 0)
        if self.regions is not None:
            pairs = [(pred_arr[c] > 0, truth_arr[c] > 0) for c in range(len(self.regions))]
        else:
            pairs = [(pred_arr == c, truth_arr == c) for c in range(1, max(self.num_classes, 2))]
        slice_counts = np.array([[int((p & t).sum()), int(p.sum()), int(t.sum())] for p, t in pairs])
        self.counts[volume] = self.counts.get(volume, 0) + slice_counts

    def result(self) -> dict:
        """``{"n_volumes", "dice", "dice_std", "per_class": {key: {"dice", "dice_std"}}, "cases": [...]}``.

        ``dice`` is the mean over volumes of each volume's mean over classes (regions); standard
        deviations are over volumes (ddof=0, as :func:`summarize`).
        """
        cases = []
        for volume, counts in sorted(self.counts.items()):
            denominators = counts[:, 1] + counts[:, 2]
            scores = np.where(denominators == 0, 1.0, 2.0 * counts[:, 0] / np.maximum(denominators, 1))
            cases.append(
                {
                    "volume": volume,
                    "dice": float(scores.mean()),
                    "per_class": {key: float(v) for key, v in zip(self.keys, scores, strict=True)},
                }
            )
        per_class = {
            key: {
                "dice": float(np.mean([c["per_class"][key] for c in cases])),
                "dice_std": float(np.std([c["per_class"][key] for c in cases])),
            }
            for key in self.keys
        }
        dice = [c["dice"] for c in cases]
        return {
            "n_volumes": len(cases),
            "dice": float(np.mean(dice)) if cases else math.nan,
            "dice_std": float(np.std(dice)) if cases else math.nan,
            "per_class": per_class,
            "cases": cases,
        }


def image_diagonal(shape: Sequence[int], spacing: float | Sequence[float] | None = None) -> float:
    """Length of the image diagonal (the worst-case distance of the empty-mask policy)."""
    steps = [1.0] * len(shape) if spacing is None else np.broadcast_to(np.asarray(spacing, float), len(shape))
    return float(math.sqrt(sum((n * s) ** 2 for n, s in zip(shape, steps, strict=True))))


def cldice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Centerline Dice of two non-empty boolean masks (Shit et al., 2021, eq. 1-3).

    Tprec = |S(pred) ∩ truth| / |S(pred)|, Tsens = |S(truth) ∩ pred| / |S(truth)|,
    clDice = 2·Tprec·Tsens / (Tprec + Tsens), with S the morphological skeleton.
    """
    skel_pred = skeletonize(pred)
    skel_truth = skeletonize(truth)
    tprec = (skel_pred & truth).sum() / max(skel_pred.sum(), 1)
    tsens = (skel_truth & pred).sum() / max(skel_truth.sum(), 1)
    return float(2 * tprec * tsens / (tprec + tsens)) if tprec + tsens > 0 else 0.0


def _binary_metrics(
    pred: np.ndarray,
    truth: np.ndarray,
    tubular: bool,
    spacing: float | Sequence[float] | None,
    distances: bool,
) -> dict[str, float]:
    """Metrics of one foreground class given as two boolean (H, W) masks, with the empty-mask policy."""
    pred_empty, truth_empty = not pred.any(), not truth.any()
    names = (
        list(OVERLAP_METRICS)
        + (list(DISTANCE_METRICS) if distances else [])
        + (["cldice"] if tubular else [])
    )
    if pred_empty or truth_empty:
        perfect = pred_empty and truth_empty
        worst_distance = image_diagonal(pred.shape, spacing)
        return {
            name: (0.0 if perfect else worst_distance) if name in DISTANCE_METRICS else float(perfect)
            for name in names
        }

    # MONAI expects one-hot (B, C, H, W); one channel per call keeps binary and multi-class identical.
    p = torch.from_numpy(pred)[None, None].double()
    t = torch.from_numpy(truth)[None, None].double()
    confusion = get_confusion_matrix(p, t)
    result = {
        "dice": compute_dice(p, t).item(),
        "iou": compute_iou(p, t).item(),
        "precision": compute_confusion_matrix_metric("precision", confusion).item(),
        "recall": compute_confusion_matrix_metric("recall", confusion).item(),
    }
    if distances:
        with warnings.catch_warnings():  # MONAI 1.6 warns about its own internal call to get_mask_edges
            warnings.simplefilter("ignore", FutureWarning)
            result.update(_distances(p, t, spacing))
    if tubular:
        result["cldice"] = cldice(pred, truth)
    return {name: float(value) for name, value in result.items()}


def _distances(p: torch.Tensor, t: torch.Tensor, spacing: float | Sequence[float] | None) -> dict[str, float]:
    return {
        "hd95": compute_hausdorff_distance(
            p, t, include_background=True, percentile=95, spacing=spacing
        ).item(),
        "assd": compute_average_surface_distance(
            p, t, include_background=True, symmetric=True, spacing=spacing
        ).item(),
    }


def _mean_std(rows: Sequence[dict]) -> dict[str, float]:
    summary: dict[str, float] = {}
    for name, value in rows[0].items():
        if isinstance(value, int | float):
            values = np.asarray([r[name] for r in rows], dtype=np.float64)
            summary[name] = float(values.mean())
            summary[f"{name}_std"] = float(values.std())
    return summary


def _as_int_array(mask: np.ndarray | torch.Tensor, stacked: bool = False) -> np.ndarray:
    if isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu().numpy()
    mask = np.asarray(mask)
    if stacked:  # (C, H, W) region masks; a leading batch axis of 1 is dropped
        return (mask[0] if mask.ndim == 4 and mask.shape[0] == 1 else mask).astype(np.int64)
    if mask.ndim > 2 and math.prod(mask.shape[:-2]) == 1:  # (1, H, W) or (1, 1, H, W)
        mask = mask.reshape(mask.shape[-2:])
    return mask.astype(np.int64)
