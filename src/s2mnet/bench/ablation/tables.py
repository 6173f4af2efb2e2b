"""Markdown tables of a declared study's report: the primary analysis, the lesion figures, and the
effects of two budgets side by side (:func:`budget_table`: DRIVE at 1× and 4× the v2 step cap)."""

from __future__ import annotations

from typing import Any


def _points(value: float | None) -> str:
    return "–" if value is None or value != value else f"{100 * value:+.2f}"


def _share(value: float | None) -> str:
    return "–" if value is None or value != value else f"{100 * value:.0f} %"


def _num(value: float | None, digits: int = 4) -> str:
    return "–" if value is None or value != value else f"{value:.{digits}f}"


def _p(value: float | None) -> str:
    return "–" if value is None else f"{value:.3g}"


def _ci(interval: list[float | None]) -> str:
    return f"[{_points(interval[0])}, {_points(interval[1])}]"


def primary_markdown(primary: dict[str, Any], study: dict[str, Any]) -> list[str]:
    """The primary-analysis section (every run of every declared seed or fold)."""
    unit = "fold" if study.get("folds") else "seed"
    margin = 100 * primary["margin"]
    present = sum(row["runs"] for row in primary["variants"])
    declared = sum(row["declared"] for row in primary["variants"])
    interim = (
        [
            f"**Interim: {present} of the {declared} declared runs are in; the study is not complete, so "
            "neither are these figures nor the verdicts.**",
            "",
        ]
        if present < declared
        else []
    )
    lines = [
        f"## Primary analysis: every run of every declared {unit} ({primary['budget']})",
        "",
        *interim,
        f"- study: `{study.get('name')}`, declared {study.get('declared')}; reference "
        f"`{primary['reference']}`, A/A control `{study['aa_arm']}`.",
        f"- no run is dropped: a failed run (validation never left the all-background prediction, or a "
        f"non-finite loss) keeps its score and is counted in `failed`; pairs by {unit}.",
        "- Δ in Dice points (×100), mean over pairs; bootstrap: "
        + (
            "nested (folds, then their own test images)"
            if study.get("folds")
            else "crossed (seeds × one shared resample of the test images)"
        )
        + ", 10,000 replicates; t CI: paired t interval over the pairs.",
        f"- t p: paired t-test over pairs (Holm over the arms with ≥ 3 pairs); TOST: equivalence within "
        f"±{margin:g} point (Holm); p(Δ = paper): t-test of the pairs' Δ minus the paper's Δ (Holm over the "
        'arms with a paper effect). "Ruled out" only where that Holm value is below 0.05.',
        "",
        "| arm | runs (failed) | Dice, all runs | Δ | bootstrap 95 % CI | t 95 % CI | pairs | t p (Holm) | "
        "TOST p (Holm) | paper's Δ | p(Δ = paper) (Holm) | verdict |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in primary["variants"]:
        name = row["variant"] + (f" ({row['scale']}× steps and schedule)" if row["scale"] != 1 else "")
        cells = [
            f"`{name}`",
            f"{row['runs']}/{row['declared']} ({row['failed']})",
            f"{_num(row['dice_mean'])} ± {_num(row['dice_sd'])}",
        ]
        c = row.get("vs_reference")
        if c is None:
            cells += ["–"] * 8 + ["reference" if row["variant"] == primary["reference"] else "–"]
        else:
            paper = c.get("paper") or {}
            verdict = c["verdict"] + (f"; {c['paper_verdict']}" if c.get("paper_verdict") else "")
            cells += [
                _points(c["delta"]),
                _ci(c["ci"]),
                _ci(c["t_ci"]),
                str(c["n_pairs"]),
                f"{_p(c['run_test']['p'])} ({_p(c['p_holm'])})",
                f"{_p(c['tost']['p'])} ({_p(c['tost_p_holm'])})",
                _points(paper.get("paper_delta")),
                f"{_p(paper.get('p'))} ({_p(c.get('paper_p_holm'))})" if paper else "–",
                f"**{verdict}**",
            ]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    return lines


def lesion_markdown(primary: dict[str, Any], deltas: list[dict[str, Any]]) -> list[str]:
    """Dice over lesion images, lesions found, false positives on normal images (and the empty prediction)."""
    from s2mnet.inference.strata import FOUND_DICE

    empty = primary.get("empty_prediction") or {}
    lines = [
        "## Lesion images and normal images",
        "",
        f"- lesion Dice: mean Dice over the test images with a lesion; found: share of lesions with Dice > "
        f"{FOUND_DICE:g}; false positives: share of normal (empty-mask) test images on which the run "
        "predicted any foreground (Dice < 1 there). Means over the arm's runs; each Δ (points, ×100) is "
        "paired like the primary analysis, with its t interval: descriptive, where a Dice difference comes "
        "from, not a verdict.",
        "",
        "| arm | Dice, all images | lesion Dice | lesions found | false positives on normal images | "
        "Δ lesion Dice [t 95 % CI] | Δ found [t 95 % CI] | Δ false positives [t 95 % CI] |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    by_arm = {d["variant"]: d for d in deltas}
    for row in primary["variants"]:
        figures = row.get("lesion") or {}
        d = by_arm.get(row["variant"])
        deltas = (
            [f"{_points(d[f'{p}delta'])} {_ci(d[f'{p}t_ci'])}" for p in ("", "found_", "false_positive_")]
            if d
            else ["–"] * 3
        )
        lines.append(
            f"| `{row['variant']}` | {_num(row['dice_mean'])} | {_num(figures.get('lesion_dice'))} | "
            f"{_share(figures.get('found'))} | {_share(figures.get('false_positive'))} | "
            + " | ".join(deltas)
            + " |"
        )
    if empty:
        lines.append(f"| all-empty prediction | {_num(empty['dice'])} | 0.0000 | 0 % | 0 % | – | – | – |")
        lines += ["", f"({empty['normals']} of the {empty['cases']} test images are normal.)"]
    lines.append("")
    return lines


def budget_table(
    low: dict[str, Any], high: dict[str, Any] | None, arms: list[str], labels: tuple[str, str] = ("1×", "4×")
) -> list[str]:
    """Each arm's Δ against the reference at two budgets side by side (primary analyses of two studies).

    Args:
        low: the primary analysis at the smaller budget (e.g. DRIVE v2, 288 steps).
        high: the one at the larger budget (e.g. DRIVE 4×, 1152 steps); ``None`` while it is pending.
        arms: the arms to list (those of the larger study).
        labels: column labels of the two budgets.
    """
    rows_high = {r["variant"]: r for r in (high or {}).get("variants", [])}
    lines = [
        f"| arm | Δ at {labels[0]} [t 95 % CI] (pairs) | verdict at {labels[0]} | "
        f"Δ at {labels[1]} [t 95 % CI] (pairs) | verdict at {labels[1]} | change |",
        "|---|---:|---|---:|---|---:|",
    ]
    for row in low["variants"]:
        c = row.get("vs_reference")
        if c is None or row["variant"] not in arms:
            continue
        high_row = rows_high.get(row["variant"], {})
        h = high_row.get("vs_reference")
        first = f"{_points(c['delta'])} {_ci(c['t_ci'])} ({c['n_pairs']})"
        if h is None:
            second, verdict, change = "pending: study declared, runs not complete", "–", "–"
        else:
            second = f"{_points(h['delta'])} {_ci(h['t_ci'])} ({h['n_pairs']})"
            verdict = h["verdict"]
            if high_row["runs"] < high_row["declared"]:
                verdict += f" (interim: {high_row['runs']} of {high_row['declared']} runs)"
            change = _points(None if h["delta"] is None or c["delta"] is None else h["delta"] - c["delta"])
        lines.append(f"| `{row['variant']}` | {first} | {c['verdict']} | {second} | {verdict} | {change} |")
    return lines
