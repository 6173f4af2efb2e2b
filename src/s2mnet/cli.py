"""The ``s2m`` command line: ``demo``, ``analyze``, ``train``, ``evaluate``, ``predict``, ``models``.

Thin wrappers around the Python API (:func:`s2mnet.engine.train.train`,
:func:`s2mnet.engine.evaluate.evaluate_run`, :func:`s2mnet.engine.predict.predict_paths`,
:mod:`s2mnet.data`). Importing this module is cheap: torch and friends are imported inside the commands,
so ``s2m --help`` answers at once.

Errors caused by the user's input (:class:`s2mnet.errors.S2MError`) are printed as one line
``error: <message>`` on stderr and the exit status is 2; a traceback means a bug in s2mnet.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from s2mnet import __version__, reproduce
from s2mnet.bench.cli import add_parser as add_bench_parser
from s2mnet.errors import S2MError
from s2mnet.export_cli import add_parser as add_export_parser

EXIT_USER_ERROR = 2

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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``s2m`` command line; returns the exit status (0 ok, 2 bad input)."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.command_line = ["s2m", *argv]
    if not hasattr(args, "handler"):
        parser.print_help()
        return EXIT_USER_ERROR
    try:
        return int(args.handler(args) or 0)
    except S2MError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with all sub-commands (also used to document them in docs/tool.md)."""
    parser = argparse.ArgumentParser(
        prog="s2m",
        description="S2M-Net medical image segmentation: analyse a dataset, train, evaluate, predict.",
    )
    parser.add_argument("--version", action="version", version=f"s2m {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    demo = commands.add_parser(
        "demo",
        help="synthetic data → train → evaluate → report, in a few minutes on a CPU",
        description="Generate the built-in synthetic dataset (blobs, thin branching tubes, irregular shapes "
        "on textured noisy backgrounds), train S2M-Net with MASL, evaluate on the held-out split and write "
        "metrics.json, curves and overlays into --out.",
    )
    demo.add_argument("--out", required=True, type=Path, help="output folder (must be new or empty)")
    demo.add_argument("--epochs", type=int, help="training epochs (default: the demo's budget)")
    demo.add_argument("--cases", type=int, help="number of synthetic images (default: the demo's)")
    demo.add_argument("--size", type=int, help="image size in pixels (default: the demo's)")
    demo.add_argument("--model", default=None, help="model name (default s2mnet)")
    demo.add_argument("--seed", type=int, default=0, help="seed of the data, split and training (default 0)")
    demo.add_argument(
        "--time-limit",
        type=float,
        metavar="MINUTES",
        help="training stops after the epoch that exceeds this (default 4 minutes)",
    )
    _add_common_run_flags(demo)
    demo.set_defaults(handler=_cmd_demo)

    analyze = commands.add_parser(
        "analyze",
        help="dataset fingerprint and the training plan it implies",
        description="Find the image/mask pairs, print the dataset fingerprint (sizes, intensities, "
        "foreground share, morphology, mask encodings) and the plan s2m train would use.",
    )
    analyze.add_argument("--data", required=True, type=Path, help="dataset folder")
    analyze.add_argument(
        "--device", default="auto", help="plan for this device: auto, cpu, cuda (default auto)"
    )
    analyze.add_argument("--json", type=Path, help="also write fingerprint and plan to this JSON file")
    analyze.set_defaults(handler=_cmd_analyze)

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
    plan = train.add_argument_group("plan overrides (default: chosen from the dataset fingerprint)")
    plan.add_argument("--epochs", type=int, help="number of (virtual) epochs")
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
    _add_common_run_flags(train)
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
    system.add_argument("--channels-last", action="store_true", help="NHWC memory format (GPU)")
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
        help="stop after the epoch during which this wall time is exceeded",
    )
    system.add_argument(
        "--no-tensorboard", dest="tensorboard", action="store_false", help="do not write TensorBoard logs"
    )
    train.set_defaults(handler=_cmd_train)

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
    evaluate.set_defaults(handler=_cmd_evaluate)

    predict = commands.add_parser(
        "predict",
        help="segment new images; masks at each image's original size",
        description="Segment an image or every image of a folder; writes PNG masks (0/255 for binary, "
        "class indices otherwise) with the input's file stem. With --model FILE.onnx (from s2m export) "
        "the model runs on the CPU with onnxruntime, without importing torch.",
    )
    source = predict.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", type=Path, help="run folder written by s2m train")
    source.add_argument("--model", type=Path, help="ONNX file written by s2m export (onnxruntime, CPU)")
    predict.add_argument("inputs", nargs="*", type=Path, metavar="INPUT", help="image files or folders")
    predict.add_argument("--input", type=Path, help="an image file or a folder of images")
    predict.add_argument("--output", required=True, type=Path, help="folder for the masks (new or empty)")
    predict.add_argument("--tta", action="store_true", help="8-way flip/rotation test-time augmentation")
    predict.add_argument(
        "--which", default="best", choices=("best", "last"), help="checkpoint (default best)"
    )
    predict.add_argument("--device", default="auto", help="auto, cpu, cuda (default auto)")
    predict.add_argument("--overwrite", action="store_true", help="replace masks of an earlier s2m predict")
    predict.add_argument("--colours", action="store_true", help="RGB masks in palette.json colours")
    predict.set_defaults(handler=_cmd_predict)

    add_export_parser(commands)

    models = commands.add_parser("models", help="list the available model names")
    models.set_defaults(handler=_cmd_models)
    reproduce.add_parser(commands)
    add_bench_parser(commands)
    return parser


