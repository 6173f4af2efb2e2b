"""The report of ``s2m bench ablation``: run-level statistics against ``paper``, learning curves, plots.

Rebuilt from all of ``results.jsonl`` after every run and by ``--report-only``
(``ablation.{md,json,png}``, ``curves.png``). Only converged runs enter the statistics (a record without a
``converged`` key, from an older version, counts as not converged). For each arm against ``paper``:

* pairs: the arm's converged run of seed s and ``paper``'s converged run of seed s (``paper_aa``: seed
  s + offset ↔ s); per pair, the per-case Dice differences over the test cases both runs have, and the
  difference of the two runs' mean Dice over those cases (the run is the unit);
* Δ: mean over pairs of the run-level difference, with the 95 % CI of :func:`hierarchical_bootstrap_ci`
  (seeds, then cases within a seed; 10,000 replicates, generator seed 0) and the paired t interval over
  the seeds (n − 1 degrees of freedom; with 3–5 seeds the bootstrap is narrower by construction), and
  the same t interval at level 1 − 0.05/m for the m testable arms (Bonferroni-simultaneous 95 %: what
  effect sizes the data rule out, e.g. the paper's, even where no verdict is reached);
* paired t-test over the run-level differences (primary) and Wilcoxon (≥ 5 pairs), Holm-adjusted over
  the testable arms (≥ 3 pairs); TOST at ±``margin`` (1 Dice point), Holm-adjusted the same way;
* verdict (:func:`s2mnet.bench.stats.verdict`): different / equivalent / inconclusive / not testable;
* secondary, labelled, never a verdict: the old case-level paired t-test (per-case Dice averaged over the
  pairs' seeds, cases as the unit), to show what it says, e.g. about the A/A control.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from s2mnet.bench.ablation.arms import AA_ARM, ARMS, REFERENCE, reference_seed
from s2mnet.bench.ablation.records import CONFIG, RESULTS, read_results
from s2mnet.bench.stats import (
    hierarchical_bootstrap_ci,
    holm,
    mean_sd,
    paired_run_test,
    paired_tests,
    t_interval,
    tost_paired,
    verdict,
)
from s2mnet.errors import S2MError

MARGIN = 0.01
MIN_PAIRS = 3
BOOTSTRAP = 10_000


def _converged(record: dict[str, Any]) -> bool:
    return record.get("converged") is True


def _case_level_by_pair(run: dict[str, Any], ref: dict[str, Any]) -> dict[str, Any]:
    """The old case-level paired t-test on one pair of runs (test images as the unit)."""
    shared = sorted(set(run.get("cases") or {}) & set(ref.get("cases") or {}))
    test = paired_tests(
        [float(run["cases"][c]["dice"]) for c in shared], [float(ref["cases"][c]["dice"]) for c in shared]
    )
    return {"seeds": [int(run["seed"]), int(ref["seed"])], "delta": test["mean_diff"], "t_p": test["t_p"]}


def _pair(run: dict[str, Any], ref: dict[str, Any]) -> tuple[float, float, list[float]]:
    """Run-level means over the shared cases and the per-case differences (run − ref)."""
    shared = sorted(set(run.get("cases") or {}) & set(ref.get("cases") or {}))
    if not shared:
        return float(run["dice"]), float(ref["dice"]), [float(run["dice"]) - float(ref["dice"])]
    a = [float(run["cases"][c]["dice"]) for c in shared]
    b = [float(ref["cases"][c]["dice"]) for c in shared]
    return float(np.mean(a)), float(np.mean(b)), [x - y for x, y in zip(a, b, strict=True)]


def compare(runs: list[dict[str, Any]], refs: dict[int, dict[str, Any]], name: str) -> dict[str, Any]:
    """Statistics of one arm's converged runs against the reference's (before the Holm adjustment)."""
    pairs = []
    for run in sorted(runs, key=lambda r: int(r["seed"])):
        ref = refs.get(int(run.get("pair_seed", reference_seed(name, int(run["seed"])))))
        if ref is not None and _converged(run) and _converged(ref):
            pairs.append((run, ref))
    means = [_pair(run, ref) for run, ref in pairs]
    deltas = {int(run["seed"]): m[2] for (run, _), m in zip(pairs, means, strict=True)}
    test = paired_run_test([m[0] for m in means], [m[1] for m in means])
    ci = hierarchical_bootstrap_ci(deltas, n=BOOTSTRAP, seed=0)
    tost = tost_paired([m[0] - m[1] for m in means], margin=MARGIN)
    by_case: dict[str, Any] = {"n": 0, "t_p": None}
    if pairs:
        shared = sorted(
            set.intersection(*(set(r.get("cases") or {}) & set(f.get("cases") or {}) for r, f in pairs))
        )
        if shared:
            by_case = paired_tests(
                [float(np.mean([r["cases"][c]["dice"] for r, _ in pairs])) for c in shared],
                [float(np.mean([f["cases"][c]["dice"] for _, f in pairs])) for c in shared],
            )
    return {
        "run_deltas": [m[0] - m[1] for m in means],
        "pairs": [[int(r["seed"]), int(f["seed"])] for r, f in pairs],
        "n_pairs": len(pairs),
        "delta": test["mean_diff"],
        "ci": [ci["low"], ci["high"]],
        "t_ci": test["ci"],
        "run_test": test,
        "tost": tost,
        "by_case": by_case,
        "by_case_per_pair": [_case_level_by_pair(run, ref) for run, ref in pairs],
    }


def _mean_curve(records: list[dict[str, Any]]) -> list[list[float]]:
    """``[[step, mean val Dice, runs], ...]`` on the union of the runs' validation steps; a run that
    stopped keeps its last value (it had plateaued), a run counts from its first validation on."""
    curves = [sorted((int(s), float(d)) for s, d in r.get("curve") or []) for r in records]
    curves = [c for c in curves if c]
    steps = sorted({s for c in curves for s, _ in c})
    mean_curve = []
    for step in steps:
        values = [next(d for s, d in reversed(c) if s <= step) for c in curves if c[0][0] <= step]
        mean_curve.append([step, float(np.mean(values)), len(values)])
    return mean_curve


def summarise_results(records: list[dict[str, Any]], reference: str = REFERENCE) -> dict[str, Any]:
    """Per-arm summary and the comparisons against ``reference`` (see the module docstring)."""
    by_arm: dict[str, dict[int, dict[str, Any]]] = {}
    for record in records:
        by_arm.setdefault(record["variant"], {})[int(record["seed"])] = record
    order = [a for a in ARMS if a in by_arm] + sorted(set(by_arm) - set(ARMS))
    refs = by_arm.get(reference, {})
    rows = []
    for name in order:
        runs = list(by_arm[name].values())
        good = [r for r in runs if _converged(r)]
        dice_mean, dice_sd = mean_sd([r["dice"] for r in good])
        hd_mean, hd_sd = mean_sd([r["hd95"] for r in good if r.get("hd95") is not None])
        row: dict[str, Any] = {
            "variant": name,
            "description": ARMS.describe().get(name, "(not an arm of this version)"),
            "seeds": sorted(by_arm[name]),
            "runs": len(runs),
            "converged": len(good),
            "dice_mean": dice_mean,
            "dice_sd": dice_sd,
            "dice_all_mean": mean_sd([r["dice"] for r in runs])[0],
            "hd95_mean": hd_mean,
            "hd95_sd": hd_sd,
            "steps_mean": mean_sd([r["steps"] for r in runs if r.get("steps") is not None])[0],
            "wall_s": sum(r.get("wall_s", 0.0) for r in runs),
            "mean_curve": _mean_curve(runs),
        }
        if name != reference and refs:
            row["vs_reference"] = compare(runs, refs, name)
        rows.append(row)
    compared = [r["vs_reference"] for r in rows if "vs_reference" in r]
    testable = [c if c["n_pairs"] >= MIN_PAIRS else None for c in compared]
    p_holm = holm([c["run_test"]["p"] if c else None for c in testable])
    tost_holm = holm([c["tost"]["p"] if c else None for c in testable])
    arms_tested = sum(c is not None for c in testable)
    for comparison, p, q in zip(compared, p_holm, tost_holm, strict=True):
        comparison["p_holm"], comparison["tost_p_holm"] = p, q
        comparison["simultaneous_t_ci"] = (
            t_interval(comparison["run_deltas"], 1.0 - 0.05 / arms_tested)
            if comparison["n_pairs"] >= MIN_PAIRS
            else [None, None]
        )
        ci = _widest(comparison["ci"], comparison["t_ci"])
        comparison["verdict"] = verdict(p, ci, q, comparison["n_pairs"], min_pairs=MIN_PAIRS)
    return {
        "reference": reference,
        "margin": MARGIN,
        "testable": arms_tested,
        "variants": rows,
    }


def write_report(out: Path, command: Sequence[str] | None = None) -> dict[str, Any]:
    """Rebuild ``ablation.{json,md,png}`` and ``curves.png`` from all of ``results.jsonl``."""
    from s2mnet.bench.ablation.analysis import lesion_deltas, primary_analysis, reflag
    from s2mnet.bench.ablation.study import STUDY, load_study
    from s2mnet.io_utils import atomic_write_json, atomic_write_text

    out = Path(out)
    records = read_results(out)
    if not records:
        raise S2MError(f"{out / RESULTS}: no results yet")
    study = load_study(out) if (out / STUDY).is_file() else None
    summary = summarise_results(reflag(records, study) if study else records)
    if study:
        summary["primary"] = primary_analysis(records, study)
        if study.get("empty_masks"):
            summary["lesion_deltas"] = lesion_deltas(summary["primary"], records, study)
    summary.update(
        command=list(command or sys.argv),
        run_commands=_distinct(r.get("command") for r in records),
        machines=_distinct(r.get("machine") for r in records),
        total_run_wall_s=round(sum(r.get("wall_s", 0.0) for r in records), 1),
        budget=_budget(out, study),
    )
    atomic_write_json(out / "ablation.json", summary)
    atomic_write_text(out / "ablation.md", ablation_markdown(summary, study))
    plot_dice(summary, records, out / "ablation.png")
    plot_curves(summary, out / "curves.png")
    return summary


def _budget(out: Path, study: dict[str, Any] | None) -> dict[str, Any] | None:
    """What every run was allowed: a declared study's budget and protocol, else the v2 runner's config."""
    if study:
        return {"budget": study.get("budget"), **study["protocol"]}
    if (out / CONFIG).is_file():
        return json.loads((out / CONFIG).read_text(encoding="utf-8"))
    return None


def _widest(*intervals: Sequence[float | None]) -> tuple[float | None, float | None]:
    """The hull of the intervals: it excludes 0 only if each of them does (on the same side)."""
    lows = [i[0] for i in intervals if i[0] is not None]
    highs = [i[1] for i in intervals if i[1] is not None]
    if len(lows) < len(intervals) or len(highs) < len(intervals):
        return None, None
    return min(lows), max(highs)


def _distinct(values: Any) -> list[Any]:
    """The distinct non-empty values, in first-seen order (JSON-comparable)."""
    seen: dict[str, Any] = {}
    for value in values:
        if value:
            seen.setdefault(json.dumps(value, sort_keys=True), value)
    return list(seen.values())


def _num(value: float | None, digits: int = 4) -> str:
    return "–" if value is None or value != value else f"{value:.{digits}f}"


def _p(value: float | None) -> str:
    return "–" if value is None else f"{value:.3g}"


def _points(value: float | None) -> str:
    return "–" if value is None or value != value else f"{100 * value:+.2f}"


def _row(row: dict[str, Any]) -> str:
    cells = [
        row["variant"],
        f"{row['converged']}/{row['runs']}",
        f"{_num(row['dice_mean'])} ± {_num(row['dice_sd'])}",
    ]
    c = row.get("vs_reference")
    if c is None:
        cells += ["–"] * 8 + ["reference" if row["variant"] == REFERENCE else "–"]
    else:
        test, tost = c["run_test"], c["tost"]
        cells += [
            f"{_points(c['delta'])} [{_points(c['ci'][0])}, {_points(c['ci'][1])}]",
            f"[{_points(c['t_ci'][0])}, {_points(c['t_ci'][1])}]",
            f"[{_points(c['simultaneous_t_ci'][0])}, {_points(c['simultaneous_t_ci'][1])}]",
            str(c["n_pairs"]),
            f"{_p(test['p'])} ({_p(c['p_holm'])})",
            _p(test["wilcoxon_p"]),
            f"{_p(tost['p'])} ({_p(c['tost_p_holm'])})",
            _p(c["by_case"].get("t_p")),
            f"**{c['verdict']}**",
        ]
    return "| " + " | ".join(cells) + " |"


def _aa_case_level(summary: dict[str, Any]) -> list[str]:
    """What the old case-level test says about each single A/A pair (same configuration, other seeds)."""
    row = next((r for r in summary["variants"] if r["variant"] == AA_ARM), None)
    pairs = (row or {}).get("vs_reference", {}).get("by_case_per_pair") or []
    if not pairs:
        return []
    significant = sum(p["t_p"] is not None and p["t_p"] < 0.05 for p in pairs)
    listed = "; ".join(
        f"seeds {p['seeds'][0]} vs {p['seeds'][1]}: Δ {_points(p['delta'])}, p = {_p(p['t_p'])}"
        for p in pairs
    )
    return [
        f"A/A control, the old case-level paired t-test on each single pair of converged runs (test images "
        f'as the unit): {listed}. {significant} of {len(pairs)} pairs come out "significant" (p < 0.05) '
        "although both runs of a pair have the same configuration.",
        "",
    ]


def ablation_markdown(summary: dict[str, Any], study: dict[str, Any] | None = None) -> str:
    """The Markdown report (the statistics are described in the module docstring and docs/bench.md); for a
    declared study the primary analysis comes first and the converged-only tables are its sensitivity
    analysis."""
    from s2mnet.bench.ablation.tables import lesion_markdown, primary_markdown

    margin = 100 * summary["margin"]
    first: list[str] = []
    if study is not None:
        first = primary_markdown(summary["primary"], study)
        if "lesion_deltas" in summary:
            first += lesion_markdown(summary["primary"], summary["lesion_deltas"])
        first += [
            "## Sensitivity analysis: converged runs only, every seed run",
            "",
            "Not the primary analysis: it selects runs on the outcome (the convergence flag, recomputed "
            "under the current rule of docs/bench.md) and includes runs at seeds the study does not declare.",
            "",
        ]
    lines = [
        "# s2m bench ablation",
        "",
        *first,
        *[f"- command: `{' '.join(c)}`" for c in summary["run_commands"]],
        *[
            f"- machine: {m['description']}; torch {m['torch']}; Python {m['python']}"
            for m in summary["machines"]
        ],
        f"- report written by: `{' '.join(summary['command'])}`",
        f"- budget: `{json.dumps(summary['budget'], ensure_ascii=False)}`",
        f"- wall time, training + evaluation, summed over runs: {_clock(summary['total_run_wall_s'])}",
        "- unit: the training run. Only converged runs count (converged = the validation Dice plateaued: "
        "the last `patience` validations beat the earlier best by ≤ `min_delta`).",
        "- Dice: mean ± sd over the converged runs of each run's mean test Dice (same split for all).",
        f"- Δ vs `{summary['reference']}` in Dice points (×100), mean over seed-paired runs, 95 % CI of a "
        "hierarchical bootstrap (seeds, then test cases within a seed; 10,000 replicates); t CI: the paired "
        "t interval over the seeds (n − 1 degrees of freedom). With 3–5 seeds the bootstrap cannot represent "
        "the spread between seeds (it resamples a handful of values, with normal-like quantiles): where "
        "per-case Dice is smooth it is narrower than the t CI; where it is bimodal, the case resampling "
        "makes it wider.",
        f"- simultaneous t CI: the t interval at level 1 − 0.05/{max(summary['testable'], 1)} (Bonferroni "
        "over the testable arms): all of them cover their true Δ at once with probability ≥ 95 %. An effect "
        "size outside it is excluded among these runs only; the words 'ruled out' belong to the primary "
        "analysis (Holm p of Δ = paper's Δ below 0.05).",
        "- t: paired t-test over the pairs' run-level Dice (primary), raw (Holm over the "
        f"{summary['testable']} testable arms); W: Wilcoxon signed-rank (≥ 5 pairs, a check only).",
        f"- TOST: equivalence within ±{margin:g} Dice point (two one-sided paired t-tests), raw (Holm).",
        "- verdict: **different** (Holm t p < 0.05 and both CIs exclude 0), **equivalent** (Holm TOST "
        "p < 0.05), **different, within the margin** (both: a detected difference smaller than the margin), "
        f"**inconclusive** otherwise, **not testable** with fewer than {MIN_PAIRS} converged pairs.",
        "- case-level t (secondary, not a verdict): the old test, paired over test cases on the per-case "
        "Dice averaged over the pairs' seeds; it treats cases as independent replicates of the training run.",
        "",
        "| arm | converged/runs | Dice | Δ [bootstrap 95 % CI] | t 95 % CI | simultaneous t CI | pairs | "
        "t p (Holm) | W p | TOST p (Holm) | case-level t p (secondary) | verdict |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        *[_row(row) for row in summary["variants"]],
        "",
        *_aa_case_level(summary),
        "Arms:",
        "",
        *[f"- `{row['variant']}`: {row['description']}" for row in summary["variants"]],
        "",
        "Runs and convergence:",
        "",
        "| arm | seeds | mean steps | mean test Dice, all runs | HD95 (px), converged |",
        "|---|---|---:|---:|---:|",
        *[
            f"| {r['variant']} | {', '.join(map(str, r['seeds']))} | {_num(r['steps_mean'], 0)} | "
            f"{_num(r['dice_all_mean'])} | {_num(r['hd95_mean'], 1)} ± {_num(r['hd95_sd'], 1)} |"
            for r in summary["variants"]
        ],
        "",
        "![Dice per arm](ablation.png)",
        "",
        "![Mean validation learning curve per arm](curves.png)",
        "",
    ]
    return "\n".join(lines)


def plot_dice(summary: dict[str, Any], records: list[dict[str, Any]], path: Path) -> None:
    """Bars of mean Dice ± sd over converged runs per arm; dots = converged runs, red × = not converged."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from s2mnet.io_utils import atomic_write_with

    rows = summary["variants"]
    fig, ax = plt.subplots(figsize=(max(6, 0.7 * len(rows) + 2), 4.5))
    positions = range(len(rows))
    means = [0.0 if r["dice_mean"] != r["dice_mean"] else r["dice_mean"] for r in rows]
    sds = [0.0 if r["dice_sd"] != r["dice_sd"] else r["dice_sd"] for r in rows]
    ax.bar(positions, means, yerr=sds, capsize=4, alpha=0.6)
    for i, row in enumerate(rows):
        mine = [r for r in records if r["variant"] == row["variant"]]
        good = [r["dice"] for r in mine if _converged(r)]
        bad = [r["dice"] for r in mine if not _converged(r)]
        ax.plot([i] * len(good), good, "k.", markersize=6)
        ax.plot([i] * len(bad), bad, "rx", markersize=6)
    ax.set_xticks(list(positions), [r["variant"] for r in rows], rotation=45, ha="right")
    ax.set_ylabel("test Dice (converged runs: mean ± sd, dots; × not converged)")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    atomic_write_with(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)


def plot_curves(summary: dict[str, Any], path: Path) -> None:
    """Mean validation Dice against the optimiser step, one line per arm (all its runs)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from s2mnet.io_utils import atomic_write_with

    fig, ax = plt.subplots(figsize=(8, 5))
    for i, row in enumerate(summary["variants"]):
        curve = row["mean_curve"]
        if curve:
            style = ("-", "--", ":", "-.")[i // 10 % 4]  # the default colour cycle has 10 colours
            ax.plot([c[0] for c in curve], [c[1] for c in curve], style, label=row["variant"])
    ax.set(xlabel="optimiser step", ylabel="validation Dice (mean over the arm's runs)")
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize="x-small", ncol=2)
    fig.tight_layout()
    atomic_write_with(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)


def _clock(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
