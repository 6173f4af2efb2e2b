"""Learning curves of S2M-Net, U-Net and MONAI's UNet under one recipe, and the levers of S2M-Net's start.

Every configuration trains with `s2m train`'s engine (:func:`s2mnet.engine.train.train`) on the same data,
split and recipe (AdamW, warm-up + cosine, clipping; fixed epochs, no early stopping), validating every
epoch, for several seeds. Besides the three architectures (Dice-CE for all), S2M-Net is trained with
each suspected cause of a slow start changed one at a time: the loss (MASL vs Dice-CE), the warm-up,
the learning rate, the spectral mixer (SSTM off), and BatchNorm's running statistics (re-estimated before
each validation, ``precise_bn``). Per configuration the seconds of one training step
are timed here (:func:`s2mnet.engine.calibrate.time_training_step`, the code path of ``s2m train``), so
curves are shown against optimiser steps and against training seconds.

Writes ``OUT/curves.json`` (every run's curve), ``OUT/curves.md`` (mean validation Dice at fixed steps,
steps and seconds to reach a Dice threshold) and ``OUT/curves.png``. Resumable: runs already in
``curves.json`` are skipped. The curves themselves do not depend on the machine's load; the step times do:
``--retime`` times every configuration again (run it on a quiet machine) and rewrites the report.
Without ``--data`` the demo's synthetic data set is generated (90 cases, 96², seed 0) in a temporary
folder.

    python benchmarks/learning_curves.py --out docs/results/learning_curves --threads 1
    python benchmarks/learning_curves.py --data ../shared/data/BUSI-100 --size 160 --epochs 30 \\
        --configs s2mnet_masl,s2mnet_dicece,monai_unet_dicece --out runs/curves_busi
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

#: name → (model, loss, TrainConfig changes); the first is the reference of the comparisons.
CONFIGS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "s2mnet_masl": ("s2mnet", "masl", {}),
    "s2mnet_dicece": ("s2mnet", "dicece", {}),
    "monai_unet_dicece": ("monai_unet", "dicece", {}),
    "unet_dicece": ("unet", "dicece", {}),
    "s2mnet_masl_no_warmup": ("s2mnet", "masl", {"warmup_epochs": 0}),
    "s2mnet_masl_lr3e-3": ("s2mnet", "masl", {"lr": 3e-3}),
    "s2mnet_none_masl": ("s2mnet_none", "masl", {}),
    "s2mnet_masl_precise_bn": ("s2mnet", "masl", {"precise_bn": 8}),
}
MARKS = (8, 16, 40, 80, 160, 320)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="dataset folder (default: the demo's synthetic data)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma list of " + ", ".join(CONFIGS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--size", type=int, default=96, help="resize-mode training size")
    parser.add_argument("--patch-size", type=int, help="patch mode with this patch size instead")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--samples-per-epoch", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--threshold", type=float, default=0.8, help="validation Dice to reach")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--retime",
        action="store_true",
        help="time every configuration's step again (on a quiet machine) and rewrite the report; no training",
    )
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    store = args.out / "curves.json"
    runs: list[dict[str, Any]] = json.loads(store.read_text()) if store.is_file() else []
    done = {(r["config"], r["seed"]) for r in runs}
    names = [n.strip() for n in args.configs.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        parser.error(f"unknown configurations {unknown} (known: {', '.join(CONFIGS)})")
    seeds = [int(s) for s in args.seeds.split(",")]
    with tempfile.TemporaryDirectory() as scratch:
        data = args.data or _demo_data(Path(scratch) / "data")
        if args.retime:
            for name in {r["config"] for r in runs}:
                model, loss, _ = CONFIGS[name]
                plan = next(r["plan"] for r in runs if r["config"] == name)
                step_s = _step_seconds(data, model, loss, plan)
                print(f"{name}: {step_s:.3f} s/step", flush=True)
                for record in runs:
                    if record["config"] == name:
                        record["step_s"] = step_s
            store.write_text(json.dumps(runs, indent=1))
            seeds = []
        for seed in seeds:
            for name in names:
                if (name, seed) in done:
                    continue
                record = _run(name, seed, data, Path(scratch) / f"{name}_s{seed}", args)
                runs.append(record)
                store.write_text(json.dumps(runs, indent=1))
                print(f"{name} seed {seed}: final val Dice {record['curve'][-1][1]:.4f}, "
                      f"{record['step_s']:.3f} s/step", flush=True)  # fmt: skip
    command = shlex.join(["python", *sys.argv])
    (args.out / "curves.md").write_text(_report(runs, names, args.threshold, command), encoding="utf-8")
    _plot(runs, names, args.out / "curves.png")
    print(f"written: {args.out / 'curves.md'}, {args.out / 'curves.png'}")
    return 0


def _demo_data(folder: Path) -> Path:
    from s2mnet.data.synthetic import make_synthetic_dataset

    return make_synthetic_dataset(folder, n=90, size=96, seed=0)


def _run(name: str, seed: int, data: Path, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Train one configuration, time its step; the curve is ``[[step, val_dice], ...]`` every epoch."""
    from s2mnet.engine.config import TrainConfig
    from s2mnet.engine.train import train

    model, loss, changes = CONFIGS[name]
    plan = {"epochs": args.epochs, "samples_per_epoch": args.samples_per_epoch, "batch_size": args.batch_size}
    if args.patch_size:
        plan.update(mode="patch", patch_size=args.patch_size)
    else:
        plan.update(mode="resize", size=args.size)
    config = TrainConfig(
        data=data,
        out=out,
        model=model,
        loss=loss,
        seed=seed,
        device="cpu",
        plan_overrides=plan,
        lr=args.lr,
        val_every=1,
        patience=0,
        quiet=True,
        tensorboard=False,
    )
    for key, value in changes.items():
        setattr(config, key, value)
    start = time.perf_counter()
    train(config)
    wall_s = time.perf_counter() - start
    with (out / "train_log.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    curve = [[int(float(r["step"])), float(r["val_dice"])] for r in rows if r.get("val_dice")]
    return {
        "config": name,
        "seed": seed,
        "model": model,
        "loss": loss,
        "changes": changes,
        "plan": plan,
        "lr": changes.get("lr", args.lr),
        "curve": curve,
        "step_s": _step_seconds(data, model, loss, plan),
        "wall_s": round(wall_s, 1),
    }


def _step_seconds(data: Path, model_name: str, loss_name: str, overrides: dict[str, Any]) -> float:
    """One training step of this configuration (median of 5), timed on the code path of ``s2m train``
    with the plan ``s2m train`` makes from ``overrides``."""
    import torch

    from s2mnet.data.dataset import SegmentationDataset
    from s2mnet.data.discover import discover
    from s2mnet.engine.calibrate import time_training_step
    from s2mnet.losses import create_loss
    from s2mnet.models import create_model
    from s2mnet.planning import add_training_recipe, fingerprint, make_plan

    index = discover(data)
    plan = add_training_recipe(make_plan(fingerprint(index), device="cpu", overrides=overrides))
    dataset = SegmentationDataset(index.cases, plan, train=True, seed=0)
    model = create_model(model_name, in_channels=plan["in_channels"], num_classes=plan["num_classes"])
    loss = create_loss(loss_name, num_classes=plan["num_classes"])
    model = model.to(memory_format=torch.channels_last)
    return time_training_step(model, loss, plan, dataset, torch.device("cpu"), steps=5)


def _mean_curve(runs: list[dict[str, Any]]) -> tuple[list[int], list[float]]:
    steps = [s for s, _ in runs[0]["curve"]]
    values = [sum(r["curve"][i][1] for r in runs) / len(runs) for i in range(len(steps))]
    return steps, values


def _first_reaching(curve: list[list[float]], threshold: float) -> int | None:
    return next((int(step) for step, dice in curve if dice >= threshold), None)


def _first_staying(curve: list[list[float]], threshold: float) -> int | None:
    """The first step from which the curve never drops below ``threshold`` again."""
    return next(
        (int(curve[i][0]) for i in range(len(curve)) if all(d >= threshold for _, d in curve[i:])), None
    )


def _report(runs: list[dict[str, Any]], names: list[str], threshold: float, command: str) -> str:
    by_name = {n: [r for r in runs if r["config"] == n] for n in names}
    by_name = {n: rs for n, rs in by_name.items() if rs}
    last = max(s for rs in by_name.values() for s, _ in rs[0]["curve"])
    marks = [m for m in MARKS if m <= last]
    head = " | ".join(f"step {m}" for m in marks)
    lines = [
        "# Learning curves under one recipe",
        "",
        f"- command: `{command}`",
        "- validation Dice (mean over seeds) after the given optimiser steps; steps / training seconds to "
        f"first reach validation Dice {threshold}, and to stay at or above it from then on (mean over the "
        "seeds that do; n = such seeds)",
        "- training seconds = steps × the configuration's step, timed on the code path of `s2m train`",
        "",
        f"| configuration | model | loss | change | seeds | s/step | {head} | steps to {threshold} | "
        f"seconds to {threshold} | steps to stay ≥ {threshold} | seconds to stay |",
        "|---|---|---|---|---:|---:|" + "---:|" * len(marks) + "---:|---:|---:|---:|",
    ]
    for name, rs in by_name.items():
        steps, values = _mean_curve(rs)
        at = [next((v for s, v in zip(steps, values, strict=True) if s >= m), float("nan")) for m in marks]
        reached = [s for s in (_first_reaching(r["curve"], threshold) for r in rs) if s is not None]
        step_s = sum(r["step_s"] for r in rs) / len(rs)
        to_steps = f"{sum(reached) / len(reached):.0f} (n={len(reached)})" if reached else "not reached"
        to_seconds = f"{step_s * sum(reached) / len(reached):.0f}" if reached else "—"
        stayed = [s for s in (_first_staying(r["curve"], threshold) for r in rs) if s is not None]
        stay_steps = f"{sum(stayed) / len(stayed):.0f} (n={len(stayed)})" if stayed else "never"
        stay_seconds = f"{step_s * sum(stayed) / len(stayed):.0f}" if stayed else "—"
        change = ", ".join(f"{k}={v}" for k, v in rs[0]["changes"].items()) or "—"
        lines.append(
            f"| {name} | {rs[0]['model']} | {rs[0]['loss']} | {change} | {len(rs)} | {step_s:.3f} | "
            + " | ".join(f"{v:.3f}" for v in at)
            + f" | {to_steps} | {to_seconds} | {stay_steps} | {stay_seconds} |"
        )
    return "\n".join(lines) + "\n"


def _plot(runs: list[dict[str, Any]], names: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (by_step, by_time) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name in names:
        rs = [r for r in runs if r["config"] == name]
        if not rs:
            continue
        steps, values = _mean_curve(rs)
        step_s = sum(r["step_s"] for r in rs) / len(rs)
        by_step.plot(steps, values, marker=".", label=name)
        by_time.plot([s * step_s for s in steps], values, marker=".", label=name)
    by_step.set(xlabel="optimiser steps", ylabel="validation Dice (mean over seeds)", ylim=(0, 1))
    by_time.set(xlabel="training seconds (steps × timed step)", ylim=(0, 1))
    by_step.legend(fontsize=8)
    for axis in (by_step, by_time):
        axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


if __name__ == "__main__":
    raise SystemExit(main())
