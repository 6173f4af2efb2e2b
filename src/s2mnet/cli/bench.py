"""``s2m bench efficiency | spectral | ablation``: parsers and handlers (registered by :mod:`s2mnet.cli`).

Heavy imports happen inside the handlers, so ``s2m --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from s2mnet.bench import DEFAULT_KS, DEFAULT_MODELS, DEFAULT_SIZES, PAPER_THRESHOLD
from s2mnet.cli.common import Range, check_ranges
from s2mnet.errors import S2MError


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``bench`` with its three sub-commands to the ``s2m`` command line."""
    bench = commands.add_parser(
        "bench",
        help="measure the paper's claims: efficiency, spectral energy, ablations with statistics",
        description="Benchmarks of the paper's claims (docs/bench.md): efficiency side by side, spectral "
        "energy inside the K×K block, and ablations over seeds with paired tests.",
    )
    bench.set_defaults(handler=lambda _args: _print_help(bench))
    benchmarks = bench.add_subparsers(title="benchmarks", metavar="BENCHMARK")
    _add_efficiency(benchmarks)
    _add_spectral(benchmarks)
    _add_ablation(benchmarks)


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated integers") from None
    if not values:
        raise argparse.ArgumentTypeError(f"{text!r}: expected at least one integer")
    return values


