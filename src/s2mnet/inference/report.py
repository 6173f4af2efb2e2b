"""Pictures and a Markdown summary of an evaluation (also used by ``s2m demo``).

Overlays are drawn with matplotlib's object API on the Agg canvas (no display, no global pyplot state)
and written atomically. One figure per case, three panels:

* the image;
* the ground truth drawn over the image (cyan);
* the prediction drawn over the image. For binary masks the prediction panel shows the errors:
  green = true positive, red = false positive, blue = false negative (missed). For multi-class masks
  each class has its own colour (tab10) in both mask panels.

:func:`save_contour_overlay` draws one panel instead, at the image's resolution: the prediction's
contour on the image (``s2m predict --overlays``, no ground truth needed) and, when given, the truth's
(``s2m evaluate --pred --truth --images``). This module imports no torch: the onnxruntime predictor uses it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure

from s2mnet.inference.strata import split_lines
from s2mnet.io_utils import atomic_write_text, atomic_write_with

_TRUTH = to_rgb("cyan")
_TRUE_POSITIVE, _FALSE_POSITIVE, _FALSE_NEGATIVE = to_rgb("limegreen"), to_rgb("red"), to_rgb("dodgerblue")
_ALPHA = 0.55
_UNITS = {"px": "pixels", "mm": "millimetres (the NIfTI headers' voxel spacing)"}
_SUMMARY_ROWS = ("dice", "iou", "precision", "recall", "hd95", "assd", "cldice")


def save_overlay(
    path: str | Path,
    image: np.ndarray,
    truth: np.ndarray,
    pred: np.ndarray,
    title: str = "",
    num_classes: int = 1,
    fov: np.ndarray | None = None,
) -> Path:
    """Write a PNG "image | truth | prediction" for one case.

    Args:
        path: destination PNG.
        image: ``(H, W)`` or ``(H, W, C)`` float in [0, 1] (C = 1 or 3), as ``s2mnet.data.read_image``.
        truth: ``(H, W)`` integer mask ({0, 1} or class indices).
        pred: ``(H, W)`` integer mask, same encoding.
        title: figure title (e.g. the case id and its Dice).
        num_classes: 1 for binary (error colours), K > 1 for class colours.
        fov: optional field of view, drawn as a thin yellow contour.

    Returns:
        ``path``.
    """
    path = Path(path)
    grey = _as_rgb(image)
    truth, pred = np.asarray(truth), np.asarray(pred)
    if num_classes == 1:
        truth_rgb = _blend(grey, {_TRUTH: truth > 0})
        pred_rgb = _blend(
            grey,
            {
                _TRUE_POSITIVE: (pred > 0) & (truth > 0),
                _FALSE_POSITIVE: (pred > 0) & (truth == 0),
                _FALSE_NEGATIVE: (pred == 0) & (truth > 0),
            },
        )
        pred_label = "prediction (green TP, red FP, blue FN)"
    else:
        colours = [to_rgb(f"C{c % 10}") for c in range(1, num_classes)]
        truth_rgb = _blend(grey, {colours[c - 1]: truth == c for c in range(1, num_classes)})
        pred_rgb = _blend(grey, {colours[c - 1]: pred == c for c in range(1, num_classes)})
        pred_label = "prediction"

    height, width = truth.shape
    panel_width = min(max(width / 100, 3.0), 6.0)  # inches at 100 dpi: native resolution up to 600 px
    figure = Figure(figsize=(3 * panel_width, panel_width * height / width + 0.6), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 3)
    for axis, picture, label in zip(
        axes, (grey, truth_rgb, pred_rgb), ("image", "truth", pred_label), strict=True
    ):
        axis.imshow(picture, interpolation="nearest")
        if fov is not None:
            axis.contour(np.asarray(fov, dtype=float), levels=[0.5], colors="yellow", linewidths=0.5)
        axis.set_title(label, fontsize=9)
        axis.set_axis_off()
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    atomic_write_with(path, lambda tmp: figure.savefig(tmp, format="png"))
    return path


def save_contour_overlay(
    path: str | Path,
    image: np.ndarray,
    pred: np.ndarray,
    truth: np.ndarray | None = None,
    title: str = "",
) -> Path:
    """Write a PNG of the image with the prediction's contour (and the truth's, when given).

    Args:
        path: destination PNG.
        image: ``(H, W)`` or ``(H, W, C)`` float in [0, 1], as ``s2mnet.data.read_image``.
        pred: ``(H, W)`` mask ({0, 1}, {0, 255} or class indices: one contour per class, tab10 colours
            from C1; binary in red) or ``(R, H, W)`` region masks (one contour per region).
        truth: optional mask in the same encoding, drawn dashed in cyan (every class).
        title: figure title (e.g. the file name).

    Returns:
        ``path``.
    """
    path = Path(path)
    grey = _as_rgb(image)
    height, width = grey.shape[:2]
    figure = Figure(figsize=(max(width, 64) / 100, max(height, 64) / 100 + (0.3 if title else 0)), dpi=100)
    FigureCanvasAgg(figure)
    axis = figure.add_axes((0.0, 0.0, 1.0, height / (height + (30 if title else 0))))
    axis.imshow(grey, interpolation="nearest")
    if truth is not None:
        for _colour, layer in _layers(truth):
            axis.contour(layer, levels=[0.5], colors=[_TRUTH], linewidths=1.0, linestyles="dashed")
    for colour, layer in _layers(pred):
        axis.contour(layer, levels=[0.5], colors=[colour], linewidths=1.2)
    axis.set_axis_off()
    if title:
        figure.suptitle(title, fontsize=8, y=0.995, va="top")
    atomic_write_with(path, lambda tmp: figure.savefig(tmp, format="png"))
    return path


def _layers(mask: np.ndarray) -> list[tuple[tuple[float, float, float], np.ndarray]]:
    """``(colour, float {0, 1} layer)`` per foreground class (2-D map) or region (3-D stack) present."""
    mask = np.asarray(mask)
    if mask.ndim == 3:
        planes = [(to_rgb(f"C{index % 10}"), plane > 0) for index, plane in enumerate(mask)]
    else:
        values = [int(value) for value in np.unique(mask) if value > 0]
        if values in ([1], [255]):
            planes = [(_FALSE_POSITIVE, mask > 0)]
        else:
            planes = [(to_rgb(f"C{value % 10}"), mask == value) for value in values]
    return [(colour, plane.astype(float)) for colour, plane in planes if plane.any()]


def write_report(
    path: str | Path,
    metrics: dict,
    overlays: Sequence[tuple[str, str | Path]] = (),
    title: str = "Evaluation",
) -> Path:
    """Write a Markdown report: the summary table (mean ± std over cases), per class, and the overlays.

    Args:
        path: destination ``report.md``; overlay links are written relative to its folder.
        metrics: the dict of :func:`s2mnet.inference.evaluate.evaluate_run` (``dice``, ``dice_std``, ...).
        overlays: ``(caption, png_path)`` pairs, shown in order.
        title: the report's heading.

    Returns:
        ``path``.
    """
    path = Path(path)
    lines = [f"# {title}", ""]
    context = [
        f"{key}: `{metrics[key]}`"
        for key in ("run", "data", "pred", "truth", "split", "n_cases", "tta", "fov")
        if key in metrics
    ]
    if context:
        lines += ["; ".join(context), ""]
    if "distance_unit" in metrics:
        lines += [f"HD95 and ASSD in {_UNITS.get(metrics['distance_unit'], metrics['distance_unit'])}.", ""]
    lines += ["| metric | mean ± std |", "|---|---|"]
    lines += [_row(name, metrics) for name in _SUMMARY_ROWS if name in metrics]
    per_class = metrics.get("per_class") or {}
    if len(per_class) > 1:
        names = metrics.get("class_names") or {}
        lines += [
            "",
            "Per class (Dice, mean ± std):",
            "",
            "| class | Dice | IoU | HD95 |",
            "|---|---|---|---|",
        ]
        for index, values in per_class.items():
            cells = [_mean_std(values, name) for name in ("dice", "iou", "hd95")]
            lines.append(f"| {names.get(index, index)} | " + " | ".join(cells) + " |")
    volumes = metrics.get("volumes")
    if volumes:
        names = metrics.get("class_names") or {}
        lines += [
            "",
            f"Per volume (3-D Dice over {volumes['n_volumes']} volumes, mean ± std; the table above is per "
            f"slice): **{_mean_std(volumes, 'dice')}**",
        ]
        if len(volumes["per_class"]) > 1:
            lines += ["", "| class | volume Dice |", "|---|---|"]
            for index, values in volumes["per_class"].items():
                lines.append(f"| {names.get(index, index)} | {_mean_std(values, 'dice')} |")
    trivial = metrics.get("trivial")
    if trivial:
        lines += [
            "",
            f"Trivial predictions: Dice {trivial['dice_all_empty']:.4f} predicting every image empty, "
            f"{trivial['dice_all_foreground']:.4f} predicting all foreground (the model: "
            f"{metrics.get('dice', float('nan')):.4f}).",
        ]
    split = split_lines(metrics.get("empty_truth_split"))
    if split:
        lines += ["", *(f"- {line[0].upper()}{line[1:]}." for line in split)]
    if "empty_policy" in metrics:
        lines += ["", f"Empty masks: {metrics['empty_policy']}."]
    if overlays:
        lines += ["", "## Best and worst cases", ""]
        for caption, picture in overlays:
            relative = Path(os.path.relpath(Path(picture).resolve(), path.parent.resolve())).as_posix()
            lines += [f"**{caption}**", "", f"![{caption}]({relative})", ""]
    atomic_write_text(path, "\n".join(lines).rstrip() + "\n")
    return path


def _row(name: str, metrics: dict) -> str:
    return f"| {name} | {_mean_std(metrics, name)} |"


def _mean_std(values: dict, name: str) -> str:
    if name not in values:
        return "—"
    std = values.get(f"{name}_std")
    return f"{values[name]:.4f}" + (f" ± {std:.4f}" if std is not None else "")


def _as_rgb(image: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, C) in [0, 1] → (H, W, 3) float for display (C ≠ 3: the first channel, grey)."""
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[-1] != 3:
        image = np.repeat(image[..., :1], 3, axis=-1)
    return np.clip(image[..., :3], 0.0, 1.0)


def _blend(rgb: np.ndarray, layers: dict[tuple[float, float, float], np.ndarray]) -> np.ndarray:
    """Paint each boolean layer over ``rgb`` in its colour with opacity ``_ALPHA``."""
    out = rgb.copy()
    for colour, where in layers.items():
        out[where] = (1 - _ALPHA) * out[where] + _ALPHA * np.asarray(colour, dtype=np.float32)
    return out
