"""``s2m analyze``: a dataset's fingerprint and the training plan it implies."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from s2mnet.engine.outputs import check_output_file
from s2mnet.errors import S2MError


def register(commands: argparse._SubParsersAction) -> None:
    """Add this command to the ``s2m`` sub-command parser."""
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
    analyze.add_argument(
        "--json",
        type=Path,
        help="also write fingerprint and plan to this JSON file (an existing file needs --overwrite)",
    )
    analyze.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    analyze.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if not args.data.is_dir():
        raise S2MError(f"{args.data}: dataset folder not found")
    if args.json is not None:
        check_output_file(args.json, args.overwrite, "fingerprint and plan", protected=[args.data])
    from s2mnet.data.discover import discover
    from s2mnet.engine.config import TrainConfig
    from s2mnet.engine.device import resolve_device
    from s2mnet.io_utils import atomic_write_json
    from s2mnet.planning.budget import DEFAULT_CPU_BUDGET_MIN
    from s2mnet.planning.fingerprint import fingerprint
    from s2mnet.planning.plan import format_plan
    from s2mnet.planning.planner import format_fingerprint, make_plan
    from s2mnet.planning.recipe import add_training_recipe

    index = discover(args.data)
    facts = fingerprint(index)
    device = resolve_device(args.device).type
    plan = make_plan(facts, device=device, overrides={})
    plan = add_training_recipe(plan, TrainConfig(data=args.data, out=""))
    print(format_fingerprint(facts))
    print(format_plan(plan))
    if device == "cpu":
        print(
            f"note: on a CPU `s2m train` replaces epochs, val_every and lr by a plan for a "
            f"{DEFAULT_CPU_BUDGET_MIN:g}-min time budget from timed steps (--budget; the plan above is "
            "the one of --budget 0)"
        )
    for line in facts.get("warnings", []):  # degenerate data (s2mnet.data.checks): warned, not refused
        print(f"warning: {line}", file=sys.stderr)
    if args.json is not None:
        atomic_write_json(args.json, {"fingerprint": facts, "plan": plan})
        print(f"fingerprint and plan written to {args.json}")
    return 0
