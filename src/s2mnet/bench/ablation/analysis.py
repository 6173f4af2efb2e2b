"""The primary analysis of a declared study (docs/bench.md, "Primary analysis").

* Every run of every declared (arm, seed or fold) enters; none is dropped. A *failed* run
  (:func:`s2mnet.bench.ablation.convergence.failed`) keeps its score and is counted. Runs at seeds the
  study does not declare (added after the flags were known) enter only the sensitivity analysis
  (:func:`s2mnet.bench.ablation.report.summarise_results`, converged runs only), with the convergence flag
  recomputed under the current rule (:func:`reflag`).
* For each arm against the reference, paired by seed (the A/A arm by the pair seed whose data order it
  shares) or by fold: per pair, the mean of each run's test Dice over the cases both have, and its
  difference; Δ = the mean over pairs.
* CI: the crossed bootstrap (:func:`s2mnet.bench.stats.crossed_bootstrap_ci`: seeds and one shared
  resample of the test images) when the pairs share their test images; with folds (disjoint test images)
  the nested one (folds, then each fold's own images). Beside it the paired t interval over pairs.
* Tests: paired t over pairs, Holm over the arms with ≥ 3 pairs; TOST at ±``equivalence_margin``, Holm;
  for each arm with an effect in ``paper_effects``, the t-test of "Δ equals the paper's Δ", Holm over
  those arms. "Ruled out at this budget" only where that Holm value is below 0.05.
* Lesion figures (a study with ``empty_masks``, e.g. BUSI): Dice over lesion images, lesions found
  (Dice > :data:`FOUND_DICE` on a lesion image), false positives on normal images (any foreground
  predicted on an empty mask: Dice < 1 there), and the same for the all-empty prediction.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from s2mnet.bench.ablation.convergence import plateaued
from s2mnet.bench.ablation.study import arm_replicates, budget_words, is_cv, run_key
from s2mnet.bench.stats import (
    crossed_bootstrap_ci,
    hierarchical_bootstrap_ci,
    holm,
    mean_sd,
    paired_run_test,
    paper_delta_test,
    t_interval,
    tost_paired,
    verdict,
)
from s2mnet.inference.strata import FOUND_DICE

MIN_PAIRS = 3
BOOTSTRAP = 10_000


def reflag(records: list[dict[str, Any]], study: dict[str, Any]) -> list[dict[str, Any]]:
    """Copies of ``records`` with ``converged`` recomputed from the curve under the current rule (the
    stored flag kept as ``converged_recorded``) and ``failed`` added where a record lacks it."""
    from s2mnet.bench.ablation.convergence import failed

    protocol = study["protocol"]
    out = []
    for record in records:
        values = [float(d) for _, d in record.get("curve") or []]
        background = float(record.get("background_val_dice", _study_background(study, record)))
        copy = {**record, "converged_recorded": record.get("converged")}
        copy["converged"] = plateaued(
            values, int(protocol["patience"]), float(protocol["min_delta"]), background
        )
        copy.setdefault("failed", failed(values, background, float(protocol["min_delta"])))
        out.append(copy)
    return out


def _study_background(study: dict[str, Any], record: dict[str, Any]) -> float:
    table = study.get("background") or {}
    if record.get("fold") is not None:
        return float(table.get(f"fold{record['fold']}", {}).get("val", 0.0))
    return float(table.get("val", 0.0))


def declared_records(records: list[dict[str, Any]], study: dict[str, Any]) -> dict[str, dict[int, dict]]:
    """``{arm: {pair key: record}}`` of the declared runs present (undeclared arms and seeds left out)."""
    table: dict[str, dict[int, dict[str, Any]]] = {}
    for record in records:
        name = record["variant"]
        if name not in study["arms"]:
            continue
        key = run_key(study, record)
        if key in arm_replicates(study, name):
            table.setdefault(name, {})[key] = record
    return table


def _pair(run: dict[str, Any], ref: dict[str, Any]) -> tuple[float, float, dict[str, float]]:
    shared = sorted(set(run.get("cases") or {}) & set(ref.get("cases") or {}))
    if not shared:
        return float(run["dice"]), float(ref["dice"]), {}
    a = {c: float(run["cases"][c]["dice"]) for c in shared}
    b = {c: float(ref["cases"][c]["dice"]) for c in shared}
    return (
        float(np.mean(list(a.values()))),
        float(np.mean(list(b.values()))),
        {c: a[c] - b[c] for c in shared},
    )


def compare_arm(
    runs: dict[int, dict[str, Any]], refs: dict[int, dict[str, Any]], study: dict[str, Any], name: str
) -> dict[str, Any]:
    """Statistics of one arm against the reference over every declared pair (before Holm)."""
    keys = sorted(set(runs) & set(refs))
    pairs = [_pair(runs[k], refs[k]) for k in keys]
    deltas = [a - b for a, b, _ in pairs]
    test = paired_run_test([a for a, _, _ in pairs], [b for _, b, _ in pairs])
    by_case = [d for _, _, d in pairs]
    if is_cv(study):
        ci = hierarchical_bootstrap_ci(
            {k: list(d.values()) for k, d in zip(keys, by_case, strict=True)}, BOOTSTRAP
        )
        kind = "nested (folds, then their own test images)"
    else:
        common = sorted(set.intersection(*(set(d) for d in by_case))) if by_case else []
        ci = crossed_bootstrap_ci([[d[c] for c in common] for d in by_case] if common else [], BOOTSTRAP)
        kind = "crossed (seeds × one shared resample of the test images)"
    effect = (study.get("paper_effects") or {}).get(name)
    return {
        "pairs": keys,
        "n_pairs": len(keys),
        "run_deltas": deltas,
        "delta": test["mean_diff"],
        "ci": [ci["low"], ci["high"]],
        "bootstrap": kind,
        "t_ci": test["ci"],
        "run_test": test,
        "tost": tost_paired(deltas, margin=float(study.get("equivalence_margin", 0.01))),
        "paper": None if effect is None else paper_delta_test(deltas, float(effect)),
        "failed": sum(bool(runs[k].get("failed")) for k in runs),
        "runs": len(runs),
    }


def primary_analysis(records: list[dict[str, Any]], study: dict[str, Any]) -> dict[str, Any]:
    """The primary analysis of a study's records (module docstring)."""
    records = reflag(records, study)
    table = declared_records(records, study)
    reference = study["reference"]
    refs = table.get(reference, {})
    rows = []
    for name in study["arms"]:
        runs = table.get(name, {})
        dice = [float(r["dice"]) for r in runs.values()]
        mean, sd = mean_sd(dice)
        row: dict[str, Any] = {
            "variant": name,
            "declared": len(arm_replicates(study, name)),
            "runs": len(runs),
            "failed": sum(bool(r.get("failed")) for r in runs.values()),
            "converged": sum(bool(r.get("converged")) for r in runs.values()),
            "dice_mean": mean,
            "dice_sd": sd,
            "scale": int((study.get("arm_scale") or {}).get(name, 1)),
        }
        if study.get("empty_masks"):
            row["lesion"] = lesion_figures(list(runs.values()), study["empty_masks"])
        if name != reference and refs:
            row["vs_reference"] = compare_arm(runs, refs, study, name)
        rows.append(row)
    _adjust([r["vs_reference"] for r in rows if "vs_reference" in r], study)
    return {
        "study": study.get("name"),
        "declared": study.get("declared"),
        "reference": reference,
        "margin": float(study.get("equivalence_margin", 0.01)),
        "budget": budget_words(study),
        "variants": rows,
        "empty_prediction": _empty_prediction(records, study),
    }


