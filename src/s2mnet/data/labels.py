"""Label modes: how the values of a label map become the network's targets (binary, multi-class, multi-label).

Three modes, stored in the plan as ``plan["label_mode"]`` (and, where the label values need naming, in
``plan["regions"] = {name: [label values]}``):

* ``"binary"`` — one sigmoid channel. Without regions the mask files are decoded by the binary rules of
  :mod:`s2mnet.data.io` ({0,1}, {0,255}, colour...); with exactly one region, the foreground is the set of
  its label values (e.g. EndoVis17 binary from the parts map: ``{"instrument": [10, 20, 30]}``).
* ``"multiclass"`` — exclusive classes, softmax over K channels (class 0 = background) and an integer
  class map target. Without regions the mask values are the class indices 0..K-1; with regions, class
  k ≥ 1 is the k-th region (in the order given) and every value not listed is background (ACDC:
  ``{"RV": [1], "MYO": [2], "LV": [3]}``; EndoVis17 parts ``{"shaft": [10], "wrist": [20],
  "clasper": [30]}``). Regions must then be disjoint.
* ``"multilabel"`` — overlapping regions, one sigmoid channel per region (C = number of regions), target
  a ``(C, H, W)`` {0, 1} stack: channel c is 1 where the label value lies in region c (BraTS:
  ``{"ET": [4], "TC": [1, 4], "WT": [1, 2, 4]}`` from the label values {0, 1, 2, 4}).

With regions, or in a non-binary mode, the label map is read as integer values (``read_mask(...,
multiclass=True)``); multi-label regions are applied after augmentation (nearest-neighbour resampling
keeps label values intact). :func:`labels_from_regions` rebuilds a label map from predicted regions when every
region, ordered from the largest value set to the smallest, owns exactly one value not in the smaller
ones (BraTS: WT\\TC → 2, TC\\ET → 1, ET → 4, painted in that order — the BraTS convention).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from s2mnet.errors import S2MError
from s2mnet.io_utils import parse_json

if TYPE_CHECKING:
    from s2mnet.data.types import Case, DatasetIndex

LABEL_MODES = ("binary", "multiclass", "multilabel")

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")

#: Label definitions of the paper's multi-class / multi-label benchmarks (method.md §5), by preset name.
#: Values are those of the files each publisher distributes.
LABEL_PRESETS: dict[str, dict] = {
    "brats": {
        # BraTS 2020 label values: 1 necrotic / non-enhancing core, 2 oedema, 4 enhancing tumour.
        "label_mode": "multilabel",
        "regions": {"ET": [4], "TC": [1, 4], "WT": [1, 2, 4]},
    },
    "acdc": {
        # ACDC label values: 1 right-ventricle cavity, 2 myocardium, 3 left-ventricle cavity.
        "label_mode": "multiclass",
        "regions": {"RV": [1], "MYO": [2], "LV": [3]},
    },
    "endovis17_parts": {
        # EndoVis 2017 robotic instruments, per-instrument part maps: 10 shaft, 20 wrist, 30 clasper.
        "label_mode": "multiclass",
        "regions": {"shaft": [10], "wrist": [20], "clasper": [30]},
    },
    "endovis17_binary": {
        # Binary instrument/background from the same part maps (any part is instrument).
        "label_mode": "binary",
        "regions": {"instrument": [10, 20, 30]},
    },
}


def label_mode(plan: Mapping) -> str:
    """The plan's label mode; plans written before label modes existed: by ``num_classes``."""
    mode = plan.get("label_mode")
    if mode is None:
        return "binary" if int(plan.get("num_classes", 1)) == 1 else "multiclass"
    return str(mode)


def is_multilabel(plan: Mapping) -> bool:
    """True for overlapping regions with one sigmoid channel each."""
    return label_mode(plan) == "multilabel"


def region_names(plan: Mapping) -> list[str]:
    """Names of the plan's regions, in channel order (``[]`` without regions)."""
    return list(plan.get("regions") or {})


def parse_regions(spec: str | Mapping | None, source: str = "--regions") -> dict[str, list[int]] | None:
    """Regions from a flag or a plan value: a dict, a preset name, inline JSON, a JSON file or ``A=4;B=1,4``.

    Raises:
        S2MError: unreadable file, bad syntax, bad names or values (naming ``source``).
    """
    if spec is None:
        return None
    if isinstance(spec, Mapping):
        return check_regions(spec, source)
    text = str(spec).strip()
    if text.lower() in LABEL_PRESETS:
        return check_regions(LABEL_PRESETS[text.lower()]["regions"], source)
    if text.startswith("{"):
        return check_regions(_json(text, source), source)
    if text.endswith(".json") or os.path.sep in text:
        path = Path(text)
        if not path.is_file():
            raise S2MError(f"{path}: regions file not found")
        return check_regions(_json(path.read_text(encoding="utf-8"), str(path)), str(path))
    regions: dict[str, list[int]] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        name, sep, values = part.partition("=")
        if not sep:
            raise S2MError(f"{source}: {part!r} is not NAME=V1,V2 (e.g. 'ET=4;TC=1,4;WT=1,2,4')")
        try:
            regions[name.strip()] = [int(v) for v in values.split(",") if v.strip()]
        except ValueError as exc:
            raise S2MError(f"{source}: label values of {name.strip()!r} must be integers") from exc
    return check_regions(regions, source)


