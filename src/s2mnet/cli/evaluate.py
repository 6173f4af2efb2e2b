"""``s2m evaluate``: metrics of a trained run on its held-out split or another dataset."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from s2mnet.cli.common import format_metrics
from s2mnet.engine.rundir import RUN_CONFIG, eval_dir, is_cv_run, require_run
from s2mnet.errors import S2MError


def register(commands: argparse._SubParsersAction) -> None:
    """Add this command to the ``s2m`` sub-command parser."""
    evaluate = commands.add_parser(
        "evaluate",
        help="metrics of a trained run (default: its held-out test split)",
        description="Per-image Dice (threshold 0.5), IoU, precision, recall, HD95, ASSD on the run's "
        "held-out split, or on another dataset with --data. The JSON's top-level 'dice' is the mean "
        "per-image Dice.",
    )
    evaluate.add_argument("--run", required=True, type=Path, help="run folder written by s2m train")
    evaluate.add_argument("--data", type=Path, help="evaluate on all cases of this dataset instead")
    evaluate.add_argument(
        "--split",
        default="test",
        choices=("train", "val", "test", "all"),
        help="split of the run's own data (default test)",
    )
    evaluate.add_argument("--json", type=Path, help="write the metrics to this JSON file")
    evaluate.add_argument("--tta", action="store_true", help="8-way flip/rotation test-time augmentation")
    evaluate.add_argument(
        "--which", default="best", choices=("best", "last"), help="checkpoint (default best)"
    )
    evaluate.add_argument("--device", default="auto", help="auto, cpu, cuda (default auto)")
    evaluate.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Check the run folder (and --data) before importing torch, evaluate, print the summary."""
    require_run(args.run)
    if args.data is not None and not args.data.is_dir():
        raise S2MError(f"{args.data}: dataset folder not found")
    from s2mnet.engine.device import resolve_device

    if args.data is None and is_cv_run(args.run) and not (args.run / RUN_CONFIG).is_file():
        from s2mnet.cli.crossval import evaluate_cv_command

        return evaluate_cv_command(args, resolve_device(args.device))
    from s2mnet.inference.evaluate import evaluate_run

    metrics = evaluate_run(
        args.run,
        data_dir=args.data,
        split=args.split,
        tta=args.tta,
        json_path=args.json,
        which=args.which,
        device=resolve_device(args.device),
        progress=sys.stderr.isatty(),
    )
    print(format_metrics(metrics))
    trivial = metrics.get("trivial")
    if trivial:
        print(
            f"trivial baselines: Dice {trivial['dice_all_foreground']:.4f} predicting all foreground, "
            f"{trivial['dice_all_empty']:.4f} predicting all empty (model {metrics['dice']:.4f})"
        )
    for line in metrics.get("warnings", []):
        print(f"warning: {line}", file=sys.stderr)
    report = eval_dir(args.run, metrics["split"], args.tta)
    print(f"per-case metrics, overlays and report.md in {report}")
    if args.json is not None:
        print(f"metrics written to {args.json}")
    return 0
