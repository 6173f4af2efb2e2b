"""A preset's checks of a data folder: :func:`check_data` (does it look like the dataset?) and
:func:`resolve_split` (the preset's split of the discovered cases, from the shipped ``splits/*.json``).
"""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING, Any

from s2mnet.errors import DataError, S2MError

if TYPE_CHECKING:
    from s2mnet.data.types import DatasetIndex
    from s2mnet.planning.presets.entries import Preset

_SHOWN = 3


def check_data(preset: Preset, root) -> DatasetIndex:
    """Discover ``root`` and check that its images look like the preset's dataset.

    Raises:
        DataError: one line naming the folder, the dataset, the mismatching names and the expected layout.
    """
    from s2mnet.data.discover import discover
    from s2mnet.data.naming import file_stem

    if not preset.ready:
        raise S2MError(f"preset {preset.name!r} is a placeholder: its data format is not available yet")
    index = discover(root)
    pattern = re.compile(preset.name_pattern)
    stems = [file_stem(case.image) for case in index.cases]
    wrong = [stem for stem in stems if not pattern.fullmatch(stem)]
    if wrong:
        shown = ", ".join(wrong[:_SHOWN]) + (", …" if len(wrong) > _SHOWN else "")
        raise DataError(
            f"{root}: does not look like {preset.title}: {len(wrong)} of {len(stems)} image names ({shown}) "
            f"are not like {preset.example_names}; expected {preset.layout}"
        )
    return index


def _seeded_order(ids: list[str], seed: int) -> list[str]:
    """Ids ordered by SHA-256 of ``"<seed>:<id>"`` (independent of library versions and of other ids)."""
    return sorted(ids, key=lambda i: hashlib.sha256(f"{seed}:{i}".encode()).hexdigest())


def _counts(n: int, ratios: dict[str, float]) -> tuple[int, int]:
    """(test, val) sizes: rounded shares, at least one each when there are ≥ 3 cases."""
    if n < 3:
        return (1, 0) if n == 2 else (0, 0)
    n_test = max(1, round(ratios.get("test", 0.0) * n)) if ratios.get("test") else 0
    n_val = max(1, round(ratios.get("val", 0.0) * n)) if ratios.get("val") else 0
    return n_test, min(n_val, n - n_test - 1)


def _carve(ids: list[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Move the seeded first ``max(1, round(fraction·n))`` ids out; returns (kept, moved), sorted."""
    if len(ids) < 2 or fraction <= 0:
        return ids, []
    count = min(len(ids) - 1, max(1, round(fraction * len(ids))))
    moved = set(_seeded_order(ids, seed)[:count])
    return [i for i in ids if i not in moved], [i for i in ids if i in moved]


def resolve_split(preset: Preset, index: DatasetIndex) -> dict[str, Any]:
    """The preset's split of the cases in ``index``: ``{"train", "val", "test": [case ids], "source", ...}``.

    Split files (``splits/*.json``) have a ``kind``:

    * ``lists`` — explicit names per part (image stems, or units, below: official or conventional
      splits determined by names); names absent from the folder are left out and counted (``missing``);
      ``val`` is carved from ``train`` by ``val_rule`` ``{"fraction", "seed"}`` when the list has none.
    * ``published`` — the split found in the folder names by :func:`~s2mnet.data.discover` (ISIC-2018,
      ACDC's ``training/`` + ``testing/``); parts it lacks are carved from train by ``ratios``/``seed``;
      no published split → ``seeded``.
    * ``seeded`` — ``ratios`` ``{"train", "val", "test"}`` over the units ordered by SHA-256 of
      ``"<seed>:<unit>"``: the same cases for every user and every training seed.

    Every rule draws **units**, never single cases of a unit: the match of the file's ``group_pattern``
    in the image path (EndoVis17's ``instrument_dataset_<n>``, ACDC's ``patient<nnn>``), else the case's
    ``group`` (the slices of one NIfTI volume), else the case itself. A grouped split lists its units
    under ``groups``.

    Raises:
        DataError: a part that ends up empty (e.g. a folder holding only DRIVE's test images), or an
            image path without the file's ``group_pattern``.
    """
    spec = preset.split_spec()
    unit_of = _units(preset, spec, index)
    kind = spec["kind"]
    seed = int(spec.get("seed", 0))
    ratios = spec.get("ratios", {})
    missing = 0
    if kind == "lists":
        parts, missing = _listed_units(spec, index, unit_of)
        if not parts["val"]:
            rule = spec.get("val_rule", {})
            parts["train"], parts["val"] = _carve(parts["train"], float(rule.get("fraction", 0.2)), seed)
        source = spec["source"]
    elif kind == "published" and index.known_split:
        known = index.known_split
        parts = {p: sorted({unit_of[i] for i in known.get(p, [])}) for p in ("train", "val", "test")}
        source = spec["source"]
        for part in ("test", "val"):
            if not parts[part]:
                parts["train"], parts[part] = _carve(parts["train"], float(ratios.get(part, 0.1)), seed)
                source += f"; {part} carved from train ({ratios.get(part, 0.1):.0%}, seed {seed})"
    else:
        order = _seeded_order(sorted(set(unit_of.values())), seed)
        n_test, n_val = _counts(len(order), ratios)
        parts = {
            "test": sorted(order[:n_test]),
            "val": sorted(order[n_test : n_test + n_val]),
            "train": sorted(order[n_test + n_val :]),
        }
        shares = "/".join(f"{ratios.get(p, 0):.0%}" for p in ("train", "val", "test"))
        source = spec.get("fallback_source", spec["source"]) if kind != "seeded" else spec["source"]
        source += f" (seeded {shares} over SHA-256 order, seed {seed})"
    for part in ("train", "test"):
        if not parts[part]:
            raise DataError(f"{index.root}: the {preset.title} split leaves no {part} cases ({source})")
    cases = {p: sorted(c for c, u in unit_of.items() if u in set(units)) for p, units in parts.items()}
    split = {**cases, "source": source, "seed": seed, "kind": kind}
    if any(unit != case_id for case_id, unit in unit_of.items()):
        split["groups"] = parts
    if missing:
        split["missing"] = missing
    return split


def _units(preset: Preset, spec: dict[str, Any], index: DatasetIndex) -> dict[str, str]:
    """``{case id: unit}`` (:func:`resolve_split`): ``group_pattern`` match, volume group, or the case."""
    pattern = re.compile(spec["group_pattern"]) if spec.get("group_pattern") else None
    units = {}
    for case in index.cases:
        unit = case.group or case.case_id
        if pattern is not None:
            path = case.image.relative_to(index.root) if index.root in case.image.parents else case.image
            found = pattern.search(path.as_posix())
            if found is None:
                raise DataError(
                    f"{case.image}: no {preset.title} unit in its path (expected {pattern.pattern!r}, the "
                    f"unit the split keeps together); expected {preset.layout}"
                )
            unit = found.group(0)
        units[case.case_id] = unit
    return units


def _listed_units(
    spec: dict[str, Any], index: DatasetIndex, unit_of: dict[str, str]
) -> tuple[dict[str, list[str]], int]:
    """Units named by a ``lists`` file (by unit or by image stem) and the number of names not found."""
    from s2mnet.data.naming import file_stem

    by_name = {file_stem(case.image): unit_of[case.case_id] for case in index.cases}
    by_name.update({unit: unit for unit in unit_of.values()})
    parts, missing = {}, 0
    for part in ("train", "val", "test"):
        listed = spec.get(part, [])
        parts[part] = sorted({by_name[name] for name in listed if name in by_name})
        missing += sum(name not in by_name for name in listed)
    return parts, missing
