"""Dataset fingerprint: what ``s2m analyze`` measures and the planner (:mod:`s2mnet.planning.plan`) reads.

Fingerprint (:func:`fingerprint`): image sizes, channels, bit depth, foreground fraction, share of empty
masks, number of classes, field-of-view availability, and MASL's per-sample morphology descriptors
(:func:`s2mnet.losses.morphology_descriptors`: tubularity, compactness, irregularity, scale). The
descriptors are computed on masks downscaled (area average, threshold 0.5) so their long side is at most
:data:`DESCRIPTOR_SIDE` pixels, cropped to the foreground's bounding box plus a margin, and batched;
``scale`` is the foreground fraction at native resolution. At most :data:`DESCRIPTOR_SAMPLES` non-empty
masks, evenly spaced over the cases, are described (medians and quartiles need no more; the descriptors
cost ~0.1 s per 256² mask on a CPU). Every image and mask is decoded once, which also checks that they
are readable and that image, mask and FOV sizes agree (:class:`DataError` otherwise). Degenerate data
(every mask empty, one class only, masks covering the whole image) is reported in ``fp["warnings"]``
(:func:`s2mnet.data.checks.degenerate_data_warnings`), not refused.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from s2mnet.data.checks import degenerate_data_warnings
from s2mnet.data.discover import discovery_warnings
from s2mnet.data.formats.nifti import case_modalities
from s2mnet.data.io import case_image_size, image_size, read_case_raw, read_mask
from s2mnet.data.splits import make_splits
from s2mnet.data.types import DatasetIndex
from s2mnet.errors import DataError

DESCRIPTOR_SIDE = 256


DESCRIPTOR_SAMPLES = 32


GREY_AS_COLOUR = "grey stored as colour"


MULTI_CHANNEL = "channel files"  # one file per channel / modality (nnU-Net, NIfTI), stacked


_DESCRIPTOR_BATCH = 16


_CROP_MARGIN = 12


def _downscale(mask: np.ndarray, side: int) -> np.ndarray:
    import cv2

    height, width = mask.shape
    scale = side / max(height, width)
    if scale >= 1:
        return mask.astype(np.float32)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return (cv2.resize(mask.astype(np.float32), size, interpolation=cv2.INTER_AREA) > 0.5).astype(np.float32)


def _crop(mask: np.ndarray) -> np.ndarray:
    """The foreground's bounding box plus :data:`_CROP_MARGIN` empty pixels on every side.

    The descriptors are translation invariant and their filters reach fewer than ``_CROP_MARGIN``
    pixels, so cropping changes no value and makes compact objects far cheaper to describe.
    """
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return mask
    cropped = mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    return np.pad(cropped, _CROP_MARGIN)


def _descriptors(masks: list[np.ndarray]) -> dict[str, list[float]]:
    """MASL descriptors of binary masks, batched on padded ``DESCRIPTOR_SIDE``² canvases."""
    import torch

    from s2mnet.losses import morphology_descriptors

    result: dict[str, list[float]] = {"tubularity": [], "compactness": [], "irregularity": []}
    for start in range(0, len(masks), _DESCRIPTOR_BATCH):
        chunk = [_crop(_downscale(m, DESCRIPTOR_SIDE)) for m in masks[start : start + _DESCRIPTOR_BATCH]]
        height, width = max(m.shape[0] for m in chunk), max(m.shape[1] for m in chunk)
        canvas = np.zeros((len(chunk), 1, height, width), np.float32)
        for i, m in enumerate(chunk):
            canvas[i, 0, : m.shape[0], : m.shape[1]] = m
        with torch.no_grad():
            values = morphology_descriptors(torch.from_numpy(canvas))
        for name in result:
            result[name].extend(float(v) for v in values[name])
    return result


def _stats(values: list[float]) -> dict[str, float]:
    if not values:
        return {"median": 0.0, "q25": 0.0, "q75": 0.0, "mean": 0.0}
    array = np.asarray(values, float)
    return {
        "median": round(float(np.median(array)), 4),
        "q25": round(float(np.percentile(array, 25)), 4),
        "q75": round(float(np.percentile(array, 75)), 4),
        "mean": round(float(array.mean()), 4),
    }


def fingerprint(index: DatasetIndex, descriptors: bool = True) -> dict:
    """Measure the dataset (JSON-serialisable dict; see the module docstring).

    Args:
        index: from :func:`~s2mnet.data.discover`.
        descriptors: compute MASL's morphology descriptors (the slow part).

    Raises:
        DataError: unreadable files, undecodable masks, image/mask/FOV size mismatches.
    """
    multiclass = index.num_classes > 1
    heights, widths, fractions, per_case = [], [], [], []
    channels: Counter = Counter()
    depths: Counter = Counter()
    binary_masks = []
    largest_class = 0
    file_channels = 0
    class_counts = np.zeros(256, np.int64)
    for case in index.cases:
        mask = read_mask(case, multiclass=multiclass)  # label maps, channel files, NIfTI slices too
        height, width = case_image_size(case)
        if (height, width) != mask.shape:
            raise DataError(
                f"{case.masks[0]}: mask size {mask.shape[1]}x{mask.shape[0]} differs from image "
                f"{case.image.name} ({width}x{height})"
            )
        if case.fov is not None and image_size(case.fov) != (height, width):
            fov_h, fov_w = image_size(case.fov)
            raise DataError(
                f"{case.fov}: field-of-view size {fov_w}x{fov_h} differs from image {case.image.name}"
            )
        raw = read_case_raw(case)
        channels[MULTI_CHANNEL if case.channels else _channel_kind(raw)] += 1
        file_channels = raw.shape[-1] if case.channels else 0
        depths[f"{np.dtype(raw.dtype).itemsize * 8}-bit"] += 1
        heights.append(height)
        widths.append(width)
        largest_class = max(largest_class, int(mask.max()))
        if multiclass:
            class_counts += np.bincount(mask.ravel(), minlength=256)[:256] > 0
        foreground = mask > 0
        fractions.append(float(foreground.mean()))
        binary_masks.append(foreground)
        per_case.append(
            {"case_id": case.case_id, "height": height, "width": width, "foreground": round(fractions[-1], 5)}
        )
    non_empty = [i for i, f in enumerate(fractions) if f > 0]
    result: dict = {
        "root": str(index.root),
        "layout": index.layout,
        "cases": len(index.cases),
        "num_classes": max(index.num_classes, largest_class + 1) if multiclass else 1,
        "channels": dict(channels),
        "bit_depth": dict(depths),
        "height": _stats(heights),
        "width": _stats(widths),
        "short_side": _stats([min(h, w) for h, w in zip(heights, widths, strict=True)]),
        "min_size": [int(min(heights)), int(min(widths))],
        "max_size": [int(max(heights)), int(max(widths))],
        "foreground_fraction": _stats([fractions[i] for i in non_empty]),
        "empty_mask_share": round(1 - len(non_empty) / len(fractions), 4),
        "fov_share": round(sum(c.fov is not None for c in index.cases) / len(index.cases), 4),
        "multi_mask_cases": sum(len(c.masks) > 1 for c in index.cases),
        "known_split": bool(index.known_split),
        "train_cases": len(make_splits(index)["train"]),
        "descriptors": None,
        "per_case": per_case,
        # docs/data.md "Formats": stacked channel files, class names and label map, volume slices
        "image_channels": file_channels or None,
        "classes": index.classes,
        "labels": index.labels.to_json() if index.labels is not None else None,
        "volume_slices": sum(c.slice is not None for c in index.cases),
        "slice_axis": next((c.slice.axis for c in index.cases if c.slice is not None), None),
        "modalities": case_modalities(index.cases[0]) if index.cases else None,
        "classes_present": np.flatnonzero(class_counts).tolist() if multiclass else None,
    }
    if descriptors and non_empty:
        sampled = [
            non_empty[i]
            for i in np.unique(np.linspace(0, len(non_empty) - 1, DESCRIPTOR_SAMPLES).astype(int))
        ]
        values = _descriptors([binary_masks[i] for i in sampled])
        result["descriptors"] = {name: _stats(v) for name, v in values.items()}
        result["descriptors"]["scale"] = _stats([fractions[i] for i in non_empty])
        result["descriptor_samples"] = len(sampled)
        for position, i in enumerate(sampled):
            per_case[i].update({name: round(v[position], 4) for name, v in values.items()})
    # entries skipped by discovery (pipes, devices), then s2mnet.data.checks: empty, one class, full
    result["warnings"] = [*discovery_warnings(index), *degenerate_data_warnings(result)]
    return result


def _channel_kind(raw: np.ndarray) -> str:
    """``"grey"``, ``"grey stored as colour"`` (RGB with equal channels, e.g. ultrasound) or ``"colour"``."""
    if raw.ndim == 2 or raw.shape[-1] in (1, 2):
        return "grey"
    if np.array_equal(raw[..., 0], raw[..., 1]) and np.array_equal(raw[..., 0], raw[..., 2]):
        return GREY_AS_COLOUR
    return "colour"