def _adjust(compared: list[dict[str, Any]], study: dict[str, Any]) -> None:
    """Holm over the testable arms; verdicts with the budget in their words."""
    testable = [c if c["n_pairs"] >= MIN_PAIRS else None for c in compared]
    p_holm = holm([c["run_test"]["p"] if c else None for c in testable])
    tost_holm = holm([c["tost"]["p"] if c else None for c in testable])
    paper_holm = holm([c["paper"]["p"] if c and c["paper"] else None for c in testable])
    arms = sum(c is not None for c in testable)
    words = budget_words(study)
    for c, p, q, r in zip(compared, p_holm, tost_holm, paper_holm, strict=True):
        c.update(p_holm=p, tost_p_holm=q, paper_p_holm=r)
        c["simultaneous_t_ci"] = (
            t_interval(c["run_deltas"], 1.0 - 0.05 / arms) if c["n_pairs"] >= MIN_PAIRS else [None, None]
        )
        hull = _hull(c["ci"], c["t_ci"])
        base = verdict(p, hull, q, c["n_pairs"], min_pairs=MIN_PAIRS)
        c["verdict"] = base if base == "not testable" else f"{base} {words}"
        if c["paper"] is not None and c["n_pairs"] >= MIN_PAIRS:
            ruled_out = r is not None and r < 0.05
            c["paper_verdict"] = (
                f"paper's Δ ruled out {words}" if ruled_out else f"paper's Δ not ruled out {words}"
            )


