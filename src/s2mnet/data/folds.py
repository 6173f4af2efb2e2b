"""Stratified, grouped K-fold cross-validation splits (docs/data.md, "Cross-validation").

One implementation serves ``s2m train --folds K`` and the claims lab's cross-validation studies.

Rules:

- A data set with a published test split (DRIVE's ``01..20_test``) keeps it held out; the folds split
  the rest (the published train and validation parts together).
- Cases of one ``group`` (the slices of a NIfTI volume) always fall in the same fold.
- Folds are stratified by a label per case (:func:`name_strata`: the class that the file names carry, as
  BUSI's ``benign (3)`` / ``malignant (7)`` / ``normal (2)``; or strata given by the caller, such as
  whether and how much foreground a mask holds). Within each stratum, units are shuffled by the seed and
  dealt to the fold that holds fewest of that stratum (ties: fewest cases overall, then the lowest fold
  number), so every fold holds each stratum in the data's proportions, ±1 unit.
- A stratum with fewer units than folds cannot be spread over every fold: with ``strict=True`` (classes
  the user or the file names declare) it is a :class:`DataError`; otherwise the caller merges it first.

The folds are returned in nnU-Net's ``splits_final.json`` shape (a list of ``{"train": [...], "val":
[...]}``); :func:`fold_run_splits` turns one fold into the ``{"train", "val", "test"}`` split of that
fold's training run: its held-out fold is the run's ``test`` part (scored out of fold, never used for
checkpoint selection), and an inner validation part is carved from its training folds for early stopping.
"""

from __future__ import annotations

import re
from collections import Counter

import numpy as np

from s2mnet.data.naming import file_stem
from s2mnet.data.types import DatasetIndex
from s2mnet.errors import DataError

#: The share of a fold's training cases that its run validates on (early stopping, best checkpoint).
INNER_VAL_FRACTION = 0.2
#: Name-derived classes are used only when there are at most this many (else names are ids, not classes).
MAX_NAME_CLASSES = 12
_NAME_CLASS = re.compile(r"[\d\s()\[\]_\-.]+")


def name_strata(index: DatasetIndex, exclude: frozenset[str] = frozenset()) -> dict[str, str] | None:
    """``{case id: class}`` from the image file names with digits and separators removed, or ``None``.

    ``benign (3).png`` → ``benign``. Used only when this yields 2 to :data:`MAX_NAME_CLASSES` classes and
    every class has at least two cases (otherwise the names carry no class, e.g. ``ISIC_0024306``).
    Cases in ``exclude`` (a held-out test split) are not counted.
    """
    strata = {}
    for case in index.cases:
        if case.case_id in exclude:
            continue
        label = _NAME_CLASS.sub(" ", file_stem(case.image)).strip().lower()
        strata[case.case_id] = " ".join(label.split())
    counts = Counter(strata.values())
    if not 2 <= len(counts) <= MAX_NAME_CLASSES or min(counts.values()) < 2 or "" in counts:
        return None
    return strata


