"""The preset registry: one entry per benchmark of the paper (method.md §5), read from ``presets.toml``.

Each :class:`Preset` states the publisher's layout (paired by the generic rules of
:func:`s2mnet.data.discover`, never by preset-specific file names), a check of the discovered image names,
the label mode, the split (a JSON file shipped in ``s2mnet/planning/presets/splits/``), the protocol at
each scale (:mod:`s2mnet.planning.presets.scales`) and the paper's reported numbers.

The entries are data: ``presets.toml`` beside this module (one table per preset, format in its header),
read with :mod:`tomllib` and validated by :func:`load_presets` when this module is imported, so that a
malformed entry fails at once with an error naming the preset and the field. The folder checks live in
:mod:`s2mnet.planning.presets.checks`; they are re-exported here with the scales' names.
"""

from __future__ import annotations

import copy
import re
import tomllib
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from s2mnet.data.labels import LABEL_MODES, LABEL_PRESETS, check_regions
from s2mnet.errors import S2MError
from s2mnet.planning.presets.checks import check_data, resolve_split
from s2mnet.planning.presets.entries import (
    BASELINE_COLUMNS,
    PAPER_VIRTUAL_EPOCH_FACTOR,
    PaperNumbers,
    Preset,
)
from s2mnet.planning.presets.scales import PROTOCOLS, RECIPES, SCALES, plan_overrides

__all__ = [
    "PRESETS",
    "PRESETS_FILE",
    "RECIPES",
    "SCALES",
    "PaperNumbers",
    "Preset",
    "check_data",
    "get_preset",
    "list_presets",
    "load_presets",
    "plan_overrides",
    "resolve_split",
]

#: The shipped data file (package data of ``s2mnet.planning.presets``).
PRESETS_FILE = "presets.toml"

_STRINGS = ("title", "modality", "layout", "label_mode", "split_file", "protocol", "name_pattern")
_REQUIRED = (*_STRINGS, "example_names", "classes", "paper")
_OPTIONAL = ("labels", "ready", "notes", "epoch_factor")
_NAME = re.compile(r"[a-z0-9][a-z0-9-]*")
_RANGE = re.compile(r"\s*(\d+)\s*\.\.\s*(\d+)\s*")


def load_presets(path: str | Path | None = None) -> dict[str, Preset]:
    """Read and validate a presets file (default: the shipped ``presets.toml``).

    Args:
        path: a TOML file in the format of the shipped one; ``None`` reads the package's own.

    Returns:
        ``{name: Preset}`` in the file's order.

    Raises:
        S2MError: unreadable TOML, or an entry with a missing, unknown or ill-typed field; the message
            names the file and the preset.
    """
    if path is None:
        source = f"s2mnet/planning/presets/{PRESETS_FILE}"
        text = resources.files("s2mnet.planning.presets").joinpath(PRESETS_FILE).read_text("utf-8")
    else:
        source, text = str(path), Path(path).read_text(encoding="utf-8")
    try:
        tables = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise S2MError(f"{source}: not valid TOML ({exc})") from None
    if not tables:
        raise S2MError(f"{source}: no presets")
    return {name: _preset(name, entry, source) for name, entry in tables.items()}


def _preset(name: str, entry: Any, source: str) -> Preset:
    """One validated :class:`Preset` from its TOML table."""

    def bad(problem: str) -> S2MError:
        return S2MError(f"{source}: preset {name!r}: {problem}")

    if not _NAME.fullmatch(name):
        raise bad("the name must be lower-case letters, digits and '-' (it is what `s2m reproduce` takes)")
    if not isinstance(entry, Mapping):
        raise bad(f"must be a table of fields, not {type(entry).__name__}")
    missing = [key for key in _REQUIRED if key not in entry]
    unknown = sorted(set(entry) - {*_REQUIRED, *_OPTIONAL})
    if missing:
        raise bad(f"missing field(s) {', '.join(missing)}")
    if unknown:
        raise bad(f"unknown field(s) {', '.join(unknown)} (known: {', '.join((*_REQUIRED, *_OPTIONAL))})")
    for key in (*_STRINGS, "example_names", "notes"):
        if key in entry and not isinstance(entry[key], str):
            raise bad(f"{key} must be a string, not {entry[key]!r}")
    for key in _STRINGS:
        if not entry[key].strip():
            raise bad(f"{key} is empty")
    if entry["label_mode"] not in LABEL_MODES:
        raise bad(f"label_mode {entry['label_mode']!r} is not one of {', '.join(LABEL_MODES)}")
    if entry["protocol"] not in PROTOCOLS:
        raise bad(f"protocol {entry['protocol']!r} is not one of {', '.join(PROTOCOLS)}")
    classes = entry["classes"]
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) and c for c in classes):
        raise bad(f"classes must be a non-empty list of names, not {classes!r}")
    try:
        re.compile(entry["name_pattern"])
    except re.error as exc:
        raise bad(f"name_pattern {entry['name_pattern']!r} is not a regular expression ({exc})") from None
    splits = resources.files("s2mnet.planning.presets").joinpath("splits")
    if not splits.joinpath(entry["split_file"]).is_file():
        raise bad(f"split_file {entry['split_file']!r} is not in s2mnet/planning/presets/splits/")
    ready = entry.get("ready", True)
    if not isinstance(ready, bool):
        raise bad(f"ready must be true or false, not {ready!r}")
    factor = entry.get("epoch_factor", PAPER_VIRTUAL_EPOCH_FACTOR)
    if not isinstance(factor, int) or isinstance(factor, bool) or factor < 1:
        raise bad(f"epoch_factor must be a positive integer, not {factor!r}")
    return Preset(
        name=name,
        title=entry["title"],
        modality=entry["modality"],
        layout=entry["layout"],
        label_mode=entry["label_mode"],
        classes=tuple(classes),
        split_file=entry["split_file"],
        protocol=entry["protocol"],
        name_pattern=entry["name_pattern"],
        example_names=entry["example_names"],
        paper=_paper(entry["paper"], bad),
        labels=_labels(entry.get("labels"), entry["label_mode"], bad),
        ready=ready,
        notes=entry.get("notes", ""),
        epoch_factor=factor,
    )


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 100


