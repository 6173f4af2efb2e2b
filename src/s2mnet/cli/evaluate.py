"""``s2m evaluate``: metrics of a trained run on its held-out split or another dataset, or of a folder of
masks made by any tool (``--pred DIR --truth DIR``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from s2mnet.cli.common import format_metrics
from s2mnet.engine.outputs import check_output_dir, check_output_file
from s2mnet.engine.rundir import RUN_CONFIG, eval_dir, is_cv_run, require_run, run_inputs
from s2mnet.errors import S2MError
from s2mnet.inference.strata import split_lines


def register(commands: argparse._SubParsersAction) -> None:
    """Add this command to the ``s2m`` sub-command parser."""
    evaluate = commands.add_parser(
        "evaluate",
        help="metrics of a trained run (default: its held-out test split) or of a folder of masks",
        description="Per-image Dice (threshold 0.5), IoU, precision, recall, HD95, ASSD on the run's "
        "held-out split, or on another dataset with --data; or of any tool's masks with --pred DIR --truth "
        "DIR (NIfTI volumes in 3-D, distances in mm). The JSON's top-level 'dice' is the mean per-case Dice.",
    )
    evaluate.add_argument("--run", type=Path, help="run folder written by s2m train")
    evaluate.add_argument("--pred", type=Path, help="folder of predicted masks to score (needs --truth)")
    evaluate.add_argument("--truth", type=Path, help="folder of ground-truth masks for --pred")
    evaluate.add_argument("--images", type=Path, help="with --pred: the images, for overlays")
    evaluate.add_argument("--data", type=Path, help="evaluate on all cases of this dataset instead")
    evaluate.add_argument(
        "--split",
        default="test",
        choices=("train", "val", "test", "all"),
        help="split of the run's own data (default test)",
    )
    evaluate.add_argument(
        "--output",
        type=Path,
        help="folder for metrics.json, cases.csv, report.md, overlays/ (default RUN/eval_<split>[_tta], "
        "or <PRED>_eval beside --pred)",
    )
    evaluate.add_argument("--json", type=Path, help="also write the metrics to this JSON file")
    evaluate.add_argument(
        "--overwrite", action="store_true", help="replace an earlier --output folder or a --json file"
    )
    evaluate.add_argument("--tta", action="store_true", help="8-way flip/rotation test-time augmentation")
    evaluate.add_argument(
        "--which", default="best", choices=("best", "last"), help="checkpoint (default best)"
    )
    evaluate.add_argument("--device", default="auto", help="auto, cpu, cuda (default auto)")
    evaluate.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Check the paths and flags before importing torch, evaluate, print the summary."""
    if args.pred is not None or args.truth is not None:
        return _score_folders(args)
    if args.run is None:
        raise S2MError("s2m evaluate: give --run RUN, or --pred DIR --truth DIR")
    if args.images is not None:
        raise S2MError("--images goes with --pred and --truth (a run's overlays use its dataset's images)")
    require_run(args.run)
    if args.data is not None and not args.data.is_dir():
        raise S2MError(f"{args.data}: dataset folder not found")
    if args.output is not None:
        check_output_dir(args.output, overwrite=args.overwrite, marker="metrics.json", what="evaluate")
    protected = [*run_inputs(args.run), *([args.data] if args.data is not None else [])]
    for data in (path for path in protected if path.is_dir()):  # the data folders (the rest are files)
        if data.resolve() in args.run.resolve().parents:
            raise S2MError(
                f"{args.run}: the run folder lies inside the data folder {data}; evaluate would write its "
                "report into the data set; move the run folder out of it"
            )
    if args.json is not None:
        check_output_file(args.json, args.overwrite, "metrics", protected=protected)
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
        out_dir=args.output,
        which=args.which,
        device=resolve_device(args.device),
        progress=sys.stderr.isatty(),
    )
    report = args.output or eval_dir(args.run, metrics["split"], args.tta)
    _print(metrics, report, args.json)
    return 0


def _score_folders(args: argparse.Namespace) -> int:
    """``--pred DIR --truth DIR [--images DIR]``: check the folders, then score."""
    if args.pred is None or args.truth is None:
        raise S2MError("--pred and --truth go together: the predicted masks and the ground-truth masks")
    if args.run is not None or args.data is not None:
        raise S2MError("--pred/--truth score existing masks; they do not take --run or --data")
    for flag, folder in (("--pred", args.pred), ("--truth", args.truth), ("--images", args.images)):
        if folder is not None and not folder.is_dir():
            raise S2MError(f"{folder}: {flag} folder not found")
    if args.json is not None:
        inputs = [folder for folder in (args.pred, args.truth, args.images) if folder is not None]
        check_output_file(args.json, args.overwrite, "metrics", protected=inputs)
    from s2mnet.data.mask_pairs import pair_folders

    pair_folders(args.pred, args.truth)  # folders that do not pair: one line before any heavy import
    from s2mnet.inference.score_folder import default_output, score_folders

    output = args.output or default_output(args.pred)
    check_output_dir(output, overwrite=args.overwrite, marker="metrics.json", what="evaluate")
    metrics = score_folders(
        args.pred,
        args.truth,
        images_dir=args.images,
        out_dir=output,
        json_path=args.json,
        progress=sys.stderr.isatty(),
        overwrite=args.overwrite,
    )
    _print(metrics, output, args.json)
    return 0


def _print(metrics: dict, report: Path, json_path: Path | None) -> None:
    print(format_metrics(metrics))
    if metrics.get("distance_unit"):
        print(f"  (HD95 and ASSD in {metrics['distance_unit']})")
    trivial = metrics.get("trivial")
    if trivial:
        print(
            f"trivial baselines: Dice {trivial['dice_all_foreground']:.4f} predicting all foreground, "
            f"{trivial['dice_all_empty']:.4f} predicting all empty (model {metrics['dice']:.4f})"
        )
    for line in split_lines(metrics.get("empty_truth_split")):
        print(line)
    for line in metrics.get("warnings", []):
        print(f"warning: {line}", file=sys.stderr)
    print(f"per-case metrics, overlays and report.md in {report}")
    if json_path is not None:
        print(f"metrics written to {json_path}")
