"""`paper` against `no_sstm` at the paper's DRIVE protocol on a GPU, for as many seeds as a budget allows.

The paper's protocol (docs/presets.md, `s2m reproduce drive --scale paper`): 256² native-resolution
patches, batch 8, virtual epochs of 30 × the 16 training images (480 patches, 60 steps), 150 epochs, lr
1e-4 with 10 warm-up epochs and a cosine decay, early stopping with patience 50, sliding-window
inference with overlap 0.5. The study is declared in ``OUT/study.json`` before its first run (seeds 42,
123, 456, 789, 1011; arms ``paper`` and ``no_sstm``, paired by seed) and run with
:func:`s2mnet.bench.ablation.declared.run_study`, one seed (both arms) at a time, while the budget left
covers another pair at the pace measured so far. Records are in the study format (``results.jsonl``; the
card's name is in each record's ``machine``). Resumable: finished runs are skipped.

Usage (from the repository root)::

    python benchmarks/gpu_paper_drive.py --budget-min 12            # on a CUDA machine
    python benchmarks/gpu_paper_drive.py --tiny --out /tmp/gpu_tiny  # a few seconds on a CPU: checks the path

``--epochs`` shortens the protocol (the cap and the cosine schedule together; it is part of the
declaration, so another value needs another ``--out``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from s2mnet.bench.ablation.declared import run_study  # noqa: E402
from s2mnet.bench.ablation.records import read_results  # noqa: E402
from s2mnet.bench.ablation.study import STUDY  # noqa: E402

SEEDS = [42, 123, 456, 789, 1011]
ARMS = ["paper", "no_sstm"]


def declaration(data: str, epochs: int, tiny: bool) -> dict:
    """The study: the paper's DRIVE protocol (or, with ``tiny``, a CPU check of a few steps)."""
    if tiny:
        plan = {"patch_size": 32, "batch_size": 2, "samples_per_epoch": 4, "overlap": 0.25}
        protocol = {
            "device": "cpu",
            "threads": 1,
            "lr": 1e-3,
            "warmup_epochs": 0,
            "amp": "none",
            "patience": 1,
        }
    else:
        plan = {"patch_size": 256, "batch_size": 8, "samples_per_epoch": 480, "overlap": 0.5}
        protocol = {
            "device": "cuda",
            "threads": None,
            "lr": 1e-4,
            "warmup_epochs": 10,
            "amp": "bf16",
            "patience": 50,
        }
    steps = epochs * plan["samples_per_epoch"] // plan["batch_size"]
    return {
        "name": "ablation_DRIVE_gpu_paper" + ("_tiny" if tiny else ""),
        "declared": "before its first run (written by benchmarks/gpu_paper_drive.py)",
        "data": data,
        "arms": ARMS,
        "seeds": SEEDS,
        "protocol": {
            **protocol,
            "plan": plan,
            "max_steps": steps,
            "min_steps": None,
            "val_every": 1,
            "min_delta": 0.005,
        },
        "arm_scale": {},
        "primary_metric": "dice (mean test Dice of a run over the 20 published test images)",
        "equivalence_margin": 0.01,
        "paper_effects": {"no_sstm": -0.063},
        "budget": f"{steps} steps of {plan['patch_size']}² patches" + (" (CPU check)" if tiny else ", GPU"),
        "reference": "paper",
        "aa_arm": "paper_aa",
        "aa_seed_offset": 10000,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", default="../shared/data/DRIVE", help="DRIVE, relative to the repository root"
    )
    parser.add_argument("--out", type=Path, default=Path("docs/results/ablation_DRIVE_gpu_paper"))
    parser.add_argument("--budget-min", type=float, default=12.0, help="wall-clock minutes for training")
    parser.add_argument("--epochs", type=int, default=150, help="virtual epochs (the paper: 150)")
    parser.add_argument("--tiny", action="store_true", help="a CPU check: 32² patches, 2 epochs of 4 samples")
    args = parser.parse_args(argv)
    declared = declaration(args.data, 2 if args.tiny else args.epochs, args.tiny)
    path = args.out / STUDY
    if path.is_file():
        if json.loads(path.read_text(encoding="utf-8")) != declared:
            parser.error(f"{path}: declared with another protocol; use a new --out")
    else:
        args.out.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(declared, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    deadline = time.monotonic() + 60.0 * args.budget_min
    for seed in SEEDS:
        done = {(r["variant"], int(r["seed"])) for r in read_results(args.out)}
        if all((name, seed) in done for name in ARMS):
            continue
        pair_s = [
            sum(r.get("wall_s", 0.0) for r in read_results(args.out) if int(r["seed"]) == s) for s in SEEDS
        ]
        pace = max((p for p in pair_s if p), default=0.0)
        if pace and time.monotonic() + 1.1 * pace > deadline:
            print(f"stopping before seed {seed}: a pair takes ≈ {pace:.0f} s, the budget has less left")
            break
        run_study(args.out, arms=ARMS, replicates=[seed], run={"drop_weights": True})
        if time.monotonic() > deadline:
            break
    records = read_results(args.out)
    machines = sorted({r["machine"]["description"] for r in records if r.get("machine")})
    print(f"{len(records)} runs in {args.out / 'results.jsonl'}; machine(s): {'; '.join(machines)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
