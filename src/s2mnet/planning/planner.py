"""The planner: the training plan a dataset fingerprint implies, every choice with its reason.

Plan rules (:func:`make_plan`; each choice is stored with its reason in ``plan["reasons"]``):

- **thin structures on large images** — median tubularity > :data:`THIN_TUBULARITY` and median short
  side ≥ :data:`LARGE_SIDE` px → ``mode="patch"``: native-resolution patches (256 px on a GPU as in the
  paper, 128 px on a CPU), sliding-window inference with 50 % overlap. If, in addition, the images are
  colour with field-of-view masks (fundus), ``preprocess="green_clahe"`` and ``use_fov=True`` (docs/method.md
  §4).
- **everything else** → ``mode="resize"``: 352² on a GPU (method.md §4), 160² on a CPU, never larger
  than the median short side (rounded down to a multiple of 16, at least 64).
- ``in_channels`` 1 for green-channel preprocessing or when most images are grey (grey files, or RGB
  files whose three channels are equal, as most BUSI ultrasound images), else 3; ``num_classes`` from the
  masks; ``loss="masl"``.
- ``label_mode`` "binary" | "multiclass" | "multilabel" and ``regions`` {name: [label values]}
  (:mod:`s2mnet.data.labels`): from ``num_classes`` unless set; regions decide ``num_classes`` (the
  number of output channels) and ``classes``.
- budget: GPU — batch 8, 150 epochs, virtual epoch = 30 × the training cases for sets under 1000
  (method.md §4: small sets "expanded ×30"), full augmentation; CPU — batch 8, 40 epochs, virtual epoch
  of 4 × the training cases clamped to 64..512 samples, light augmentation.
- ``overrides`` (command-line flags) win: ``reasons[key] = "set by flag"``.
"""

from __future__ import annotations

import numpy as np

from s2mnet.data.labels import resolve_label_mode
from s2mnet.errors import S2MError
from s2mnet.planning.fingerprint import GREY_AS_COLOUR
from s2mnet.planning.plan import PLAN_KEYS, validate_plan

THIN_TUBULARITY = 0.3
LARGE_SIDE = 512
FOREGROUND_BIAS = 0.667  # 2 of 3 training patches centred on foreground


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
    validate_plan(plan)
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
