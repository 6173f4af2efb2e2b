"""``s2m reproduce DATASET``: the paper's protocol for one benchmark (:mod:`s2mnet.reproduce`)."""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_SEEDS = "42,123,456,789,2024"  # paper §4: five seeds


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``s2m reproduce`` to the ``s2m`` sub-command parser."""
    parser = commands.add_parser(
        "reproduce",
        help="run the paper's protocol on a benchmark and write our row beside the paper's",
        description="Train and evaluate the preset's protocol for each seed (resumable: finished seeds are "
        "skipped) and write OUT/row.md and OUT/row.json: mean ± std Dice (IoU, HD95) over the seeds beside "
        "the paper's S2M-Net number and its best baseline. Presets and protocols: docs/presets.md.",
    )
    parser.add_argument(
        "dataset",
        help="kvasir, cvc-clinicdb, cvc-colondb, etis, isic2018, ph2, glas, busi, stare, drive, chase, "
        "endovis17-binary, endovis17-parts, brats2020, acdc",
    )
    parser.add_argument(
        "--data", required=True, type=Path, help="the dataset folder, as its publisher lays it out"
    )
    parser.add_argument(
        "--seeds", default=DEFAULT_SEEDS, help=f"comma-separated seeds (default {DEFAULT_SEEDS})"
    )
    parser.add_argument(
        "--scale",
        default="paper",
        metavar="{paper,cpu-small}",  # "ci" (one tiny epoch, for tests) is accepted but not advertised
        help="paper: the paper's protocol (GPU); cpu-small: the stated reduced protocol (default paper)",
    )
    parser.add_argument("--out", type=Path, help="output folder (default reproduce/<dataset>-<scale>)")
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:N")
    parser.add_argument("--quiet", action="store_true", help="print only the final row")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run the preset's protocol over the seeds and print the row."""
    from s2mnet.reproduce import ROW_JSON, ROW_MD, format_row_markdown, parse_seeds, reproduce

    out = args.out or Path("reproduce") / f"{args.dataset.lower()}-{args.scale}"
    row = reproduce(
        args.dataset, args.data, out, parse_seeds(args.seeds), args.scale, args.device, args.quiet
    )
    print(format_row_markdown(row))
    print(f"row written to {out / ROW_MD} and {out / ROW_JSON}")
    return 0