def _name_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _add_efficiency(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "efficiency",
        help="parameters, FLOPs, latency, training step, throughput, memory and scaling, side by side",
        description="Measure every model at every size in one run (each cell in a fresh subprocess with a "
        "time cap; what does not fit is skipped and said so). Writes efficiency.md/.json/.png into --out.",
    )
    parser.add_argument(
        "--sizes",
        type=_int_list,
        default=list(DEFAULT_SIZES),
        help="square input sizes (default %(default)s)",
    )
    parser.add_argument(
        "--models", type=_name_list, default=list(DEFAULT_MODELS), help="comma list (default: %(default)s)"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda (default auto)")
    parser.add_argument("--amp", choices=("none", "bf16"), default="none", help="autocast on (default none)")
    parser.add_argument("--batch", type=int, default=1, help="images per forward / training step (default 1)")
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per measurement (median; 10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs before timing (default 2)")
    parser.add_argument(
        "--budget", type=float, default=60.0, help="seconds per measurement: fewer repeats if slower (60)"
    )
    parser.add_argument(
        "--cell-timeout",
        type=float,
        default=600.0,
        help="seconds per (model, size) cell before skipping (600)",
    )
    parser.add_argument("--threads", type=int, help="torch CPU threads per cell (default: torch's)")
    parser.add_argument(
        "--channels-last", action="store_true", help="NHWC memory format, as s2m train --channels-last"
    )
    parser.add_argument(
        "--compile", action="store_true", help="torch.compile the training step, as s2m train --compile"
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="measure in this process instead of one subprocess per cell (no time cap; for debugging)",
    )
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument(
        "--report-only", action="store_true", help="rebuild efficiency.md/.png from efficiency.json in --out"
    )
    parser.set_defaults(handler=_cmd_efficiency)


def _cmd_efficiency(args: argparse.Namespace) -> int:
    from s2mnet.bench.efficiency import rebuild_report, run_efficiency

    if args.report_only:
        rebuild_report(args.out)
        print(f"report rebuilt: {args.out / 'efficiency.md'}")
        return 0
    for name in ("batch", "repeats"):
        if getattr(args, name) < 1:
            raise S2MError(f"--{name} {getattr(args, name)}: must be ≥ 1")
    check_ranges(args, {"budget": (0.0, 1e7, False), "warmup": (0, 10_000, True), "threads": (1, 4096, True)})
    run_efficiency(
        args.out,
        sizes=args.sizes,
        models=args.models,
        device=args.device,
        amp=args.amp,
        batch=args.batch,
        repeats=args.repeats,
        warmup=max(0, args.warmup),
        budget_s=args.budget,
        cell_timeout_s=args.cell_timeout,
        threads=args.threads,
        channels_last=args.channels_last,
        compile=args.compile,
        isolate=not args.in_process,
        command=args.command_line,
    )
    return 0


def _add_spectral(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "spectral",
        help="share of spectral energy inside the central K×K block (images, and SSTM inputs of a run)",
        description="Energy |FFT|² inside the central K×K block of each image resized to --size (the paper's "
        "Table 4 protocol) and, with --run, of the feature maps entering each SSTM; mean ± sd and the "
        "smallest K reaching the threshold. Writes spectral.md/.json/.png into --out.",
    )
    parser.add_argument("--data", required=True, type=Path, help="dataset folder")
    parser.add_argument("--run", type=Path, help="a trained S2M-Net run folder (features at each SSTM)")
    parser.add_argument("--ks", type=_int_list, default=list(DEFAULT_KS), help="block sizes (%(default)s)")
    parser.add_argument("--size", type=int, default=352, help="resize images to this square size (352)")
    parser.add_argument(
        "--dc",
        choices=("include", "exclude", "both"),
        default="both",
        help="count the zero-frequency bin, leave it out, or report both (default both)",
    )
    parser.add_argument(
        "--threshold", type=float, default=PAPER_THRESHOLD, help="energy share to reach (paper: 0.93)"
    )
    parser.add_argument("--limit", type=int, help="use only the first N images")
    parser.add_argument("--device", default="auto", help="device for the run's model (default auto)")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.set_defaults(handler=_cmd_spectral)


def _cmd_spectral(args: argparse.Namespace) -> int:
    from s2mnet.bench.spectral import run_spectral

    if not args.data.is_dir():
        raise S2MError(f"{args.data}: dataset folder not found")
    if args.run is not None and not (args.run / "run.json").is_file():
        raise S2MError(f"{args.run}: not an s2m run folder (no run.json)")
    check_ranges(args, {"threshold": (0.0, 1.0, False), "size": (4, 16_384, True), "limit": (1, 10**9, True)})
    run_spectral(
        args.data,
        args.out,
        run=args.run,
        ks=args.ks,
        size=args.size,
        dc=args.dc,
        threshold=args.threshold,
        limit=args.limit,
        device=args.device,
        command=args.command_line,
    )
    return 0


def _add_ablation(commands: argparse._SubParsersAction) -> None:
    from s2mnet.bench.ablation.arms import ARMS, DEFAULT_OTHER_SEEDS, DEFAULT_SEEDS

    parser = commands.add_parser(
        "ablation",
        help="train arms × seeds to convergence on one split, run-level statistics against 'paper'",
        description="Train every arm with its seeds under the same budget and split until the validation "
        "Dice plateaus (or a cap), evaluate on the held-out test split, and compare each arm with 'paper' "
        "with the training run as the unit: hierarchical bootstrap CI, paired t-test (Holm), TOST. "
        "Resumable: finished runs are kept in OUT/results.jsonl and skipped (docs/bench.md). "
        f"Arms: {', '.join(ARMS)}.",
    )
    parser.add_argument(
        "--study",
        type=Path,
        help="a declared study folder (its study.json fixes data, arms, seeds or folds and the protocol); "
        "runs what results.jsonl lacks; --arms/--seeds/--folds select a subset, protocol flags are refused",
    )
    parser.add_argument("--data", type=Path, help="dataset folder (not needed with --report-only)")
    parser.add_argument("--out", type=Path, help="output folder (results, runs, report); not with --study")
    parser.add_argument(
        "--arms",
        "--variants",
        dest="arms",
        help="all, core or a comma list ('paper' is added; default all); with --study a subset of its arms",
    )
    parser.add_argument(
        "--seeds",
        type=_int_list,
        help=f"core seeds, ≥ 5 for a study (default {','.join(map(str, DEFAULT_SEEDS))}); paper_aa uses "
        "them + 10000; with --study a subset of its seeds",
    )
    parser.add_argument(
        "--folds", type=_int_list, help="with a cross-validation --study: a subset of its folds"
    )
    parser.add_argument(
        "--other-seeds",
        type=int,
        help=f"how many of --seeds the non-core arms use ({DEFAULT_OTHER_SEEDS})",
    )
    parser.add_argument(
        "--splits", type=Path, help="split file to use (default: made once with --split-seed)"
    )
    parser.add_argument("--split-seed", type=int, help="seed of the split, not of training (0)")
    parser.add_argument("--jobs", type=int, default=1, help="trainings at once, in subprocesses (default 1)")
    parser.add_argument(
        "--threads", type=int, help="CPU threads per training (default: the cores divided among --jobs)"
    )
    parser.add_argument("--device", help="auto, cpu, cuda (default auto)")
    parser.add_argument("--amp", choices=("none", "bf16", "fp16"), help="mixed precision (default none)")
    parser.add_argument("--workers", type=int, help="data-loading processes per training")
    parser.add_argument(
        "--time-limit", type=float, metavar="MINUTES", help="per run, a safety stop (the curve decides)"
    )
    convergence = parser.add_argument_group("convergence (identical for every run)")
    cap = convergence.add_mutually_exclusive_group()
    cap.add_argument("--max-epochs", type=int, help="cap in epochs (default: the plan's epochs)")
    cap.add_argument(
        "--max-steps", type=int, help="cap in optimiser steps (needs --samples-per-epoch and --batch-size)"
    )
    floor = convergence.add_mutually_exclusive_group()
    floor.add_argument("--min-epochs", type=int, help="early stopping never stops a run before this epoch")
    floor.add_argument(
        "--min-steps", type=int, help="the same in steps (needs --samples-per-epoch and --batch-size)"
    )
    convergence.add_argument("--val-every", type=int, help="validate every N epochs (1)")
    convergence.add_argument(
        "--patience", type=int, help="validations without improvement that stop a run (5)"
    )
    convergence.add_argument("--min-delta", type=float, help="plateau: no gain above this in Dice (0.005)")
    convergence.add_argument("--lr", type=float, help="learning rate (default: the recipe's)")
    budget = parser.add_argument_group("budget, identical for every run (plan overrides of s2m train)")
    budget.add_argument("--size", type=int)
    budget.add_argument("--patch-size", type=int)
    budget.add_argument("--batch-size", type=int)
    budget.add_argument("--samples-per-epoch", type=int, help="samples per (virtual) epoch")
    budget.add_argument(
        "--plan", action="append", default=[], metavar="KEY=VALUE", help="any other plan key (JSON value)"
    )
    parser.add_argument(
        "--drop-weights",
        action="store_true",
        help="delete each run's *.safetensors after its evaluation (results.jsonl keeps every number)",
    )
    parser.add_argument("--report-only", action="store_true", help="rebuild the report from results.jsonl")
    parser.set_defaults(handler=_cmd_ablation)


#: Flags that fix what a run computes: with ``--study`` the declaration does, and they are refused.
PROTOCOL_FLAGS = (
    "data", "out", "other_seeds", "splits", "split_seed", "threads", "device", "amp", "time_limit",
    "max_epochs", "max_steps", "min_epochs", "min_steps", "val_every", "patience", "min_delta", "lr",
    "size", "patch_size", "batch_size", "samples_per_epoch", "plan",
)  # fmt: skip

#: Numeric flags of ``bench ablation`` (finite, in range; checked before any training).
ABLATION_RANGES: dict[str, Range] = {
    "time_limit": (0.0, 1e9, False),
    "min_delta": (0.0, 1.0, True),
    "lr": (0.0, 10.0, False),
    "jobs": (1, 256, True),
    "threads": (1, 4096, True),
    "workers": (0, 256, True),
    "val_every": (1, 100_000, True),
    "patience": (1, 100_000, True),
}


def _cmd_ablation(args: argparse.Namespace) -> int:
    from s2mnet.bench.ablation import AblationConfig, epochs_for_steps, parse_arms, run_ablation, write_report
    from s2mnet.bench.ablation.arms import DEFAULT_OTHER_SEEDS, DEFAULT_SEEDS

    check_ranges(args, ABLATION_RANGES)
    if args.study is not None:
        return _cmd_study(args)
    if args.out is None:
        raise S2MError("--out (or --study DIR) is required")
    if args.folds is not None:
        raise S2MError("--folds selects folds of a cross-validation --study")
    if args.report_only:
        write_report(args.out, args.command_line)
        print(f"report rebuilt: {args.out / 'ablation.md'}")
        return 0
    if args.data is None:
        raise S2MError("--data is required (except with --report-only)")
    plan: dict[str, Any] = {}
    limits = ("max_epochs", "max_steps", "min_epochs", "min_steps")
    for key in ("size", "patch_size", "batch_size", "samples_per_epoch", *limits):
        value = getattr(args, key)
        if value is not None and value < 1:
            raise S2MError(f"--{key.replace('_', '-')} {value}: must be a positive integer")
        if value is not None and key not in limits:
            plan[key] = value
    for pair in args.plan:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise S2MError(f"--plan {pair}: expected KEY=VALUE")
        try:
            plan[key] = json.loads(value)
        except (json.JSONDecodeError, RecursionError):
            plan[key] = value
    if "epochs" in plan:
        raise S2MError("--plan epochs=...: use --max-epochs or --max-steps (the cap of the convergence rule)")

    def in_epochs(epochs: int | None, steps: int | None, flag: str) -> int | None:
        if steps is None:
            return epochs
        if not plan.get("samples_per_epoch") or not plan.get("batch_size"):
            raise S2MError(f"{flag} needs --samples-per-epoch and --batch-size (steps per epoch)")
        return epochs_for_steps(steps, int(plan["samples_per_epoch"]), int(plan["batch_size"]))

    max_epochs = in_epochs(args.max_epochs, args.max_steps, "--max-steps")
    min_epochs = in_epochs(args.min_epochs, args.min_steps, "--min-steps")
    if min_epochs is not None and max_epochs is not None and min_epochs > max_epochs:
        raise S2MError(f"--min-steps/--min-epochs: {min_epochs} epochs is above the cap ({max_epochs})")
    run_ablation(
        AblationConfig(
            data=args.data,
            out=args.out,
            arms=parse_arms(args.arms or "all"),
            seeds=list(dict.fromkeys(args.seeds or DEFAULT_SEEDS)),
            other_seeds=DEFAULT_OTHER_SEEDS if args.other_seeds is None else args.other_seeds,
            plan=plan,
            max_epochs=max_epochs,
            min_epochs=min_epochs,
            patience=5 if args.patience is None else args.patience,
            val_every=args.val_every or 1,
            min_delta=0.005 if args.min_delta is None else args.min_delta,
            lr=args.lr,
            splits=args.splits,
            split_seed=args.split_seed or 0,
            device=args.device or "auto",
            jobs=args.jobs,
            threads=args.threads,
            amp=args.amp or "none",
            workers=args.workers,
            time_limit_s=None if args.time_limit is None else 60.0 * args.time_limit,
            drop_weights=args.drop_weights,
            command=args.command_line,
        )
    )
    return 0


def _cmd_study(args: argparse.Namespace) -> int:
    """``--study DIR``: run the declared runs that are missing (or rebuild the report)."""
    from s2mnet.bench.ablation import run_study, write_report
    from s2mnet.bench.ablation.study import is_cv, load_study

    given = [name for name in PROTOCOL_FLAGS if getattr(args, name) not in (None, [], False)]
    if given:
        flag = "--" + given[0].replace("_", "-")
        raise S2MError(
            f"{flag}: the protocol of {args.study} is fixed by its study.json; a changed protocol is a new "
            "study in a new folder"
        )
    study = load_study(args.study)
    if args.report_only:
        write_report(args.study, args.command_line)
        print(f"report rebuilt: {args.study / 'ablation.md'}")
        return 0
    if (args.folds is not None and not is_cv(study)) or (args.seeds is not None and is_cv(study)):
        raise S2MError(f"{args.study}: select {'--folds' if is_cv(study) else '--seeds'} of this study")
    arms = None if args.arms is None else [a.strip() for a in args.arms.split(",") if a.strip()]
    run_study(
        args.study,
        arms=arms,
        replicates=args.folds if is_cv(study) else args.seeds,
        run={
            "jobs": args.jobs,
            "workers": args.workers,
            "drop_weights": args.drop_weights,
            "command": args.command_line,
        },
    )
    return 0