def make_folds(
    index: DatasetIndex,
    k: int,
    seed: int = 0,
    strata: dict[str, str] | None = None,
    *,
    strict: bool = True,
    stratified_by: str = "",
) -> dict:
    """Split ``index`` into ``k`` stratified, grouped folds (module docstring).

    Args:
        index: the data set.
        k: number of folds, ≥ 2 and at most the number of splitting units (groups or cases).
        seed: shuffles units within each stratum.
        strata: ``{case id: stratum}``; ``None`` → :func:`name_strata`, else unstratified.
        strict: a stratum with fewer than ``k`` units is an error (``True``) rather than spread unevenly.
        stratified_by: how ``strata`` was made, recorded in the result.

    Returns:
        ``{"folds": [{"train": [...], "val": [...]}, ...], "test": [held-out test ids], "k", "seed",
        "stratified_by", "strata": {case id: stratum}, "source"}``; ids sorted within each part.

    Raises:
        DataError: ``k`` < 2, more folds than units, or (``strict``) a stratum smaller than ``k``.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise DataError(f"--folds {k}: cross-validation needs at least 2 folds")
    test = list(index.known_split.get("test", [])) if index.known_split else []
    held_out = frozenset(test)
    if strata is None:
        strata = name_strata(index, exclude=held_out)
        stratified_by = "class in the file names" if strata else "not stratified"
    pool = [case for case in index.cases if case.case_id not in held_out]
    group_of = {case.case_id: getattr(case, "group", None) or case.case_id for case in pool}
    members: dict[str, list[str]] = {}
    for case_id, unit in group_of.items():
        members.setdefault(unit, []).append(case_id)
    if len(members) < k:
        what = "volumes" if any(len(m) > 1 for m in members.values()) else "cases"
        raise DataError(
            f"{index.root}: --folds {k} needs at least {k} {what} to split; there are {len(members)}"
        )
    unit_stratum = {unit: (strata or {}).get(ids[0], "all") for unit, ids in members.items()}
    by_stratum: dict[str, list[str]] = {}
    for unit, stratum in unit_stratum.items():
        by_stratum.setdefault(stratum, []).append(unit)
    if strict:
        small = {name: len(units) for name, units in by_stratum.items() if len(units) < k}
        if small:
            name, count = min(small.items(), key=lambda item: item[1])
            raise DataError(
                f"{index.root}: --folds {k} is more than class {name!r} has cases ({count}); "
                f"use --folds {max(2, count)} or fewer"
            )
    fold_units: list[list[str]] = [[] for _ in range(k)]
    fold_sizes = [0] * k
    rng = np.random.default_rng([seed, 7])
    for stratum in sorted(by_stratum):
        units = sorted(by_stratum[stratum])
        units = [units[i] for i in rng.permutation(len(units))]
        units.sort(key=lambda unit: -len(members[unit]))  # stable: big volumes first, shuffled within size
        in_stratum = [0] * k
        for unit in units:
            fold = min(range(k), key=lambda f: (in_stratum[f], fold_sizes[f], f))
            fold_units[fold].append(unit)
            in_stratum[fold] += len(members[unit])
            fold_sizes[fold] += len(members[unit])
    val_parts = [sorted(i for unit in units for i in members[unit]) for units in fold_units]
    all_ids = sorted(group_of)
    folds = [{"train": [i for i in all_ids if i not in set(val)], "val": val} for val in val_parts]
    source = f"{k}-fold cross-validation (seed {seed}; {stratified_by or 'stratified'})"
    if test:
        source += f"; published test split held out ({len(test)} cases)"
    return {
        "folds": folds,
        "test": sorted(test),
        "k": k,
        "seed": seed,
        "stratified_by": stratified_by or "caller's strata",
        "strata": dict(sorted((strata or {}).items())),
        "source": source,
    }


def fold_run_splits(folds: dict, fold: int, index: DatasetIndex, seed: int = 0) -> dict:
    """The ``{"train", "val", "test"}`` split of fold ``fold``'s training run (module docstring).

    ``test`` is the held-out fold; ``val`` is :data:`INNER_VAL_FRACTION` of the training folds' units
    (at least one), drawn by ``seed`` within each stratum so that it mirrors the data's classes.
    """
    part = folds["folds"][fold]
    strata = folds.get("strata") or {}
    group_of = {case.case_id: getattr(case, "group", None) or case.case_id for case in index.cases}
    units: dict[str, list[str]] = {}
    for case_id in part["train"]:
        units.setdefault(group_of.get(case_id, case_id), []).append(case_id)
    by_stratum: dict[str, list[str]] = {}
    for unit, ids in units.items():
        by_stratum.setdefault(strata.get(ids[0], "all"), []).append(unit)
    rng = np.random.default_rng([seed, fold, 11])
    inner: set[str] = set()
    for stratum in sorted(by_stratum):
        group = sorted(by_stratum[stratum])
        count = round(INNER_VAL_FRACTION * len(group))
        inner.update(group[i] for i in rng.permutation(len(group))[:count])
    if not inner and len(units) > 1:
        ordered = sorted(units)
        inner.add(ordered[int(rng.integers(len(ordered)))])
    train = [i for i in part["train"] if group_of.get(i, i) not in inner]
    val = [i for i in part["train"] if group_of.get(i, i) in inner]
    return {
        "train": train,
        "val": val or list(train),
        "test": list(part["val"]),
        "source": f"fold {fold} of {folds['source']}; val carved from the training folds "
        f"({INNER_VAL_FRACTION:.0%}, seed {seed})",
        "seed": seed,
    }


def mask_strata(
    index: DatasetIndex, k: int, plan: dict, exclude: frozenset[str] = frozenset()
) -> dict[str, str]:
    """``{case id: stratum}`` from the masks, for data whose file names carry no class (module docstring).

    Multi-class and multi-label data: the set of classes (regions) present, as ``"1+3"`` (``"none"`` for
    an empty mask). Binary data: ``"empty"``, ``"small"`` or ``"large"`` foreground, split at the median
    of the non-zero foreground fractions. The cases of one group share the stratum of their union. An
    ordered list of strata (empty < small < large; class sets by size, then name) is then made coarser:
    a stratum with fewer than ``k`` units is merged into its neighbour (the next one, the previous for
    the last; named ``small|large``), so that :func:`make_folds` can spread every stratum over every fold.

    Args:
        index: the data set.
        k: the number of folds.
        plan: the run's plan (its label mode and class count decide how masks are read).
        exclude: case ids left out (a held-out test split).
    """
    from s2mnet.data.labels import read_target

    units: dict[str, list] = {}
    for case in index.cases:
        if case.case_id not in exclude:
            units.setdefault(getattr(case, "group", None) or case.case_id, []).append(case)
    binary = int(plan.get("num_classes", 1)) == 1 and plan.get("label_mode") != "multilabel"
    facts: dict[str, object] = {}
    for unit, cases in units.items():
        foreground, pixels, present = 0, 0, set()
        for case in cases:
            target = np.asarray(read_target(case, plan))
            if target.ndim == 3:  # multi-label regions (C, H, W)
                present.update(int(c) + 1 for c in np.flatnonzero(target.reshape(len(target), -1).any(1)))
            else:
                present.update(int(v) for v in np.unique(target) if v > 0)
            foreground += int(np.count_nonzero(target.reshape(-1, *target.shape[-2:]).any(0)))
            pixels += int(np.prod(target.shape[-2:]))
        facts[unit] = foreground / max(pixels, 1) if binary else tuple(sorted(present))
    if binary:
        positive = [f for f in facts.values() if f > 0]
        median = float(np.median(positive)) if positive else 0.0
        names = {u: "empty" if f == 0 else "small" if f <= median else "large" for u, f in facts.items()}
        order = ["empty", "small", "large"]
    else:
        names = {u: "+".join(map(str, f)) or "none" for u, f in facts.items()}
        order = sorted(set(names.values()), key=lambda n: (n != "none", n.count("+"), n))
    bins = [[name, [u for u in names if names[u] == name]] for name in order]
    bins = [b for b in bins if b[1]]
    while len(bins) > 1 and min(len(b[1]) for b in bins) < k:
        small = min(range(len(bins)), key=lambda i: (len(bins[i][1]), i))
        into = small + 1 if small + 1 < len(bins) else small - 1
        low, high = sorted((small, into))
        bins[low] = [f"{bins[low][0]}|{bins[high][0]}", bins[low][1] + bins[high][1]]
        del bins[high]
    return {case.case_id: name for name, members in bins for unit in members for case in units[unit]}


def folds_from_list(data: object, source: str) -> list[dict[str, list[str]]]:
    """Check nnU-Net's ``splits_final.json`` shape (a list of ``{"train": [...], "val": [...]}``).

    Raises:
        DataError: another structure, naming ``source``.
    """
    ok = isinstance(data, list) and len(data) >= 1
    for fold in data if ok else []:
        ok = (
            ok
            and isinstance(fold, dict)
            and all(
                isinstance(fold.get(part), list) and all(isinstance(x, str) for x in fold[part])
                for part in ("train", "val")
            )
        )
    if not ok:
        raise DataError(f'{source}: expected a list of {{"train": [...], "val": [...]}} folds')
    return [{"train": list(fold["train"]), "val": list(fold["val"])} for fold in data]  # type: ignore[union-attr]
