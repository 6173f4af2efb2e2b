"""``s2m demo``: synthetic data → train S2M-Net with MASL → evaluate → report, in minutes on a CPU.

The synthetic set (:func:`s2mnet.data.make_synthetic_dataset`) mixes compact blobs, thin branching tubes
and irregular shapes on textured, unevenly lit, noisy backgrounds, so that MASL's morphology descriptors
differ between images. The default budget (:data:`DEMO_DEFAULTS`) was chosen to finish within 5 minutes on
2 CPU cores and to reach a held-out Dice ≥ 0.80 (docs/tool.md gives the measured numbers); a time limit
stops training early on a slower machine, the rest of the demo still runs.

Output folder ``OUT``:

* ``demo.json``: what was run and the headline numbers (written first, so ``--overwrite`` recognises it);
* ``data/``: the synthetic images and masks;
* ``run/``: the training run (``run.json``, checkpoints, ``train_log.csv``, ``curves.png``, TensorBoard);
* ``metrics.json``: the held-out evaluation (top-level ``dice`` = mean per-image Dice), as ``s2m evaluate``;
* ``evaluation/``: per-case CSV, overlays of the best and worst cases, ``report.md``;
* ``report.md``: a one-page summary linking all of the above.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from s2mnet.engine.outputs import prepare_output_dir
from s2mnet.io_utils import atomic_write_json, atomic_write_text

DEMO_MARKER = "demo.json"
DEMO_FILES = (DEMO_MARKER, "data", "run", "metrics.json", "evaluation", "report.md")


@dataclass
class DemoConfig:
    """The demo's budget; every field can be set from ``s2m demo`` flags.

    Attributes:
        out: output folder (new or empty; ``overwrite`` replaces an earlier demo there).
        cases: synthetic image/mask pairs (split into train / val / test by :func:`s2mnet.data.make_splits`).
        size: image side in pixels; the network trains and predicts at this size.
        epochs: training epochs (virtual epochs of ``samples_per_epoch`` draws).
        samples_per_epoch: images drawn per epoch.
        batch_size: batch size.
        lr: peak learning rate (short CPU budget: 1e-3, see :mod:`s2mnet.engine.train`).
        model: model name.
        loss: loss name.
        time_limit_s: optional safety limit on the training wall time (``None``: the budget is the fixed
            number of steps ``epochs × samples_per_epoch / batch_size``, so the result does not depend on
            the machine's load; about 2 minutes on a quiet 2-core CPU).
        seed: seed of the data, the split and the training.
        device: ``auto``, ``cpu`` or ``cuda``.
    """

    out: str | Path
    cases: int = 90
    size: int = 96
    epochs: int = 20
    samples_per_epoch: int = 64
    batch_size: int = 8
    lr: float = 1e-3
    model: str = "s2mnet"
    loss: str = "masl"
    time_limit_s: float | None = None
    seed: int = 0
    device: str = "auto"
    overwrite: bool = False
    quiet: bool = False


DEMO_DEFAULTS = DemoConfig(out="demo_out")


def run_demo(config: DemoConfig) -> dict[str, Any]:
    """Run the whole demo; returns ``demo.json``'s content (``dice``, ``wall_s``, paths...)."""
    from s2mnet.data.synthetic import make_synthetic_dataset
    from s2mnet.engine.config import TrainConfig
    from s2mnet.engine.device import resolve_device
    from s2mnet.engine.train import train
    from s2mnet.inference.evaluate import evaluate_run

    start = time.perf_counter()
    say = (lambda message: None) if config.quiet else print
    device = resolve_device(config.device)
    out = prepare_output_dir(
        config.out, overwrite=config.overwrite, marker=DEMO_MARKER, owned=DEMO_FILES, what="demo"
    )
    record: dict[str, Any] = {
        "status": "running",
        "config": {
            key: str(value) if isinstance(value, Path) else value for key, value in asdict(config).items()
        },
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    atomic_write_json(out / DEMO_MARKER, record)

    say(f"s2m demo: writing {config.cases} synthetic {config.size}x{config.size} images to {out / 'data'}")
    make_synthetic_dataset(out / "data", n=config.cases, size=config.size, seed=config.seed)
    data_s = time.perf_counter() - start

    summary = train(
        TrainConfig(
            data=out / "data",
            out=out / "run",
            model=config.model,
            loss=config.loss,
            seed=config.seed,
            device=str(device),
            plan_overrides={
                "mode": "resize",
                "size": config.size,
                "epochs": config.epochs,
                "samples_per_epoch": config.samples_per_epoch,
                "batch_size": config.batch_size,
            },
            lr=config.lr,
            time_limit_s=None if config.time_limit_s is None else max(1.0, config.time_limit_s - data_s),
            quiet=config.quiet,
            command=["s2m", "demo", "--out", str(config.out)],
        )
    )
    train_s = time.perf_counter() - start - data_s

    say("evaluating the best checkpoint on the held-out test split")
    metrics = evaluate_run(
        out / "run", split="test", json_path=out / "metrics.json", out_dir=out / "evaluation", device=device
    )
    wall_s = time.perf_counter() - start
    record.update(
        status="finished",
        dice=metrics["dice"],
        dice_std=metrics.get("dice_std"),
        n_test=metrics.get("n_cases"),
        best_val_dice=summary["best_dice"],
        best_epoch=summary["best_epoch"],
        epochs_run=summary["epochs_run"],
        stopped_by_time=summary["stopped_by_time"],
        data_s=round(data_s, 1),
        train_s=round(train_s, 1),
        wall_s=round(wall_s, 1),
        device=str(device),
    )
    atomic_write_json(out / DEMO_MARKER, record)
    atomic_write_text(out / "report.md", _report(record, metrics))
    say(
        f"demo done in {wall_s:.0f} s: held-out Dice {metrics['dice']:.4f} over {metrics.get('n_cases')} "
        f"images (best validation Dice {summary['best_dice']:.4f} at epoch {summary['best_epoch']})\n"
        f"  metrics: {out / 'metrics.json'}\n  report:  {out / 'report.md'}\n"
        f"  curves:  {out / 'run' / 'curves.png'}\n  overlays: {out / 'evaluation' / 'overlays'}"
    )
    return record


def _report(record: dict[str, Any], metrics: dict[str, Any]) -> str:
    """The demo's one-page Markdown summary (relative links, so the folder can be moved)."""
    config = record["config"]
    rows = "\n".join(
        f"| {name} | {metrics[name]:.4f} ± {metrics.get(name + '_std', 0.0):.4f} |"
        for name in ("dice", "iou", "precision", "recall", "hd95", "assd")
        if isinstance(metrics.get(name), int | float)
    )
    return f"""# s2m demo

Synthetic dataset: {config["cases"]} images of {config["size"]}×{config["size"]} px (blobs, thin branching
tubes, irregular shapes on textured backgrounds), seed {config["seed"]}. Model `{config["model"]}`, loss
`{config["loss"]}`, {record["epochs_run"]} epochs of {config["samples_per_epoch"]} samples (batch
{config["batch_size"]}, lr {config["lr"]}) on {record["device"]}; best validation Dice
{record["best_val_dice"]:.4f} at epoch {record["best_epoch"]}. Wall time {record["wall_s"]:.0f} s
(data {record["data_s"]:.0f} s, training {record["train_s"]:.0f} s, evaluation the rest).

Held-out test split ({metrics.get("n_cases")} images), per-image mean ± std:

| metric | value |
|---|---|
{rows}

- Training curves: ![curves](run/curves.png)
- Per-case metrics, best and worst overlays: [evaluation/report.md](evaluation/report.md)
- Run folder (load it with `s2mnet.load("run")`): [run/](run/)
"""
