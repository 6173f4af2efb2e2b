"""``s2m export``: a run's checkpoint → ONNX (or ``torch.export`` ``.pt2``), verified before it is written.

The heavy imports (torch, onnx, onnxruntime) happen inside the handler, so ``s2m --help`` stays fast.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from s2mnet.cli.folds import add_folds_flag, parse_folds
from s2mnet.errors import S2MError

_SUFFIX_FORMATS = {".onnx": "onnx", ".pt2": "torch-export"}
_SIZE = re.compile(r"^\s*(\d+)\s*[x×]\s*(\d+)\s*$")


def register(commands: argparse._SubParsersAction) -> None:
    """Register ``s2m export`` on the ``s2m`` sub-command parser."""
    export = commands.add_parser(
        "export",
        help="export a trained run to ONNX (or torch.export), verified against PyTorch",
        description="Export a run's model with dynamic batch, height and width: ONNX (input 'image', "
        "output 'logits', preprocessing plan and class names in its metadata, for s2m predict --model) "
        "or torch.export (.pt2). The file is reloaded (onnxruntime / torch.export.load) and compared "
        "with PyTorch at each --check-sizes size; it is written only when every maximum absolute "
        "difference is within 1e-4.",
    )
    export.add_argument("--run", required=True, type=Path, help="run folder written by s2m train")
    export.add_argument("--output", required=True, type=Path, help="the file to write (.onnx or .pt2)")
    export.add_argument(
        "--which",
        "--weights",  # the earlier name, kept as an alias for one release
        dest="which",
        default="best",
        choices=("best", "last"),
        help="checkpoint (default best), as in evaluate and predict; --weights is the deprecated spelling",
    )
    export.add_argument(
        "--format",
        dest="fmt",
        choices=tuple(dict.fromkeys(_SUFFIX_FORMATS.values())),
        help="onnx or torch-export (default: from the --output suffix, .onnx or .pt2)",
    )
    export.add_argument(
        "--check-sizes",
        default="64x64,96x80",
        metavar="HxW,HxW",
        help="input sizes compared with PyTorch; the first is also the tracing example (default 64x64,96x80)",
    )
    export.add_argument("--overwrite", action="store_true", help="replace an existing --output file")
    add_folds_flag(export)
    export.set_defaults(handler=run)


def parse_sizes(text: str) -> tuple[tuple[int, int], ...]:
    """``"64x64,96x80"`` → ``((64, 64), (96, 80))``; anything else is a one-line :class:`S2MError`."""
    sizes = []
    for part in text.split(","):
        match = _SIZE.match(part)
        if match is None or min(int(match[1]), int(match[2])) < 1:
            raise S2MError(f"--check-sizes {text}: expected sizes like 64x64,96x80")
        sizes.append((int(match[1]), int(match[2])))
    return tuple(sizes)


def run(args: argparse.Namespace) -> int:
    """Handler of ``s2m export``: validate the arguments, export, print the check, report the file."""
    from s2mnet.engine.rundir import require_run, run_inputs

    require_run(args.run)
    folds = parse_folds(args.folds, args.run)
    sizes = parse_sizes(args.check_sizes)
    fmt = args.fmt or _SUFFIX_FORMATS.get(args.output.suffix.lower())
    if fmt is None:
        raise S2MError(f"{args.output}: unknown suffix; use .onnx or .pt2, or pass --format")
    from s2mnet.engine.outputs import check_output_file

    check_output_file(args.output, args.overwrite, f"{fmt} model", "--output", protected=run_inputs(args.run))

    from s2mnet.deploy.export import ATOL, export_run

    diffs = export_run(args.run, args.output, which=args.which, fmt=fmt, check_sizes=sizes, folds=folds)
    runtime = "onnxruntime" if fmt == "onnx" else "torch.export.load"
    for size, diff in diffs.items():
        print(f"  {size:>9}: max |{runtime} - PyTorch| = {diff:.2e} (limit {ATOL:g})")
    print(f"{fmt} model written to {args.output}")
    return 0
