"""Dataset fingerprint and the training plan derived from it (``s2m analyze`` prints both).

Fingerprint (:func:`fingerprint`): image sizes, channels, bit depth, foreground fraction, share of empty
masks, number of classes, field-of-view availability, and MASL's per-sample morphology descriptors
(:func:`s2mnet.losses.morphology_descriptors`: tubularity, compactness, irregularity, scale). The
descriptors are computed on masks downscaled (area average, threshold 0.5) so their long side is at most
:data:`DESCRIPTOR_SIDE` pixels, cropped to the foreground's bounding box plus a margin, and batched;
``scale`` is the foreground fraction at native resolution. At most :data:`DESCRIPTOR_SAMPLES` non-empty
masks, evenly spaced over the cases, are described (medians and quartiles need no more; the descriptors
cost ~0.1 s per 256² mask on a CPU). Every image and mask is decoded once, which also checks that they
are readable and that image, mask and FOV sizes agree (:class:`DataError` otherwise).

Plan rules (:func:`make_plan`; each choice is stored with its reason in ``plan["reasons"]``):

- **thin structures on large images** — median tubularity > :data:`THIN_TUBULARITY` and median short
  side ≥ :data:`LARGE_SIDE` px → ``mode="patch"``: native-resolution patches (256 px on a GPU as in the
  paper, 128 px on a CPU), sliding-window inference with 50 % overlap. If, in addition, the images are
  colour with field-of-view masks (fundus), ``preprocess="green_clahe"`` and ``use_fov=True`` (PAPER.md
  §4).
- **everything else** → ``mode="resize"``: 352² on a GPU (PAPER.md §4), 160² on a CPU, never larger
  than the median short side (rounded down to a multiple of 16, at least 64).
- ``in_channels`` 1 for green-channel preprocessing or when most images are grey (grey files, or RGB
  files whose three channels are equal, as most BUSI ultrasound images), else 3; ``num_classes`` from the
  masks; ``loss="masl"``.
- ``label_mode`` "binary" | "multiclass" | "multilabel" and ``regions`` {name: [label values]}
  (:mod:`s2mnet.data.labels`): from ``num_classes`` unless set; regions decide ``num_classes`` (the
  number of output channels) and ``classes``.
- budget: GPU — batch 8, 150 epochs, virtual epoch = 30 × the training cases for sets under 1000
  (PAPER.md §4: small sets "expanded ×30"), full augmentation; CPU — batch 8, 40 epochs, virtual epoch
  of 4 × the training cases clamped to 64..512 samples, light augmentation.
- ``overrides`` (command-line flags) win: ``reasons[key] = "set by flag"``.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from s2mnet.data.discover import DatasetIndex
from s2mnet.data.formats.nifti import case_modalities
from s2mnet.data.io import case_image_size, image_size, read_case_raw, read_mask
from s2mnet.data.labels import resolve_label_mode
from s2mnet.data.splits import make_splits
from s2mnet.errors import DataError, S2MError

DESCRIPTOR_SIDE = 256
DESCRIPTOR_SAMPLES = 32
THIN_TUBULARITY = 0.3
LARGE_SIDE = 512
GREY_AS_COLOUR = "grey stored as colour"
MULTI_CHANNEL = "channel files"  # one file per channel / modality (nnU-Net, NIfTI), stacked
FOREGROUND_BIAS = 0.667  # 2 of 3 training patches centred on foreground
_DESCRIPTOR_BATCH = 16
_CROP_MARGIN = 12

PLAN_KEYS = (
    "mode",
    "tubular",
    "size",
    "patch_size",
    "inference",
    "overlap",
    "preprocess",
    "use_fov",
    "in_channels",
    "num_classes",
    "label_mode",
    "regions",
    "skip_empty_slices",
    "loss",
    "batch_size",
    "epochs",
    "samples_per_epoch",
    "augment",
    "foreground_bias",
)


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
    return result


def _channel_kind(raw: np.ndarray) -> str:
    """``"grey"``, ``"grey stored as colour"`` (RGB with equal channels, e.g. ultrasound) or ``"colour"``."""
    if raw.ndim == 2 or raw.shape[-1] in (1, 2):
        return "grey"
    if np.array_equal(raw[..., 0], raw[..., 1]) and np.array_equal(raw[..., 0], raw[..., 2]):
        return GREY_AS_COLOUR
    return "colour"


def _grey_reason(fp: dict) -> str:
    stored = fp["channels"].get(GREY_AS_COLOUR, 0)
    total = sum(fp["channels"].values())
    return f"grey images ({stored} of {total} stored as RGB with equal channels)" if stored else "grey images"


def _round_down(value: float, multiple: int) -> int:
    return int(value // multiple * multiple)


def make_plan(fp: dict, device: str = "cpu", overrides: dict | None = None) -> dict:
    """Derive the training plan from a fingerprint (rules in the module docstring).

    Args:
        fp: from :func:`fingerprint`.
        device: ``"cuda"`` (GPU budget) or anything else (CPU budget; ``"mps"`` counts as GPU).
        overrides: plan keys set by command-line flags (``None`` values are ignored).

    Raises:
        S2MError: an override names an unknown plan key or an invalid value.
    """
    gpu = str(device).startswith(("cuda", "mps"))
    plan: dict = {}
    reasons: dict[str, str] = {}

    def choose(key: str, value, reason: str) -> None:
        plan[key] = value
        reasons[key] = reason

    descriptors = fp.get("descriptors") or {}
    tubularity = descriptors.get("tubularity", {}).get("median", 0.0)
    short_side = fp["short_side"]["median"]
    thin = tubularity > THIN_TUBULARITY
    large = short_side >= LARGE_SIDE
    greys = fp["channels"].get("grey", 0) + fp["channels"].get(GREY_AS_COLOUR, 0)
    colour = fp["channels"].get("colour", 0) >= greys
    fundus_like = thin and colour and fp.get("fov_share", 0) >= 0.5
    if thin and large:
        size = 256 if gpu else 128
        choose(
            "mode",
            "patch",
            f"thin structures (median tubularity {tubularity:.2f} > {THIN_TUBULARITY}) "
            f"on large images (median short side {short_side:.0f} ≥ {LARGE_SIDE} px)",
        )
        choose(
            "patch_size", size, f"native-resolution patches, {size} px on {'GPU (paper)' if gpu else 'CPU'}"
        )
        choose("size", None, "patch mode keeps the native resolution")
        choose("inference", "sliding_window", "patch-trained models predict whole images by sliding window")
        choose("overlap", 0.5, "half-patch overlap between sliding windows")
        choose(
            "foreground_bias",
            FOREGROUND_BIAS,
            "2 of 3 patches centred on a foreground pixel (sparse structures)",
        )
    else:
        default = 352 if gpu else 160
        cap = max(64, _round_down(short_side, 16))
        size = min(default, cap)
        why = (
            f"median tubularity {tubularity:.2f} ≤ {THIN_TUBULARITY}"
            if not thin
            else f"images are small (median short side {short_side:.0f} < {LARGE_SIDE} px)"
        )
        choose("mode", "resize", f"{why}: whole images resized")
        choose(
            "size",
            size,
            f"{default}² on {'GPU (paper)' if gpu else 'CPU'}"
            + (f", capped by the median short side ({short_side:.0f} px)" if size < default else ""),
        )
        choose("patch_size", None, "resize mode")
        choose("inference", "resize", "resize to the training size, upsample the prediction back")
        choose("overlap", None, "resize mode")
        choose("foreground_bias", None, "resize mode")
    choose(
        "tubular",
        thin,
        f"median tubularity {tubularity:.2f} {'>' if thin else '≤'} {THIN_TUBULARITY}: "
        + ("thin structures, clDice reported" if thin else "no clDice"),
    )
    if fundus_like:
        choose(
            "preprocess",
            "green_clahe",
            "colour images of thin structures with field-of-view masks "
            "(fundus): green channel + CLAHE (paper)",
        )
    else:
        choose("preprocess", "none", "no modality-specific preprocessing needed")
    use_fov = fp.get("fov_share", 0) > 0
    choose(
        "use_fov",
        use_fov,
        "field-of-view masks found: loss and metrics inside the FOV" if use_fov else "no field-of-view masks",
    )
    grey = plan["preprocess"] == "green_clahe" or not colour
    choose(
        "in_channels",
        1 if grey else 3,
        "green channel only"
        if plan["preprocess"] == "green_clahe"
        else (_grey_reason(fp) if grey else "colour images"),
    )
    classes = int(fp.get("num_classes", 1))
    choose(
        "num_classes",
        classes,
        "binary masks: 1 sigmoid channel"
        if classes == 1
        else f"integer class maps with {classes} classes (softmax)",
    )
    choose("loss", "masl", "MASL, the paper's loss (learned weighting)")
    n_train = int(fp.get("train_cases") or max(1, round(0.7 * fp["cases"])))
    if gpu:
        choose("batch_size", 8, "paper: 8 per GPU")
        choose("epochs", 150, "paper: 150 epochs (early stopping on validation Dice)")
        virtual = 30 * n_train if fp["cases"] < 1000 else n_train
        choose(
            "samples_per_epoch",
            virtual,
            "paper: small sets expanded ×30 per epoch"
            if fp["cases"] < 1000
            else "large set: one pass per epoch",
        )
        choose("augment", "full", "paper's augmentation (flips, resized crop, ±180° affine, dropout, jitter)")
    else:
        choose("batch_size", 8, "CPU budget")
        choose("epochs", 40, "CPU budget (early stopping on validation Dice)")
        virtual = int(np.clip(4 * n_train, 64, 512))
        choose("samples_per_epoch", virtual, "CPU budget: virtual epoch of 4 × the training cases (64..512)")
        light = "flips, 90° rotations, brightness/contrast" + (
            ", resized crop" if plan["mode"] == "resize" else ""
        )
        choose("augment", "light", f"CPU budget: {light}")
    _format_choices(fp, choose)
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key not in PLAN_KEYS:
            raise S2MError(f"unknown plan setting {key!r} (known: {', '.join(PLAN_KEYS)})")
        choose(key, value, "set by flag")
    resolve_label_mode(plan, reasons)
    _complete(plan, reasons, gpu, colour)
    plan["reasons"] = reasons
    plan["device"] = "gpu" if gpu else "cpu"
    return plan


def _format_choices(fp: dict, choose) -> None:
    """Plan entries of the formats of docs/data.md "Formats" (channel files, class names, NIfTI slices)."""
    if fp.get("image_channels"):
        channels = fp["image_channels"]
        choose("in_channels", channels, f"{channels} channel files per case, stacked")
    if fp.get("classes"):
        choose("classes", fp["classes"], "class names of the dataset (dataset.json / palette.json)")
    if fp.get("labels"):
        choose("labels", fp["labels"], "stored label values / colours, used to write predictions back")
    if fp.get("volume_slices"):
        choose("skip_empty_slices", True, "NIfTI volumes: training skips slices without foreground")
        choose("slice_axis", fp["slice_axis"], "NIfTI volumes: slicing axis (s2m predict uses it too)")
        choose("modalities", fp["modalities"], "NIfTI volumes: modality file suffixes, stacked in this order")


def _complete(plan: dict, reasons: dict, gpu: bool, colour: bool) -> None:
    """Fill values that a flag made necessary (e.g. ``mode=patch`` without a patch size) and check them."""
    if plan["mode"] not in ("resize", "patch"):
        raise S2MError(f"plan mode must be 'resize' or 'patch', not {plan['mode']!r}")
    if plan["mode"] == "patch":
        if not plan.get("patch_size"):
            plan["patch_size"] = 256 if gpu else 128
            reasons["patch_size"] = "default patch size for patch mode"
        if plan.get("inference") != "sliding_window" and reasons.get("inference") != "set by flag":
            plan["inference"], reasons["inference"] = "sliding_window", "patch mode"
        plan["overlap"] = 0.5 if plan.get("overlap") is None else plan["overlap"]
        plan["foreground_bias"] = (
            plan.get("foreground_bias") if plan.get("foreground_bias") is not None else FOREGROUND_BIAS
        )
    else:
        if not plan.get("size"):
            plan["size"] = 352 if gpu else 160
            reasons["size"] = "default size for resize mode"
        if plan.get("inference") != "resize" and reasons.get("inference") != "set by flag":
            plan["inference"], reasons["inference"] = "resize", "resize mode"
    if plan["preprocess"] not in ("none", "green_clahe"):
        raise S2MError(f"unknown preprocessing {plan['preprocess']!r} (use 'none' or 'green_clahe')")
    if reasons["in_channels"] != "set by flag":
        if plan["preprocess"] == "green_clahe":
            plan["in_channels"], reasons["in_channels"] = 1, "green channel only"
        elif reasons["in_channels"] == "green channel only":  # green-channel preprocessing switched off
            plan["in_channels"], reasons["in_channels"] = (
                (3, "colour images") if colour else (1, "grey images")
            )
    for key in ("size", "patch_size", "batch_size", "epochs", "samples_per_epoch"):
        value = plan.get(key)
        if value is not None and (not isinstance(value, (int, np.integer)) or value < 1):
            raise S2MError(f"plan setting {key} must be a positive integer, not {value!r}")
    if plan["augment"] not in ("none", "light", "full"):
        raise S2MError(f"augmentation must be 'none', 'light' or 'full', not {plan['augment']!r}")


def format_fingerprint(fp: dict, plan: dict | None = None) -> str:
    """Human-readable fingerprint (and plan) as plain text, as printed by ``s2m analyze``."""

    def stat(s: dict, digits: int = 0) -> str:
        return f"median {s['median']:.{digits}f} (IQR {s['q25']:.{digits}f}–{s['q75']:.{digits}f})"

    lines = [
        f"dataset        {fp['root']}",
        f"layout         {fp['layout']}, {fp['cases']} cases"
        + (", published split" if fp.get("known_split") else "")
        + (f", {fp['multi_mask_cases']} with several masks (united)" if fp.get("multi_mask_cases") else ""),
        f"image height   {stat(fp['height'])}  [min {fp['min_size'][0]}, max {fp['max_size'][0]}]",
        f"image width    {stat(fp['width'])}  [min {fp['min_size'][1]}, max {fp['max_size'][1]}]",
        f"channels       {', '.join(f'{k}: {v}' for k, v in fp['channels'].items())}; "
        f"{', '.join(f'{k}: {v}' for k, v in fp['bit_depth'].items())}",
        f"classes        {fp['num_classes'] if fp['num_classes'] > 1 else 'binary'}",
        f"foreground     {stat(fp['foreground_fraction'], 3)} of the pixels (non-empty masks)",
        f"empty masks    {fp['empty_mask_share']:.1%}",
        f"FOV masks      {fp['fov_share']:.0%} of the cases",
    ]
    if fp.get("descriptors"):
        lines.append("morphology     (MASL descriptors, per sample)")
        for name, s in fp["descriptors"].items():
            lines.append(f"  {name:<13}{stat(s, 3)}")
    if plan:
        lines.append("plan")
        for key in PLAN_KEYS:
            value = plan.get(key)
            if value is None:
                continue
            shown = f"{value:.2f}" if isinstance(value, float) else str(value)
            lines.append(f"  {key:<18}{shown:<16}{plan['reasons'].get(key, '')}")
    return "\n".join(lines)


def plan_summary(plan: dict) -> str:
    """One line for logs: the main choices of a plan."""
    if plan["mode"] == "patch":
        geometry = f"patch {plan['patch_size']} + sliding window"
    else:
        geometry = f"resize {plan['size']}"
    return (
        f"{geometry}, preprocess {plan['preprocess']}, in_channels {plan['in_channels']}, "
        f"classes {plan['num_classes']}, batch {plan['batch_size']}, epochs {plan['epochs']}, "
        f"{plan['samples_per_epoch']} samples/epoch{', FOV' if plan['use_fov'] else ''}"
    )