def _add_common_run_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:N")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier s2m output in --out (other files there are kept)",
    )
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors")


#: ``s2m train`` flags that ``--resume`` accepts, by TrainConfig field (the others are the run's stored ones).
RESUME_FLAGS = {"device": "device", "workers": "workers", "time_limit": "time_limit_s", "quiet": "quiet"}


def _cmd_train(args: argparse.Namespace) -> int:
    from s2mnet.engine.train import TrainConfig, resume_config, train

    if args.resume is not None:
        train(_resume_config(args, resume_config))
        return 0
    if args.data is None or args.out is None:
        raise S2MError("train: --data and --out are required (or --resume RUN)")
    _check_positive(
        args, ("epochs", "size", "patch_size", "batch_size", "samples_per_epoch", "num_classes", "val_every")
    )
    if args.overlap is not None and not 0.0 <= args.overlap < 1.0:
        raise S2MError(f"--overlap {args.overlap}: must be in [0, 1)")
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
        val_every=args.val_every,
        workers=args.workers,
        amp=args.amp,
        channels_last=args.channels_last,
        model_args=_key_values(args.model_arg, "--model-arg"),
        loss_args=_key_values(args.loss_arg, "--loss-arg"),
        time_limit_s=None if args.time_limit is None else 60.0 * args.time_limit,
        overwrite=args.overwrite,
        quiet=args.quiet,
        tensorboard=args.tensorboard,
        command=args.command_line,
        compile=args.compile,
        sync_bn=args.sync_bn,
    )
    train(config)
    return 0


def _resume_config(args: argparse.Namespace, resume_config: Any) -> Any:
    """``--resume RUN``: the run's stored configuration; flags other than :data:`RESUME_FLAGS` are refused."""
    defaults = vars(build_parser().parse_args(["train"]))
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


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from s2mnet.engine.evaluate import evaluate_run
    from s2mnet.engine.train import resolve_device

    _require_run(args.run)
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
    report = args.run / f"eval_{metrics['split']}{'_tta' if args.tta else ''}"
    print(f"per-case metrics, overlays and report.md in {report}")
    if args.json is not None:
        print(f"metrics written to {args.json}")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    if args.run is not None:
        _require_run(args.run)
    inputs = [*([args.input] if args.input is not None else []), *args.inputs]
    if not inputs:
        raise S2MError("s2m predict: give the images to segment (INPUT... or --input)")
    for path in inputs:
        if not path.exists():
            raise S2MError(f"{path}: input image or folder not found")
    if args.model is not None:  # onnxruntime only: no torch import on this path
        from s2mnet.deploy.onnx_predict import predict_onnx_paths

        if args.colours:
            raise S2MError("--colours is not supported with --model yet; use --run")

        written = predict_onnx_paths(
            args.model,
            inputs,
            args.output,
            tta=args.tta,
            overwrite=args.overwrite,
            progress=sys.stderr.isatty(),
        )
        print(f"{len(written)} mask(s) written to {args.output}")
        return 0

    from s2mnet.engine.predict import predict_paths
    from s2mnet.engine.train import resolve_device

    written = predict_paths(
        args.run,
        inputs,
        args.output,
        tta=args.tta,
        which=args.which,
        device=resolve_device(args.device),
        overwrite=args.overwrite,
        progress=sys.stderr.isatty(),
        colours=args.colours,
    )
    print(f"{len(written)} mask(s) written to {args.output}")
    return 0


