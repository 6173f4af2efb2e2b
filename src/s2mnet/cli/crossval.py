"""``s2m evaluate --run CVRUN``: the out-of-fold evaluation of a cross-validation run, printed."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from s2mnet.cli.common import format_metrics
from s2mnet.errors import S2MError
from s2mnet.inference.strata import split_lines


def evaluate_cv_command(args: argparse.Namespace, device: Any) -> int:
    """Evaluate every fold on its held-out fold and the ensemble on the test split; print the summary."""
    from s2mnet.engine.rundir import EVAL_CV_DIR
    from s2mnet.inference.crossval import evaluate_cv

    if args.split != "test":
        raise S2MError(
            f"--split {args.split}: a cross-validation run is evaluated out of fold (leave --split out)"
        )
    metrics = evaluate_cv(
        args.run,
        tta=args.tta,
        json_path=args.json,
        device=device,
        which=args.which,
        progress=sys.stderr.isatty(),
    )
    print(f"out-of-fold {format_metrics(metrics)}")
    for fold, values in metrics["per_fold"].items():
        print(f"  fold {fold}: Dice {values['dice']:.4f} over {values['n_cases']} held-out images")
    trivial = metrics["trivial"]
    print(
        f"trivial baselines over the same images: Dice {trivial['dice_all_empty']:.4f} predicting all empty, "
        f"{trivial['dice_all_foreground']:.4f} all foreground (out-of-fold model {metrics['dice']:.4f})"
    )
    test = metrics.get("test")
    if test:
        print(
            f"published test split, ensemble of the folds: Dice {test['dice']:.4f} over "
            f"{test['n_cases']} images"
        )
    report = args.run / f"{EVAL_CV_DIR}{'_tta' if args.tta else ''}"
    for line in split_lines(metrics.get("empty_truth_split")):
        print(line)
    print(f"per-case metrics (with their fold), per-fold reports and report.md in {report}")
    if args.json is not None:
        print(f"metrics written to {args.json}")
    return 0
