"""Pre-declared studies of ``s2m bench ablation --study DIR`` (docs/bench.md, "Declared studies").

A study folder starts with ``study.json``, committed before its first run. It declares the data (as given
relative to the repository root), the ``arms``, the replicates (``seeds``, or ``folds`` with one
initialisation seed per fold in ``fold_init_seeds``), the whole training ``protocol`` (device, threads,
plan overrides, step cap and floor, validation interval, patience, plateau margin, learning rate and the
cosine schedule with its warm-up), the ``primary_metric``, the ``equivalence_margin``, the paper's effect
sizes (``paper_effects``), the ``reference`` arm and the A/A arm (``aa_arm``).

* :func:`load_study` reads and checks a declaration; :func:`declared_runs` lists its (arm, replicate)
  runs, of which ``--arms``/``--seeds``/``--folds`` may select a subset, never add to it;
  :func:`s2mnet.bench.ablation.declared.run_study` trains those that ``results.jsonl`` lacks.
* One schedule for every arm: each arm trains ``max_steps`` with the study's cosine schedule and warm-up.
  An arm at equal compute is a separately named arm (``monai_unet_dicece_3x``) whose scale the study
  declares in ``arm_scale`` (its cap, floor, schedule and warm-up all scale); it is reported beside the
  main comparison. Studies declared after the fact (``declared`` starts with ``"after the fact"``, the v2
  folders) describe what was run and may scale any arm.
* The A/A arm at pair seed ``s`` trains with the initialisation seed ``s + aa_seed_offset`` on the data
  order of seed ``s`` (``data_seed``), the same data order as every arm at ``s``; in a cross-validation
  study every arm of fold ``k`` uses ``fold_init_seeds[k]`` for both, and the A/A arm the offset one for
  its initialisation.
* Cross-validation: the folds are :func:`s2mnet.data.folds.make_folds` (``folds``, ``fold_seed``) and each
  fold run's train/val/test split is :func:`s2mnet.data.folds.fold_run_splits`; they are written once to
  ``folds.json`` and ``splits_fold<k>.json`` and are the same for every arm.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from s2mnet.bench.ablation.arms import AA_ARM, AA_SEED_OFFSET, ARMS, REFERENCE, resolve_model_args
from s2mnet.errors import S2MError

STUDY = "study.json"
FOLDS = "folds.json"
#: Protocol keys every study declares (``min_steps``, ``lr`` and ``warmup_epochs`` may be ``null``).
PROTOCOL_KEYS = (
    "device",
    "threads",
    "plan",
    "max_steps",
    "min_steps",
    "val_every",
    "patience",
    "min_delta",
    "lr",
    "warmup_epochs",
    "amp",
)


def load_study(folder: str | Path) -> dict[str, Any]:
    """The checked declaration ``folder/study.json``.

    Raises:
        S2MError: no ``study.json``, an unknown arm, no replicates, a missing protocol key, or a scaled
            arm (``arm_scale``) that is not named for its scale in a study declared before its runs.
    """
    path = Path(folder) / STUDY
    if not path.is_file():
        raise S2MError(f"{path}: no study declaration (a study folder starts with study.json)")
    study = json.loads(path.read_text(encoding="utf-8"))
    unknown = [name for name in study.get("arms", []) if name not in ARMS]
    if not study.get("arms") or unknown:
        raise S2MError(f"{path}: arms {unknown or '[]'} are not arms of this version")
    if bool(study.get("seeds")) == bool(study.get("folds")):
        raise S2MError(f"{path}: declare either 'seeds' (a list) or 'folds' (an int), not both or neither")
    if study.get("folds") and len(study.get("fold_init_seeds") or []) != int(study["folds"]):
        raise S2MError(f"{path}: 'fold_init_seeds' needs one seed per fold ({study['folds']})")
    missing = [key for key in PROTOCOL_KEYS if key not in study.get("protocol", {})]
    if missing:
        raise S2MError(f"{path}: the protocol does not declare {missing}")
    if not after_the_fact(study):
        for name, scale in study.get("arm_scale", {}).items():
            if not name.endswith(f"_{scale}x"):
                raise S2MError(
                    f"{path}: arm {name!r} runs at {scale}x the schedule; an arm at another schedule is a "
                    f"separately named arm (e.g. {name}_{scale}x)"
                )
    study.setdefault("reference", REFERENCE)
    study.setdefault("aa_arm", AA_ARM)
    study.setdefault("aa_seed_offset", AA_SEED_OFFSET)
    return study


def after_the_fact(study: dict[str, Any]) -> bool:
    """Whether the study was declared after its runs (the v2 folders), not before."""
    return str(study.get("declared", "")).startswith("after the fact")


def is_cv(study: dict[str, Any]) -> bool:
    """Whether the replicate is a cross-validation fold (else a seed)."""
    return bool(study.get("folds"))


def arm_replicates(study: dict[str, Any], name: str) -> list[int]:
    """The pair keys (seeds, or fold numbers) declared for arm ``name``."""
    if is_cv(study):
        return list(range(int(study["folds"])))
    return list(study.get("arm_seeds", {}).get(name, study["seeds"]))


def declared_runs(
    study: dict[str, Any],
    arms: list[str] | None = None,
    replicates: list[int] | None = None,
) -> list[tuple[str, int]]:
    """The declared (arm, seed or fold) runs, replicate by replicate; a subset with ``arms``/``replicates``.

    Raises:
        S2MError: a selected arm or replicate that the study does not declare.
    """
    what = "--folds" if is_cv(study) else "--seeds"
    extra_arms = sorted(set(arms or []) - set(study["arms"]))
    declared = {r for name in study["arms"] for r in arm_replicates(study, name)}
    extra = sorted(set(replicates or []) - declared)
    if extra_arms or extra:
        raise S2MError(
            f"{'--arms ' + ','.join(extra_arms) if extra_arms else what + ' ' + ','.join(map(str, extra))}: "
            "not declared in study.json; a study runs only what it declares (declare a new study instead)"
        )
    chosen = [name for name in study["arms"] if arms is None or name in arms]
    order = sorted(
        declared,
        key=lambda r: min(
            arm_replicates(study, n).index(r) for n in study["arms"] if r in arm_replicates(study, n)
        ),
    )
    return [
        (name, r)
        for r in order
        if replicates is None or r in replicates
        for name in chosen
        if r in arm_replicates(study, name)
    ]


def seeds_of(study: dict[str, Any], name: str, replicate: int) -> dict[str, int]:
    """``{"seed" (initialisation), "data_seed" (data order), "pair_seed"}`` of one declared run."""
    pair = int(study["fold_init_seeds"][replicate]) if is_cv(study) else int(replicate)
    init = pair + int(study["aa_seed_offset"]) if name == study["aa_arm"] else pair
    return {"seed": init, "data_seed": pair, "pair_seed": pair}


def budget_words(study: dict[str, Any]) -> str:
    """The budget every verdict states, e.g. ``"at this budget (288 steps of 128² patches)"``."""
    return f"at this budget ({study.get('budget') or str(study['protocol']['max_steps']) + ' steps'})"


def study_specs(
    study: dict[str, Any], folder: Path, runs: list[tuple[str, int]], extra: dict[str, Any]
) -> list[dict[str, Any]]:
    """Job specs (:func:`s2mnet.bench.ablation.runner.run_job`) of ``runs`` under the study's protocol.

    Args:
        study: the declaration.
        folder: the study folder, as given (relative paths stay relative).
        runs: (arm, replicate) pairs to train.
        extra: ``workers``, ``drop_weights``, ``command`` (they do not change what a run computes).
    """
    from s2mnet.bench.ablation.convergence import epochs_for_steps
    from s2mnet.planning.recipe import default_lr

    protocol = study["protocol"]
    plan = dict(protocol["plan"])
    samples, batch = int(plan["samples_per_epoch"]), int(plan["batch_size"])
    cap = epochs_for_steps(int(protocol["max_steps"]), samples, batch)
    floor = (
        None
        if protocol["min_steps"] is None
        else epochs_for_steps(int(protocol["min_steps"]), samples, batch)
    )
    lr = protocol["lr"] if protocol["lr"] is not None else default_lr(cap)
    specs = []
    for name, replicate in runs:
        scale = int(study.get("arm_scale", {}).get(name, 1))
        fold = replicate if is_cv(study) else None
        tag = f"{name}_f{fold}" if fold is not None else f"{name}_s{replicate}"
        warmup = protocol["warmup_epochs"]
        specs.append(
            {
                "variant": name,
                **seeds_of(study, name, replicate),
                "fold": fold,
                "data": str(study["data"]),
                "run_dir": str(folder / "runs" / tag),
                "splits": str(folder / (f"splits_fold{fold}.json" if fold is not None else "splits.json")),
                "plan": {**plan, "epochs": cap * scale},
                "model_args": resolve_model_args(name, plan.get("patch_size") or plan.get("size")),
                "lr": lr,
                "warmup_epochs": None if warmup is None else warmup * scale,
                "min_epochs": None if floor is None else floor * scale,
                "patience": int(protocol["patience"]),
                "val_every": int(protocol["val_every"]),
                "min_delta": float(protocol["min_delta"]),
                "background_val_dice": _background(study, fold, "val"),
                "device": protocol["device"],
                "amp": protocol["amp"],
                "time_limit_s": None,
                "study": study.get("name"),
                **extra,
            }
        )
    return specs


def _background(study: dict[str, Any], fold: int | None, part: str) -> float:
    """Mean Dice of the all-background prediction on a split part (from the study's ``background``)."""
    table = study.get("background", {})
    value = table.get(f"fold{fold}", {}).get(part) if fold is not None else table.get(part)
    return float(value or 0.0)


def prepare_study(study: dict[str, Any], folder: Path) -> None:
    """Write the study's split files once (``splits.json``, or ``folds.json`` and ``splits_fold<k>.json``)
    and the all-background Dice of every split part into ``study["background"]`` (kept in memory)."""
    from s2mnet.data.discover import discover
    from s2mnet.data.folds import fold_run_splits, make_folds
    from s2mnet.data.splits import load_splits, make_splits, save_splits

    index = discover(study["data"])
    empty = empty_masks(index)
    background: dict[str, Any] = {}
    if is_cv(study):
        folds_path = folder / FOLDS
        if not folds_path.is_file():
            save_splits(make_folds(index, int(study["folds"]), int(study.get("fold_seed", 0))), folds_path)
        folds = json.loads(folds_path.read_text(encoding="utf-8"))
        for k in range(int(study["folds"])):
            path = folder / f"splits_fold{k}.json"
            if not path.is_file():
                save_splits(fold_run_splits(folds, k, index, int(study.get("fold_seed", 0))), path)
            split = json.loads(path.read_text(encoding="utf-8"))
            background[f"fold{k}"] = {p: _empty_share(split[p], empty) for p in ("val", "test")}
    else:
        path = folder / "splits.json"
        if not path.is_file():
            source = study.get("splits")
            split = (
                load_splits(source, index)
                if source
                else make_splits(index, seed=int(study.get("split_seed", 0)))
            )
            save_splits(split, path)
        split = json.loads(path.read_text(encoding="utf-8"))
        background = {p: _empty_share(split[p], empty) for p in ("val", "test")}
    study["background"] = background


def run_key(study: dict[str, Any], record: dict[str, Any]) -> int:
    """The pair key of a record: its fold in a cross-validation study, else its pair seed."""
    if is_cv(study):
        return int(record["fold"])
    return int(record.get("pair_seed", record["seed"]))


def empty_masks(index: Any) -> list[str]:
    """Ids of the cases whose mask holds no foreground (an all-background prediction scores Dice 1)."""
    import numpy as np

    from s2mnet.data.io import read_case_mask

    return sorted(c.case_id for c in index.cases if c.masks and not np.any(read_case_mask(c)))


def _empty_share(ids: list[str], empty: list[str]) -> float:
    return sum(i in set(empty) for i in ids) / len(ids) if ids else 0.0
