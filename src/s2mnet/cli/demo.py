"""``s2m demo``: the synthetic demo — data, training, evaluation and report in a few minutes on a CPU."""

from __future__ import annotations

import argparse
from pathlib import Path

from s2mnet.cli.common import add_common_run_flags, check_positive, check_ranges


def register(commands: argparse._SubParsersAction) -> None:
    """Add this command to the ``s2m`` sub-command parser."""
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
        help="optional safety limit on training time (default none: the budget is a fixed number of steps, "
        "so the result does not depend on the machine's load)",
    )
    add_common_run_flags(demo)
    demo.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from s2mnet.demo import DemoConfig, run_demo

    check_positive(args, ("epochs", "cases", "size"))
    check_ranges(
        args, {"time_limit": (0.0, 1e9, False), "epochs": (1, 100_000, True), "size": (4, 16_384, True)}
    )
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
