"""Deterministic train/val/test splits, saved in the run as ``splits.json`` and reusable.

Rules (docs/data.md):

- A published split found by :func:`~s2mnet.data.discover` (folder names such as ``training/``/``test/``,
  or file names such as DRIVE's ``21_training``/``01_test``) is used as it is. When it has no validation
  part, 20 % of its training cases (at least one; 4 of DRIVE's 20) are moved to validation, chosen by
  the seed. When it has no test part, ``test_fraction`` of its training cases are held out as test.
- Otherwise cases are shuffled by the seed and cut 70/15/15 (``val_fraction``/``test_fraction``),
  with at least one validation and one test case when there are ≥ 3 cases. With 2 cases, one trains
  and the other validates and tests; with 1 case, it serves all three (the split records this).
- A user split file ``{"train": [...], "val": [...], "test": [...]}`` may name cases by id, image file
  name or image stem; unknown names, overlaps, or a missing ``train`` raise :class:`DataError`. A
  missing ``val`` is carved from ``train`` as above.
- Cases of one ``group`` (the slices of a NIfTI volume) are always in the same part: random splits and
  carving draw groups, and a split file naming a volume (its id or file name) takes all its slices.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from s2mnet.data.naming import file_stem
from s2mnet.data.types import DatasetIndex
from s2mnet.errors import DataError
from s2mnet.io_utils import atomic_write_json, read_json

SPLIT_NAMES = ("train", "val", "test")
KNOWN_SPLIT_VAL_FRACTION = 0.2


def _carve(ids: list[str], fraction: float, seed: int, salt: int) -> tuple[list[str], list[str]]:
    """Move ``max(1, round(fraction·n))`` ids (seeded) out of ``ids``; returns (kept, moved)."""
    if len(ids) < 2:
        return ids, []
    count = min(len(ids) - 1, max(1, round(fraction * len(ids))))
    order = np.random.default_rng([seed, salt]).permutation(len(ids))
    moved = {ids[i] for i in order[:count]}
    return [i for i in ids if i not in moved], [i for i in ids if i in moved]


def make_splits(
    index: DatasetIndex, seed: int = 0, val_fraction: float = 0.15, test_fraction: float = 0.15
) -> dict:
    """Return ``{"train", "val", "test": [case ids], "source": str, "seed": int}`` (deterministic)."""
    group_of = _groups(index)
    if index.known_split:
        split = {name: list(index.known_split.get(name, [])) for name in SPLIT_NAMES}
        source = f"published split ({index.known_split.get('source', 'dataset')})"
        if not split["test"]:
            split["train"], split["test"] = _carve_groups(split["train"], test_fraction, seed, 2, group_of)
            source += f"; test carved from train ({test_fraction:.0%}, seed {seed})"
        if not split["val"]:
            split["train"], split["val"] = _carve_groups(
                split["train"], KNOWN_SPLIT_VAL_FRACTION, seed, 1, group_of
            )
            source += f"; val carved from train ({KNOWN_SPLIT_VAL_FRACTION:.0%}, seed {seed})"
        return {**split, "source": source, "seed": seed}
    units = list(dict.fromkeys(group_of.values()))
    split = _random_split(units, seed, val_fraction, test_fraction)
    members: dict[str, list[str]] = {}
    for case_id, unit in group_of.items():
        members.setdefault(unit, []).append(case_id)
    return {**split, **{name: [i for unit in split[name] for i in members[unit]] for name in SPLIT_NAMES}}


def _groups(index: DatasetIndex) -> dict[str, str]:
    """``{case id: splitting unit}``: the case's ``group`` (a volume's slices) or the case itself."""
    return {case.case_id: getattr(case, "group", None) or case.case_id for case in index.cases}


def _carve_groups(
    ids: list[str], fraction: float, seed: int, salt: int, group_of: dict[str, str]
) -> tuple[list[str], list[str]]:
    """:func:`_carve` over the groups of ``ids`` (cases without a group are their own group)."""
    units = list(dict.fromkeys(group_of.get(i, i) for i in ids))
    _, moved_units = _carve(units, fraction, seed, salt)
    moved = set(moved_units)
    kept = [i for i in ids if group_of.get(i, i) not in moved]
    return kept, [i for i in ids if group_of.get(i, i) in moved]


def _random_split(ids: list[str], seed: int, val_fraction: float, test_fraction: float) -> dict:
    """The seeded 70/15/15 split of the module docstring over ``ids`` (cases or groups)."""
    n = len(ids)
    if n == 1:
        return {
            "train": ids,
            "val": ids,
            "test": ids,
            "source": "single case used for train, val and test",
            "seed": seed,
        }
    if n == 2:
        return {
            "train": ids[:1],
            "val": ids[1:],
            "test": ids[1:],
            "source": "two cases: one trains, the other validates and tests",
            "seed": seed,
        }
    order = np.random.default_rng([seed, 0]).permutation(n)
    n_test = max(1, round(test_fraction * n))
    n_val = max(1, round(val_fraction * n))
    n_val = min(n_val, n - n_test - 1)
    test = sorted(order[:n_test].tolist())
    val = sorted(order[n_test : n_test + n_val].tolist())
    train = sorted(order[n_test + n_val :].tolist())
    return {
        "train": [ids[i] for i in train],
        "val": [ids[i] for i in val],
        "test": [ids[i] for i in test],
        "source": f"random {1 - val_fraction - test_fraction:.0%}/{val_fraction:.0%}/{test_fraction:.0%} "
        f"(seed {seed})",
        "seed": seed,
    }


def save_splits(splits: dict, path: str | os.PathLike) -> None:
    """Write ``splits`` as JSON atomically."""
    atomic_write_json(path, splits)


def load_splits(path: str | os.PathLike, index: DatasetIndex | None = None, seed: int = 0) -> dict:
    """Read a split file (one written by :func:`save_splits`, or a user's) and check it against ``index``.

    Names are resolved to case ids by id, image file name or image stem. Without ``index`` the file is
    only checked for its structure.

    Raises:
        DataError: unreadable JSON, wrong structure, unknown names or cases in two parts, naming the file.
    """
    path = Path(path)
    data = read_json(path, DataError, what="split file")
    if not isinstance(data, dict) or not isinstance(data.get("train"), list) or not data["train"]:
        raise DataError(f'{path}: a split file needs a non-empty "train" list (and "val", "test" lists)')
    for name in SPLIT_NAMES:
        if not isinstance(data.get(name, []), list) or not all(
            isinstance(x, str) for x in data.get(name, [])
        ):
            raise DataError(f'{path}: "{name}" must be a list of case names')
    split = {name: list(data.get(name, [])) for name in SPLIT_NAMES}
    if index is not None:
        lookup: dict[str, list[str]] = {}
        for case in index.cases:
            group = getattr(case, "group", None)
            for alias in (case.image.name, file_stem(case.image), *([group] if group else [])):
                if group:  # a volume's id or file name names all its slices
                    lookup.setdefault(alias, []).append(case.case_id)
                else:
                    lookup[alias] = [case.case_id]
        for case in index.cases:
            lookup[case.case_id] = [case.case_id]
        unknown = [name for part in split.values() for name in part if name not in lookup]
        if unknown:
            shown = ", ".join(unknown[:8]) + (f", … ({len(unknown) - 8} more)" if len(unknown) > 8 else "")
            raise DataError(f"{path}: {len(unknown)} unknown case names: {shown}")
        split = {
            name: list(dict.fromkeys(i for x in part for i in lookup[x])) for name, part in split.items()
        }
    seen: dict[str, str] = {}
    for name, part in split.items():
        for case_id in part:
            if case_id in seen and seen[case_id] != name:
                raise DataError(f"{path}: case {case_id!r} is in both {seen[case_id]!r} and {name!r}")
            seen[case_id] = name
    source = str(data.get("source", f"user split file {path.name}"))
    if not split["val"]:
        group_of = _groups(index) if index is not None else {}
        split["train"], split["val"] = _carve_groups(
            split["train"], KNOWN_SPLIT_VAL_FRACTION, seed, 1, group_of
        )
        source += f"; val carved from train ({KNOWN_SPLIT_VAL_FRACTION:.0%}, seed {seed})"
    return {**split, "source": source, "seed": int(data.get("seed", seed))}