def _paper(paper: Any, bad: Any) -> PaperNumbers:
    """The ``paper`` table: ``s2mnet`` and ``baselines`` (the method.md §5 columns and the best other)."""
    if not isinstance(paper, Mapping) or set(paper) - {"s2mnet", "baselines", "per_class"}:
        raise bad("paper must be a table with s2mnet, baselines (and optionally per_class)")
    if not _number(paper.get("s2mnet")):
        raise bad(f"paper.s2mnet must be a Dice in % (0..100), not {paper.get('s2mnet')!r}")
    tables = {}
    for key in ("baselines", "per_class"):
        table = paper.get(key, {})
        if not isinstance(table, Mapping) or not all(_number(v) for v in table.values()):
            raise bad(f"paper.{key} must map names to a Dice in % (0..100), not {table!r}")
        tables[key] = {str(k): float(v) for k, v in table.items()}
    absent = [column for column in BASELINE_COLUMNS if column not in tables["baselines"]]
    if absent:
        raise bad(f"paper.baselines lacks the column(s) {', '.join(absent)} of method.md §5")
    return PaperNumbers(float(paper["s2mnet"]), tables["baselines"], tables["per_class"])


def _labels(labels: Any, mode: str, bad: Any) -> dict[str, Any]:
    """``labels``: a :data:`LABEL_PRESETS` name or a ``{label_mode, regions}`` table (``"A..B"`` ranges)."""
    if labels is None:
        return {}
    if isinstance(labels, str):
        if labels not in LABEL_PRESETS:
            raise bad(f"labels {labels!r} is not a label preset ({', '.join(LABEL_PRESETS)})")
        labels = copy.deepcopy(LABEL_PRESETS[labels])
    elif isinstance(labels, Mapping) and set(labels) <= {"label_mode", "regions"} and "regions" in labels:
        regions = labels["regions"]
        if not isinstance(regions, Mapping):
            raise bad(f"labels.regions must be a table {{name: [label values]}}, not {regions!r}")
        labels = {**labels, "regions": {k: _values(v, bad) for k, v in regions.items()}}
    else:
        raise bad("labels must be a label preset's name or a table with regions (and label_mode)")
    try:
        labels["regions"] = check_regions(labels["regions"], "labels.regions")
    except S2MError as exc:
        raise bad(str(exc)) from None
    if labels.setdefault("label_mode", mode) != mode:
        raise bad(f"labels.label_mode {labels['label_mode']!r} differs from label_mode {mode!r}")
    return labels


def _values(values: Any, bad: Any) -> Any:
    """A region's label values: a list, or ``"FIRST..LAST"`` (inclusive) expanded to the list."""
    if isinstance(values, str):
        found = _RANGE.fullmatch(values)
        if found is None:
            raise bad(f"region values {values!r}: use a list of integers or 'FIRST..LAST'")
        return list(range(int(found.group(1)), int(found.group(2)) + 1))
    return values


PRESETS: dict[str, Preset] = load_presets()


def list_presets(ready_only: bool = False) -> list[str]:
    """Preset names (``ready_only``: without the placeholders completed elsewhere)."""
    return [name for name, preset in PRESETS.items() if preset.ready or not ready_only]


def get_preset(name: str) -> Preset:
    """The preset called ``name`` (case-insensitive; ``_`` and ``-`` alike); unknown → S2MError."""
    key = name.strip().lower().replace("_", "-")
    aliases = {p.title.lower().replace("_", "-"): p.name for p in PRESETS.values()}
    preset = PRESETS.get(key) or PRESETS.get(aliases.get(key, ""))
    if preset is None:
        raise S2MError(f"unknown dataset preset {name!r} (known: {', '.join(PRESETS)})")
    return preset
