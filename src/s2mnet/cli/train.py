"""``s2m train``: flags → :class:`~s2mnet.engine.config.TrainConfig` → :func:`~s2mnet.engine.train.train`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from s2mnet.cli.common import Range, add_common_run_flags, check_ranges, key_values
from s2mnet.engine.outputs import check_output_dir, check_separate
from s2mnet.engine.rundir import RUN_CONFIG, is_cv_run, require_run
from s2mnet.engine.tracking import check_tracker
from s2mnet.errors import S2MError

#: ``s2m train`` flags that feed the data plan (``make_plan(..., overrides=...)``), by plan key.
PLAN_FLAGS = (
    "size",
    "patch_size",
    "mode",
    "preprocess",
    "epochs",
    "batch_size",
    "samples_per_epoch",
    "num_classes",
    "label_mode",
    "regions",
    "use_fov",
    "augment",
    "overlap",
)


#: Allowed values of the numeric flags (checked before anything is timed; the plan's own bounds,
#: s2mnet.planning.plan.Plan). Budget and time limit in minutes: 1e9 minutes is planned as the paper's
#: whole run (the budget never buys more).
FLAG_RANGES: dict[str, Range] = {
    "budget": (0.0, 1e9, True),
    "time_limit": (0.0, 1e9, False),
    "epochs": (1, 100_000, True),
    "size": (4, 16_384, True),
    "patch_size": (4, 16_384, True),
    "batch_size": (1, 4096, True),
    "samples_per_epoch": (1, 100_000_000, True),
    "num_classes": (1, 1024, True),
    "overlap": (0.0, 1.0, True),  # and below 1 (checked after)
    "lr": (0.0, 10.0, False),
    "weight_decay": (0.0, 10.0, True),
    "min_lr": (0.0, 10.0, True),
    "clip_grad": (0.0, 1e6, True),
    "warmup_epochs": (0, 100_000, True),
    "val_every": (1, 100_000, True),
    "patience": (0, 100_000, True),
    "min_epochs": (0, 100_000, True),
    "precise_bn": (0, 100_000, True),
    "workers": (0, 256, True),
    "seed": (0, 2**32 - 1, True),
}

#: ``s2m train`` flags that ``--resume`` accepts, by TrainConfig field (the others are the run's stored ones).
RESUME_FLAGS = {
    "device": "device",
    "workers": "workers",
    "time_limit": "time_limit_s",
    "quiet": "quiet",
    "tracker": "tracker",
}


def register(commands: argparse._SubParsersAction) -> None:
    """Add this command to the ``s2m`` sub-command parser."""
    train = commands.add_parser(
        "train",
        help="train a model on a dataset folder",
        description="Train with the paper's recipe (AdamW, warm-up + cosine, clipping, early stopping on "
        "validation Dice). Every choice of the plan is printed, stored in RUN/plan.json, and can be "
        "overridden by the flags below.",
    )
    train.add_argument("--data", type=Path, help="dataset folder (required unless --resume)")
    train.add_argument("--out", type=Path, help="run folder to create (required unless --resume)")
    train.add_argument(
        "--resume",
        type=Path,
        metavar="RUN",
        help="continue a stopped run from its last epoch with its stored settings (only --device, "
        "--workers, --time-limit, --quiet, --no-tensorboard may be given)",
    )
    train.add_argument("--model", default="s2mnet", help="model name (see `s2m models`; default s2mnet)")
    train.add_argument("--loss", default=None, help="loss: masl (default), dicece, masl_fixed, ...")
    train.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    train.add_argument(
        "--splits", type=Path, help="split file {train, val, test} (default: published split or 70/15/15)"
    )
    train.add_argument(
        "--folds",
        type=int,
        metavar="K",
        help="K-fold cross-validation (K >= 2): stratified, grouped folds in RUN/splits.json, one complete "
        "run per fold in RUN/fold_k/; --budget is divided over the folds (docs/tool.md)",
    )
    train.add_argument(
        "--fold", type=int, metavar="k", help="with --folds K: train only fold k (folds in parallel)"
    )
    plan = train.add_argument_group("plan overrides (default: chosen from the dataset fingerprint)")
    plan.add_argument(
        "--budget",
        type=float,
        metavar="MINUTES",
        help="plan the run to take this long: steps, validations and learning rate from a few timed steps "
        "(default 15 on a CPU; on a GPU none: the paper's 150 epochs; 0 = off; ignored with --epochs)",
    )
    plan.add_argument("--epochs", type=int, help="number of (virtual) epochs (turns the budget off)")
    plan.add_argument("--size", type=int, help="training/inference size in resize mode (pixels, square)")
    plan.add_argument("--patch-size", type=int, help="patch size in patch mode (pixels, square)")
    plan.add_argument("--mode", choices=("resize", "patch"), help="resize whole images or train on patches")
    plan.add_argument("--overlap", type=float, help="sliding-window overlap in patch mode, 0 ≤ x < 1 (0.5)")
    plan.add_argument("--preprocess", help="preprocessing, e.g. none, green_clahe")
    plan.add_argument(
        "--augment", choices=("none", "light", "full"), help="augmentation: light (CPU) or full (paper, GPU)"
    )
    plan.add_argument("--batch-size", type=int, help="batch size")
    plan.add_argument("--samples-per-epoch", type=int, help="samples drawn per (virtual) epoch")
    plan.add_argument(
        "--num-classes", type=int, help="1 = binary (sigmoid); K > 1 = K classes incl. background"
    )
    plan.add_argument(
        "--label-mode",
        choices=("binary", "multiclass", "multilabel"),
        help="binary, exclusive classes (softmax) or overlapping regions (one sigmoid each)",
    )
    plan.add_argument(
        "--regions",
        metavar="SPEC",
        help="label values per region: 'ET=4;TC=1,4;WT=1,2,4', JSON, or a preset (brats, acdc, ...)",
    )
    plan.add_argument(
        "--fov",
        dest="use_fov",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="use the field-of-view masks when the dataset has them (default: yes)",
    )
    recipe = train.add_argument_group("optimisation (default: the paper's recipe, scaled to the budget)")
    recipe.add_argument("--lr", type=float, help="peak learning rate (paper 1e-4; 1e-3 for runs < 60 epochs)")
    recipe.add_argument("--weight-decay", type=float, help="AdamW weight decay (default 1e-4)")
    recipe.add_argument(
        "--warmup-epochs", type=int, help="linear warm-up epochs (default min(10, epochs//10))"
    )
    recipe.add_argument("--min-lr", type=float, help="learning rate at the end of the cosine (default 1e-6)")
    recipe.add_argument("--clip-grad", type=float, help="gradient-norm clipping (default 1.0)")
    recipe.add_argument("--val-every", type=int, help="validate every N epochs (default 1)")
    recipe.add_argument("--patience", type=int, help="early-stopping patience in epochs (0 = off)")
    recipe.add_argument(
        "--min-epochs", type=int, help="early stopping never stops before this epoch (default 0)"
    )
    recipe.add_argument(
        "--precise-bn",
        type=int,
        metavar="N",
        help="re-estimate BatchNorm statistics from N training batches before each validation (default 0 = "
        "off); early validations then show what the weights have learnt (docs/speed.md)",
    )
    recipe.add_argument(
        "--model-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra create_model argument (JSON value), e.g. --model-arg k=16",
    )
    recipe.add_argument(
        "--loss-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra create_loss argument (JSON value)",
    )
    add_common_run_flags(train)
    system = train.add_argument_group("hardware")
    system.add_argument(
        "--workers", type=int, help="data-loading processes (default 0 on CPU, up to 8 on CUDA)"
    )
    system.add_argument(
        "--amp",
        choices=("none", "bf16", "fp16"),
        default="none",
        help="mixed precision on CUDA (default none)",
    )
    system.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="NHWC memory format: same results, faster convolutions on CPUs and GPUs (default: on)",
    )
    system.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the training step (falls back to eager on failure)",
    )
    system.add_argument(
        "--sync-bn",
        action="store_true",
        help="under torchrun: synchronise BatchNorm statistics over all ranks",
    )
    system.add_argument(
        "--time-limit",
        type=float,
        metavar="MINUTES",
        help="stop within one training step of this wall time; the run can be continued with --resume",
    )
    system.add_argument(
        "--no-tensorboard", dest="tensorboard", action="store_false", help="do not write TensorBoard logs"
    )
    system.add_argument(
        "--tracker",
        default="none",
        help="experiment tracker: none (default) or mlflow (pip install 's2mnet[mlflow]'; a local mlruns/ "
        "beside the run folder unless MLFLOW_TRACKING_URI is set)",
    )
    train.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Check the flags and paths, build the configuration and train."""
    _check_before_heavy_imports(args)
    from s2mnet.engine.config import TrainConfig, resume_config
    from s2mnet.engine.train import train

    if args.resume is not None:
        if is_cv_run(args.resume) and not (args.resume / RUN_CONFIG).is_file():
            from s2mnet.engine.crossval import resume_cv

            changes = _resume_config(args, lambda run, command, **changes: changes)
            resume_cv(args.resume, command=args.command_line, **changes)
            return 0
        train(_resume_config(args, resume_config))
        return 0
    config = TrainConfig(
        data=args.data,
        out=args.out,
        model=args.model,
        loss=args.loss,
        seed=args.seed,
        device=args.device,
        splits=args.splits,
        plan_overrides={key: getattr(args, key) for key in PLAN_FLAGS if getattr(args, key) is not None},
        lr=args.lr,
        weight_decay=args.weight_decay,
        warmup_epochs=args.warmup_epochs,
        min_lr=args.min_lr,
        clip_grad=args.clip_grad,
        patience=args.patience,
        min_epochs=args.min_epochs,
        val_every=args.val_every,
        precise_bn=args.precise_bn,
        workers=args.workers,
        amp=args.amp,
        channels_last=args.channels_last,
        model_args=key_values(args.model_arg, "--model-arg"),
        loss_args=key_values(args.loss_arg, "--loss-arg"),
        budget_s=None if args.budget is None else 60.0 * args.budget,
        time_limit_s=None if args.time_limit is None else 60.0 * args.time_limit,
        overwrite=args.overwrite,
        quiet=args.quiet,
        tensorboard=args.tensorboard,
        tracker=args.tracker,
        command=args.command_line,
        compile=args.compile,
        sync_bn=args.sync_bn,
    )
    if args.folds is not None:
        from s2mnet.engine.crossval import train_cv

        train_cv(config, args.folds, args.fold)
        return 0
    train(config)
    return 0