def _json(text: str, source: str) -> object:
    return parse_json(text, source)


def check_regions(regions: object, source: str = "regions") -> dict[str, list[int]]:
    """Validate ``{name: [label values]}``: names usable in file names, values 0..255, none empty."""
    if not isinstance(regions, Mapping) or not regions:
        raise S2MError(f"{source}: regions must be a non-empty mapping {{name: [label values]}}")
    checked: dict[str, list[int]] = {}
    for name, values in regions.items():
        if not isinstance(name, str) or not _NAME.match(name):
            raise S2MError(f"{source}: region name {name!r} must be letters, digits, '_' or '-'")
        values = [values] if isinstance(values, int) else values
        if (
            not isinstance(values, Sequence)
            or not values
            or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in values)
        ):
            raise S2MError(f"{source}: region {name!r} needs a non-empty list of label values 0..255")
        checked[name] = sorted(set(values))
    return checked


def resolve_label_mode(plan: dict, reasons: dict) -> None:
    """Set ``label_mode``, ``regions``, ``num_classes`` and ``classes`` consistently (for ``make_plan``).

    ``num_classes`` is the number of output channels: 1 (binary), K = regions + 1 (multi-class with
    regions, class 0 = background) or C = regions (multi-label).

    Raises:
        S2MError: unknown mode, multi-label without regions, overlapping multi-class regions, a binary
            mode with several regions, or a ``num_classes`` flag that contradicts the regions.
    """
    mode = plan.get("label_mode")
    regions = parse_regions(plan.get("regions"), "plan regions")
    if mode is None:
        mode = _default_mode(int(plan["num_classes"]), regions)
        reasons["label_mode"] = {
            "binary": "binary masks",
            "multiclass": "exclusive classes (integer class map)",
            "multilabel": "the regions overlap: one sigmoid channel each",
        }[mode]
    if mode not in LABEL_MODES:
        raise S2MError(f"unknown label mode {mode!r} (use {', '.join(LABEL_MODES)})")
    plan["label_mode"], plan["regions"] = mode, regions
    reasons.setdefault("regions", "label values named by flag" if regions else "mask values used as they are")
    if regions is None:
        if mode == "multilabel":
            raise S2MError("label mode 'multilabel' needs regions, e.g. --regions 'ET=4;TC=1,4;WT=1,2,4'")
        if mode == "binary" and int(plan["num_classes"]) != 1:
            plan["num_classes"], reasons["num_classes"] = 1, "binary label mode: 1 sigmoid channel"
        return
    channels, why, classes = _channels(mode, regions)
    if reasons.get("num_classes") == "set by flag" and int(plan["num_classes"]) != channels:
        raise S2MError(f"--num-classes {plan['num_classes']} contradicts the {len(regions)} {mode} regions")
    plan["num_classes"], reasons["num_classes"] = channels, why
    plan["classes"], reasons["classes"] = classes, "region names"


def expect_label_maps(index: DatasetIndex, overrides: Mapping) -> None:
    """Make the fingerprint read label values when the flags ask for classes or regions.

    Discovery guesses binary masks vs class maps from a sample of masks; regions, a multi-class or
    multi-label mode, or ``num_classes`` > 1 set by flag override that guess (``index.num_classes`` ≥ 2),
    so that label values such as BraTS {0, 1, 2, 4} are decoded instead of refused as a non-binary
    encoding.
    """
    classes = int(overrides.get("num_classes") or 1)
    wanted = (
        overrides.get("regions") is not None
        or overrides.get("label_mode") in ("multiclass", "multilabel")
        or classes > 1
    )
    if wanted and index.num_classes == 1:
        index.num_classes = max(classes, 2)


def _default_mode(num_classes: int, regions: dict[str, list[int]] | None) -> str:
    if not regions:
        return "binary" if num_classes == 1 else "multiclass"
    values = [value for members in regions.values() for value in members]
    if len(values) != len(set(values)):
        return "multilabel"
    return "binary" if len(regions) == 1 else "multiclass"


