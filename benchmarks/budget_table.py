"""Print the DRIVE effects at 1× and 4× the v2 step cap side by side (docs/claims.md, "DRIVE at 4×").

Usage (from the repository root)::

    python benchmarks/budget_table.py [--low DIR] [--high DIR]   # default: DRIVE v2 and DRIVE 4x

Both columns are primary analyses (every run of every declared seed); the 4× column reads "pending" until
the 4× study has results.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from s2mnet.bench.ablation.analysis import primary_analysis  # noqa: E402
from s2mnet.bench.ablation.records import read_results  # noqa: E402
from s2mnet.bench.ablation.study import load_study  # noqa: E402
from s2mnet.bench.ablation.tables import budget_table  # noqa: E402


def primary(folder: Path) -> dict | None:
    """The primary analysis of a study folder, ``None`` without results."""
    records = read_results(folder)
    return primary_analysis(records, load_study(folder)) if records else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--low", type=Path, default=Path("docs/results/ablation_DRIVE"))
    parser.add_argument("--high", type=Path, default=Path("docs/results/ablation_DRIVE_4x_full"))
    args = parser.parse_args(argv)
    low = primary(args.low)
    if low is None:
        parser.error(f"{args.low}: no results")
    arms = [a for a in load_study(args.high)["arms"] if a != "paper"]
    print("\n".join(budget_table(low, primary(args.high), arms)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
