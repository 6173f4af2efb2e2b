"""``s2m predict``: masks for new images with a run (torch) or an exported ONNX model (no torch)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from s2mnet.cli.folds import add_folds_flag, parse_folds
from s2mnet.engine.outputs import check_separate
from s2mnet.engine.rundir import require_run
from s2mnet.errors import S2MError


def register(commands: argparse._SubParsersAction) -> None:
    """Add this command to the ``s2m`` sub-command parser."""
    predict = commands.add_parser(
        "predict",
        help="segment new images; masks at each image's original size",
        description="Segment an image or every image of a folder; writes PNG masks (0/255 for binary, "
        "class indices otherwise) with the input's file stem; --probabilities and --overlays add probability "
        "maps and contour pictures. With --model FILE.onnx (from s2m export) "
        "the model runs with onnxruntime (CPU, or CUDA with onnxruntime-gpu), without importing torch.",
    )
    source = predict.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", type=Path, help="run folder written by s2m train")
    source.add_argument("--model", type=Path, help="ONNX file written by s2m export (onnxruntime, no torch)")
    predict.add_argument("inputs", nargs="*", type=Path, metavar="INPUT", help="image files or folders")
    predict.add_argument("--input", type=Path, help="an image file or a folder of images")
    predict.add_argument(
        "--output",
        required=True,
        type=Path,
        help="folder for the masks (new or empty; claimed while predict writes, masks appear all at once)",
    )
    predict.add_argument("--tta", action="store_true", help="8-way flip/rotation test-time augmentation")
    predict.add_argument(
        "--which", default="best", choices=("best", "last"), help="checkpoint (default best)"
    )
    predict.add_argument(
        "--device",
        default="auto",
        help="auto, cpu, cuda (default auto; with --model, cuda needs onnxruntime-gpu)",
    )
    predict.add_argument(
        "--probabilities",
        action="store_true",
        help="also write float32 probability maps, OUTPUT/probabilities/<stem>.npy (C, H, W)",
    )
    predict.add_argument(
        "--overlays",
        action="store_true",
        help="also write the prediction's contour on the image, OUTPUT/overlays/",
    )
    predict.add_argument("--overwrite", action="store_true", help="replace masks of an earlier s2m predict")
    predict.add_argument("--colours", action="store_true", help="RGB masks in palette.json colours")
    add_folds_flag(predict)
    predict.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.run is not None:
        require_run(args.run)
    folds = parse_folds(args.folds, args.run)
    inputs = [*([args.input] if args.input is not None else []), *args.inputs]
    if not inputs:
        raise S2MError("s2m predict: give the images to segment (INPUT... or --input)")
    for path in inputs:
        if not path.exists():
            raise S2MError(f"{path}: input image or folder not found")
        if not (path.is_dir() or path.is_file()):
            raise S2MError(f"{path}: not a regular file or a folder (a device or a pipe?); give images")
        if path.is_dir():
            check_separate(args.output, path, "--output", "--input")
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
            warn=_warn,
            device=args.device,
            probabilities=args.probabilities,
            overlays=args.overlays,
        )
        _report(written, args)
        return 0

    from s2mnet.engine.device import resolve_device
    from s2mnet.inference.predict import predict_paths

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
        warn=_warn,
        probabilities=args.probabilities,
        overlays=args.overlays,
        folds=folds,
    )
    _report(written, args)
    return 0


def _report(written: list[Path], args: argparse.Namespace) -> None:
    """The summary lines: masks, and where the probability maps and overlays are."""
    print(f"{len(written)} mask(s) written to {args.output}")
    for flag, folder in ((args.probabilities, "probabilities"), (args.overlays, "overlays")):
        if flag:
            print(f"{folder} in {args.output / folder}")


def _warn(line: str) -> None:
    """One ``warning: ...`` line on standard error (degenerate predictions, s2mnet.data.checks)."""
    print(f"warning: {line}", file=sys.stderr)