def _channels(mode: str, regions: dict[str, list[int]]) -> tuple[int, str, list[str]]:
    names = list(regions)
    if mode == "multilabel":
        return len(names), "one sigmoid channel per (overlapping) region", names
    if mode == "binary":
        if len(names) != 1:
            raise S2MError(f"binary label mode takes one region (the foreground values), got {len(names)}")
        return 1, "binary: 1 sigmoid channel", ["background", names[0]]
    values = [v for name in names for v in regions[name]]
    if len(values) != len(set(values)) or 0 in values:
        raise S2MError("multiclass regions must be disjoint and must not contain 0 (background)")
    return len(names) + 1, "background + one softmax class per region", ["background", *names]


def read_label_map(
    paths: str | os.PathLike | Sequence[str | os.PathLike] | Case, plan: Mapping
) -> np.ndarray:
    """The ``(H, W)`` uint8 map a case is augmented with: binary {0,1}, class indices, or raw label values.

    Binary without regions keeps the binary decoding rules; multi-class maps region values to class
    indices here; multi-label keeps the raw values (regions overlap, so they are applied after
    augmentation by :func:`target_array`). Regions name the values stored in the files: a case whose
    format already maps values to class indices (``Case.labels``: NIfTI label volumes, nnU-Net
    ``dataset.json``) is mapped back to its stored values first (colour palettes: the class indices).
    Values above 255 belong to no region and become 0.
    """
    from s2mnet.data.io import read_mask

    mode, regions = label_mode(plan), plan.get("regions")
    if mode == "binary" and not regions:
        return read_mask(paths)
    raw = read_mask(paths, multiclass=True)
    labels = getattr(paths, "labels", None)
    if regions and labels is not None and labels.values is not None:
        stored = labels.decode(raw)
        raw = np.where(stored > 255, 0, stored).astype(np.uint8)
    if mode == "multilabel":
        return raw
    if mode == "binary":
        return np.isin(raw, next(iter(regions.values()))).astype(np.uint8)
    if not regions:
        return raw
    lookup = np.zeros(256, np.uint8)
    for index, values in enumerate(regions.values(), start=1):
        lookup[values] = index
    return lookup[raw]


def target_array(label_map: np.ndarray, plan: Mapping) -> np.ndarray:
    """Target from :func:`read_label_map`: ``(C, H, W)`` regions (multi-label), else the map as is."""
    if not is_multilabel(plan):
        return label_map
    return regions_from_labels(label_map, plan["regions"])


def read_target(paths: str | os.PathLike | Sequence[str | os.PathLike] | Case, plan: Mapping) -> np.ndarray:
    """Ground truth of a case in the plan's label mode: ``(H, W)`` (binary, class map) or ``(C, H, W)``."""
    return target_array(read_label_map(paths, plan), plan)


def regions_from_labels(label_map: np.ndarray, regions: Mapping[str, Sequence[int]]) -> np.ndarray:
    """``(C, H, W)`` uint8 {0, 1}: channel c is 1 where the label value belongs to region c."""
    label_map = np.asarray(label_map)
    return np.stack([np.isin(label_map, list(values)) for values in regions.values()]).astype(np.uint8)


def paint_order(regions: Mapping[str, Sequence[int]]) -> list[tuple[int, int]] | None:
    """``[(channel, label value), ...]`` to paint from the largest region to the smallest, or ``None``.

    Possible when, ordered by decreasing size, each region owns exactly one value that no later (smaller)
    region has (nested regions such as BraTS, or disjoint ones): the last painted region containing a
    label value v then owns v, so every listed value comes back unchanged.
    """
    values = [set(v) for v in regions.values()]
    order = sorted(range(len(values)), key=lambda c: -len(values[c]))
    painting = []
    for position, channel in enumerate(order):
        own = values[channel] - set().union(*(values[c] for c in order[position + 1 :]))
        if len(own) != 1:
            return None
        painting.append((channel, own.pop()))
    return painting


def labels_from_regions(masks: np.ndarray, regions: Mapping[str, Sequence[int]]) -> np.ndarray:
    """Label map ``(H, W)`` uint8 from ``(C, H, W)`` region masks: each region's own value, largest first.

    BraTS: WT → 2, then TC → 1, then ET → 4 (ET ⊂ TC ⊂ WT). A pixel in a smaller region but outside a
    larger one (an inconsistent prediction) still gets the smaller region's value.

    Raises:
        S2MError: regions that do not allow a reconstruction (see :func:`paint_order`).
    """
    order = paint_order(regions)
    if order is None:
        raise S2MError(f"regions {dict(regions)} are not nested; no single label map represents them")
    label_map = np.zeros(np.asarray(masks).shape[-2:], np.uint8)
    for channel, value in order:
        label_map[np.asarray(masks[channel]) > 0] = value
    return label_map


def display_map(masks: np.ndarray) -> np.ndarray:
    """``(H, W)`` index map for overlays: 1 + the first region a pixel belongs to, 0 outside every region."""
    masks = np.asarray(masks) > 0
    return np.where(masks.any(axis=0), masks.argmax(axis=0) + 1, 0).astype(np.uint8)