def _hull(*intervals: list[float | None]) -> tuple[float | None, float | None]:
    if any(i[0] is None or i[1] is None for i in intervals):
        return None, None
    return min(i[0] for i in intervals), max(i[1] for i in intervals)


def lesion_figures(runs: list[dict[str, Any]], empty: list[str]) -> dict[str, Any]:
    """Mean over runs of: Dice over lesion images, share of lesions found, share of normal images with a
    false positive; and the per-run values (keyed like the runs' pair keys by position)."""
    empty_set = set(empty)
    per_run = []
    for run in runs:
        cases = {c: float(v["dice"]) for c, v in (run.get("cases") or {}).items()}
        lesions = [d for c, d in cases.items() if c not in empty_set]
        normals = [d for c, d in cases.items() if c in empty_set]
        per_run.append(
            {
                "lesion_dice": float(np.mean(lesions)) if lesions else math.nan,
                "found": float(np.mean([d > FOUND_DICE for d in lesions])) if lesions else math.nan,
                "false_positive": float(np.mean([d < 1.0 for d in normals])) if normals else math.nan,
                "lesions": len(lesions),
                "normals": len(normals),
            }
        )
    keys = ("lesion_dice", "found", "false_positive")
    return {k: mean_sd([r[k] for r in per_run])[0] for k in keys} | {"per_run": per_run}


def _empty_prediction(records: list[dict[str, Any]], study: dict[str, Any]) -> dict[str, Any] | None:
    """The all-empty prediction's figures on the test images the reference was scored on."""
    empty = set(study.get("empty_masks") or [])
    cases = sorted({c for r in records if r["variant"] == study["reference"] for c in (r.get("cases") or {})})
    if not cases:
        return None
    return {
        "dice": float(np.mean([c in empty for c in cases])),
        "lesion_dice": 0.0,
        "found": 0.0,
        "false_positive": 0.0,
        "cases": len(cases),
        "normals": sum(c in empty for c in cases),
    }


def lesion_deltas(
    primary: dict[str, Any], records: list[dict[str, Any]], study: dict[str, Any]
) -> list[dict]:
    """Per arm, the differences against the reference, paired by seed or fold, of the lesion-image Dice
    (``delta``, ``t_ci``), the share of lesions found (``found_delta``, ``found_t_ci``) and the share of
    normal images with a false positive (``false_positive_delta``, ``false_positive_t_ci``).

    Descriptive figures beside the primary analysis (no Holm, no verdict): they say where a difference
    in the Dice over all images comes from.
    """
    table = declared_records(reflag(records, study), study)
    refs = table.get(study["reference"], {})
    out = []
    for row in primary["variants"]:
        runs = table.get(row["variant"], {})
        keys = sorted(set(runs) & set(refs))
        if row["variant"] == study["reference"] or not keys:
            continue
        entry: dict[str, Any] = {"variant": row["variant"], "n": len(keys)}
        arm = [lesion_figures([runs[k]], study["empty_masks"]) for k in keys]
        ref = [lesion_figures([refs[k]], study["empty_masks"]) for k in keys]
        figures = (("lesion_dice", ""), ("found", "found_"), ("false_positive", "false_positive_"))
        for figure, prefix in figures:
            a, b = [run[figure] for run in arm], [run[figure] for run in ref]
            test = paired_run_test(a, b)
            entry[f"{prefix}delta"], entry[f"{prefix}t_ci"] = test["mean_diff"], test["ci"]
        out.append(entry)
    return out
