"""Is an early low validation Dice the weights or BatchNorm's running statistics? One diagnostic run.

Trains a model with the engine's pieces as ``s2m train`` assembles them (plan from the fingerprint and the
recipe, :class:`~s2mnet.engine.trainer.Trainer`, the validator of ``s2m train``) and after every epoch
validates it twice: as is (BatchNorm in eval mode uses its running statistics, which move with momentum
0.1 from their initial mean 0 / variance 1), and on a copy whose BatchNorm statistics were re-estimated
from ``--calibration-batches`` training batches (``momentum=None``: an exact average; no weight changes,
no gradient). A large gap early that closes later says that the low early validation Dice is the running
statistics lagging behind the weights, not what the weights have learnt.

    python benchmarks/early_validation.py --epochs 6 --out docs/results/learning_curves/early_bn_demo.json
    python benchmarks/early_validation.py --data ../shared/data/DRIVE --patch-size 128 --epochs 8 \\
        --out docs/results/learning_curves/early_bn_drive.json
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
from pathlib import Path
from typing import Any


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="dataset folder (default: the demo's synthetic data)")
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    parser.add_argument("--model", default="s2mnet")
    parser.add_argument("--loss", default="masl")
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--patch-size", type=int)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--samples-per-epoch", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--warmup-epochs", type=int, default=None, help="default: the recipe's")
    parser.add_argument("--calibration-batches", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int)
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as scratch:
        data = args.data
        if data is None:
            from s2mnet.data.synthetic import make_synthetic_dataset

            data = make_synthetic_dataset(Path(scratch) / "data", n=90, size=96, seed=0)
        rows = _run(data, args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "epochs": rows}, indent=1)
    )
    for row in rows:
        print(
            f"epoch {row['epoch']:>2} step {row['step']:>4}: val Dice {row['val_dice']:.3f} as trained, "
            f"{row['val_dice_recalibrated']:.3f} with re-estimated BatchNorm statistics"
        )
    return 0


def _run(data: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    import torch
    from torch.utils.data import DataLoader

    from s2mnet.data.dataset import SegmentationDataset
    from s2mnet.data.discover import discover
    from s2mnet.data.splits import make_splits
    from s2mnet.engine.config import TrainConfig
    from s2mnet.engine.device import seed_everything
    from s2mnet.engine.train import _make_validator
    from s2mnet.engine.trainer import Trainer
    from s2mnet.losses import create_loss
    from s2mnet.models import create_model
    from s2mnet.planning import add_training_recipe, fingerprint, make_plan

    overrides: dict[str, Any] = {
        "epochs": args.epochs,
        "samples_per_epoch": args.samples_per_epoch,
        "batch_size": args.batch_size,
    }
    overrides.update(
        {"mode": "patch", "patch_size": args.patch_size}
        if args.patch_size
        else {"mode": "resize", "size": args.size}
    )
    index = discover(data)
    flags = TrainConfig(data=data, out="", warmup_epochs=args.warmup_epochs)
    plan = add_training_recipe(make_plan(fingerprint(index), device="cpu", overrides=overrides), flags)
    splits = make_splits(index, seed=args.seed)
    by_id = {case.case_id: case for case in index.cases}
    seed_everything(args.seed)
    device = torch.device("cpu")
    model = create_model(args.model, in_channels=plan["in_channels"], num_classes=plan["num_classes"])
    model = model.to(memory_format=torch.channels_last)
    loss = create_loss(args.loss, num_classes=plan["num_classes"])
    dataset = SegmentationDataset([by_id[c] for c in splits["train"]], plan, train=True, seed=args.seed)
    loader = DataLoader(
        dataset,
        batch_size=plan["batch_size"],
        shuffle=True,
        drop_last=True,
        generator=torch.Generator().manual_seed(args.seed),
    )
    validate = _make_validator([by_id[c] for c in splits["val"]], plan, device)
    trainer = Trainer(model, loss, plan, loader, validate, device, channels_last=True, seed=args.seed)
    rows = []
    for _ in range(args.epochs):
        trainer.train_epoch()
        recalibrated = _recalibrate(model, loader, args.calibration_batches)
        rows.append(
            {
                "epoch": trainer.epoch,
                "step": trainer.step,
                "lr": trainer.current_lr(),
                "val_dice": validate(model),
                "val_dice_recalibrated": validate(recalibrated),
            }
        )
    return rows


def _recalibrate(model: Any, loader: Any, batches: int) -> Any:
    """A copy of ``model`` whose BatchNorm running statistics are the exact average over ``batches``
    training batches (forward passes in train mode without gradients; the weights are not changed)."""
    import torch

    copied = copy.deepcopy(model)
    norms = [m for m in copied.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average
    copied.train()
    with torch.no_grad():
        for count, batch in enumerate(loader):
            if count == batches:
                break
            copied(batch["image"].to(memory_format=torch.channels_last))
    return copied.eval()


if __name__ == "__main__":
    raise SystemExit(main())