def _resume_config(args: argparse.Namespace, resume_config: Any) -> Any:
    """``--resume RUN``: the run's stored configuration; flags other than :data:`RESUME_FLAGS` are refused."""
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    defaults = vars(parser.parse_args(["train"]))
    ignored = {"resume", "handler", "command_line", "tensorboard", *RESUME_FLAGS}
    changed = sorted(
        key for key, value in vars(args).items() if key not in ignored and value != defaults.get(key)
    )
    if changed:
        flags = ", ".join("--" + key.replace("_", "-") for key in changed)
        raise S2MError(
            f"--resume {args.resume}: {flags} cannot be given (the run's stored settings are used)"
        )
    changes = {
        field: getattr(args, flag)
        for flag, field in RESUME_FLAGS.items()
        if getattr(args, flag) != defaults[flag]
    }
    if "time_limit_s" in changes:
        changes["time_limit_s"] = 60.0 * changes["time_limit_s"]
    if not args.tensorboard:
        changes["tensorboard"] = False
    return resume_config(args.resume, command=args.command_line, **changes)


def _check_before_heavy_imports(args: argparse.Namespace) -> None:
    """Paths, flags and the output folder, checked before torch is imported: mistakes answered at once."""
    check_tracker(args.tracker)
    check_ranges(args, FLAG_RANGES)
    if args.resume is not None:
        require_run(args.resume)
        return
    if args.data is None or args.out is None:
        raise S2MError("train: --data and --out are required (or --resume RUN)")
    if not args.data.is_dir():
        problem = "dataset folder not found" if not args.data.exists() else "not a folder"
        raise S2MError(f"{args.data}: {problem}")
    if args.splits is not None and not args.splits.is_file():
        raise S2MError(f"{args.splits}: split file not found")
    if args.overlap is not None and args.overlap >= 1.0:
        raise S2MError(f"--overlap {args.overlap}: must be in [0, 1)")
    check_separate(args.out, args.data)
    if args.folds is None:
        if args.fold is not None:
            raise S2MError(f"--fold {args.fold}: needs --folds K (the number of folds of the run)")
        check_output_dir(args.out, overwrite=args.overwrite, marker=RUN_CONFIG)
        return
    _check_cv_flags(args)


def _check_cv_flags(args: argparse.Namespace) -> None:
    """``--folds K [--fold k]``: K >= 2, k in 0..K-1, no --splits, a usable output folder."""
    from s2mnet.engine.crossval import check_cv_output
    from s2mnet.engine.rundir import MAX_FOLDS

    if not 2 <= args.folds <= MAX_FOLDS:
        raise S2MError(f"--folds {args.folds}: cross-validation needs 2 to {MAX_FOLDS} folds")
    if args.fold is not None and not 0 <= args.fold < args.folds:
        raise S2MError(f"--fold {args.fold}: the folds of --folds {args.folds} are 0..{args.folds - 1}")
    if args.splits is not None:
        raise S2MError("--folds and --splits cannot be combined: the folds are the split")
    check_cv_output(args.out, args.folds, args.fold, args.overwrite)