def _cmd_analyze(args: argparse.Namespace) -> int:
    from s2mnet.data import discover, fingerprint, format_fingerprint, make_plan
    from s2mnet.engine.train import TrainConfig, add_training_recipe, format_plan, resolve_device
    from s2mnet.io_utils import atomic_write_json

    index = discover(args.data)
    facts = fingerprint(index)
    plan = make_plan(facts, device=resolve_device(args.device).type, overrides={})
    plan = add_training_recipe(plan, TrainConfig(data=args.data, out=""))
    print(format_fingerprint(facts))
    print(format_plan(plan))
    if args.json is not None:
        atomic_write_json(args.json, {"fingerprint": facts, "plan": plan})
        print(f"fingerprint and plan written to {args.json}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from s2mnet.demo import DemoConfig, run_demo

    _check_positive(args, ("epochs", "cases", "size"))
    overrides = {
        key: getattr(args, key)
        for key in ("epochs", "cases", "size", "model")
        if getattr(args, key) is not None
    }
    if args.time_limit is not None:
        overrides["time_limit_s"] = 60.0 * args.time_limit
    run_demo(
        DemoConfig(
            out=args.out,
            seed=args.seed,
            device=args.device,
            overwrite=args.overwrite,
            quiet=args.quiet,
            **overrides,
        )
    )
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    from s2mnet.models import list_models

    print("\n".join(list_models()))
    return 0


def format_metrics(metrics: dict[str, Any]) -> str:
    """The headline metrics as one aligned block (mean ± std over images)."""
    lines = []
    for name in ("dice", "iou", "precision", "recall", "hd95", "assd", "cldice"):
        if isinstance(metrics.get(name), int | float):
            std = metrics.get(f"{name}_std")
            spread = f" ± {std:.4f}" if isinstance(std, int | float) else ""
            lines.append(f"  {name:<10} {metrics[name]:.4f}{spread}")
    count = metrics.get("n_cases")
    header = "metrics" + (f" over {count} images" if count is not None else "") + " (mean per image):"
    return "\n".join([header, *lines])


def _require_run(run: Path) -> None:
    """A missing run folder or ``run.json`` is a one-line error naming it (before any heavy import)."""
    if not run.is_dir():
        raise S2MError(f"{run}: run folder not found")
    if not (run / "run.json").is_file():
        raise S2MError(f"{run / 'run.json'}: missing; {run} is not an s2m run folder (see s2m train --out)")


def _key_values(pairs: Sequence[str], flag: str) -> dict[str, Any]:
    """``["k=1", "name=\"x\""]`` → ``{"k": 1, "name": "x"}`` (values parsed as JSON, else kept as text)."""
    result: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise S2MError(f"{flag} {pair}: expected KEY=VALUE")
        try:
            result[key] = json.loads(value)
        except json.JSONDecodeError:
            result[key] = value
    return result


def _check_positive(args: argparse.Namespace, names: Sequence[str]) -> None:
    for name in names:
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise S2MError(f"--{name.replace('_', '-')} {value}: must be a positive integer")


if __name__ == "__main__":
    sys.exit(main())
