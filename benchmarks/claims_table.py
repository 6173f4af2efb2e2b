"""Print the ablation part of docs/claims.md: our Dice deltas against the paper's, with verdicts.

Reads the ``ablation.json`` reports that ``s2m bench ablation`` wrote (committed under docs/results/) and
the paper's ablation numbers (docs/method.md §5, "Ablations (Kvasir / DRIVE / GlaS / PH2)"; "Disentangling"
for Dice-CE; the main table for U-Net), and prints one Markdown table per dataset:

    python benchmarks/claims_table.py docs/results/ablation_DRIVE/ablation.json \
        docs/results/ablation_BUSI-100/ablation.json

Verdict rule (stated in docs/claims.md): a paper delta "holds" when our delta has the same sign and the
case-level paired t-test is significant after Bonferroni (p < 0.05); "not reproduced" when our delta is
not significant; "contradicted" when it is significant with the opposite sign.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

#: Paper ablation Dice (%), columns Kvasir, DRIVE, GlaS, PH2 (docs/method.md §5).
PAPER_ABLATION = {
    "full": (96.05, 84.06, 93.83, 96.67),
    "no_sstm": (88.45, 77.78, 86.92, 90.67),
    "k16": (89.87, 80.92, 88.57, 92.34),
    "k64": (95.75, 83.52, 90.42, 93.11),
    "masl_fixed": (88.92, 78.34, 90.38, 91.45),
    "masl_nomod": (89.37, 79.78, 90.28, 91.92),
    "masl_no_boundary": (87.96, 80.45, 90.85, 89.91),
    "no_bfd": (89.87, 79.89, 88.34, 92.28),
    "no_mrfse": (89.23, 78.45, 87.56, 91.78),
}
#: Dice + CE instead of MASL on S2M-Net ("Disentangling"): DRIVE 82.74 vs 84.06 (Kvasir 93.89 vs 96.05).
PAPER_DICECE_DRIVE, PAPER_DICECE_KVASIR = 82.74 - 84.06, 93.89 - 96.05
#: U-Net (main table, trained by the authors with their baseline loss) vs S2M-Net: DRIVE, BUSI.
PAPER_UNET = {"DRIVE": 79.02 - 84.06, "BUSI": 76.77 - 85.07}
SIGNIFICANT = 0.05


def paper_deltas(variant: str, dataset: str) -> tuple[float | None, float | None]:
    """(delta on DRIVE or this dataset where the paper gives one, mean delta over the paper's 4 datasets)."""
    if variant in PAPER_ABLATION:
        rows = [v - f for v, f in zip(PAPER_ABLATION[variant], PAPER_ABLATION["full"], strict=True)]
        own = rows[1] if dataset == "DRIVE" else None
        return own, sum(rows) / len(rows)
    if variant == "dicece":
        own = PAPER_DICECE_DRIVE if dataset == "DRIVE" else None
        return own, (PAPER_DICECE_DRIVE + PAPER_DICECE_KVASIR) / 2
    if variant == "unet_dicece":
        key = "DRIVE" if dataset == "DRIVE" else "BUSI" if dataset.startswith("BUSI") else None
        return (PAPER_UNET[key] if key else None), None
    return None, None


def verdict(paper: float | None, ours: float, p_bonf: float | None) -> str:
    """The stated rule; no paper number → only whether our delta is significant."""
    significant = p_bonf is not None and p_bonf < SIGNIFICANT
    if paper is None:
        return "significant" if significant else "no significant difference"
    if not significant:
        return "not reproduced (n.s.)"
    return "holds" if (paper < 0) == (ours < 0) else "contradicted"


def table(report: dict, dataset: str) -> str:
    """One Markdown table of our deltas (Dice points, ×100) beside the paper's."""
    full = next(v for v in report["variants"] if v["variant"] == report["reference"])
    lines = [
        f"**{dataset}** — full S2M-Net + MASL: Dice {100 * full['dice_mean']:.2f} ± "
        f"{100 * full['dice_sd']:.2f} ({len(full['seeds'])} seeds)",
        "",
        "| variant | our Dice | our Δ | p (case, t, Bonf.) | p (seed, t, Bonf.) | paper Δ (this set) "
        "| paper Δ (mean of 4) | verdict |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in report["variants"]:
        if row["variant"] == report["reference"]:
            continue
        versus = row.get("vs_reference") or {}
        by_case, by_seed = versus.get("by_case", {}), versus.get("by_seed", {})
        ours = 100 * (row["dice_mean"] - full["dice_mean"])
        own, mean4 = paper_deltas(row["variant"], dataset)
        reference = own if own is not None else mean4
        lines.append(
            f"| {row['variant']} | {100 * row['dice_mean']:.2f} ± {100 * row['dice_sd']:.2f} | {ours:+.2f} "
            f"| {_p(by_case.get('t_p_bonf'))} | {_p(by_seed.get('t_p_bonf'))} | {_d(own)} | {_d(mean4)} "
            f"| {verdict(reference, ours, by_case.get('t_p_bonf'))} |"
        )
    return "\n".join(lines)


def _p(value: float | None) -> str:
    return "–" if value is None else f"{value:.3g}"


def _d(value: float | None) -> str:
    return "–" if value is None else f"{value:+.2f}"


def main(paths: list[str]) -> int:
    for path in paths:
        report = json.loads(Path(path).read_text())
        print(table(report, Path(path).parent.name.removeprefix("ablation_")))
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
