"""Cost of MASL next to the model's own training step (issue 3, goal: MASL ≤ 15 % of a training step).

Measures, on the same device, the median wall time of
  (a) the morphology descriptors alone (no gradient),
  (b) MASL forward + backward, descriptors included, on logits/targets of shape (B, 1, S, S),
  (c) the model's forward + backward on (B, 3, S, S) (``create_model(--model)``; skipped if unavailable),
and reports MASL's share of a training step, (b) / ((b) + (c)), and the plain ratio (b) / (c).

Usage::

    python benchmarks/masl_cost.py                 # batch 8 at 352², as in the paper
    python benchmarks/masl_cost.py --quick         # batch 2 at 128², a few seconds
    python benchmarks/masl_cost.py --device cuda --out masl_cost.json

The targets are realistic masks (disks and thin lines), not noise; the cost of every operation in MASL is
independent of the mask content anyway (dense, vectorised).
"""

from __future__ import annotations

import argparse

import torch

from s2mnet.bench.efficiency import median_seconds, synthetic_masks
from s2mnet.losses import create_loss, morphology_descriptors


def run(batch: int, size: int, model_name: str, loss_name: str, device: torch.device, repeats: int) -> dict:
    """Time descriptors, MASL and the model; return the numbers as a dict."""
    torch.manual_seed(0)
    masks = synthetic_masks(batch, size, device)
    logits = torch.randn(batch, 1, size, size, device=device, requires_grad=True)
    loss_fn = create_loss(loss_name).to(device)

    def masl_step() -> None:
        logits.grad = None
        loss_fn(logits, masks).backward()

    result = {
        "device": str(device),
        "threads": torch.get_num_threads(),
        "batch": batch,
        "size": size,
        "loss": loss_name,
        "descriptors_s": median_seconds(lambda: morphology_descriptors(masks), device, repeats)[0],
        "masl_fwd_bwd_s": median_seconds(masl_step, device, repeats)[0],
    }
    try:
        from s2mnet.models import create_model

        model = create_model(model_name, in_channels=3, num_classes=1).to(device).train()
    except ImportError as error:  # the models package is optional for this benchmark
        result["model"] = f"unavailable ({error})"
        return result
    images = torch.randn(batch, 3, size, size, device=device)

    def model_step() -> None:
        model.zero_grad(set_to_none=True)
        model(images).float().mean().backward()

    model_seconds = median_seconds(model_step, device, repeats)[0]
    masl_seconds = result["masl_fwd_bwd_s"]
    result.update(
        model=model_name,
        model_fwd_bwd_s=model_seconds,
        masl_over_model=masl_seconds / model_seconds,
        masl_share_of_step=masl_seconds / (masl_seconds + model_seconds),
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="batch 2 at 128² (a smoke run)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=352)
    parser.add_argument("--model", default="s2mnet")
    parser.add_argument("--loss", default="masl")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--out", default=None, help="also write the numbers to this JSON file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    batch, size = (2, 128) if args.quick else (args.batch, args.size)
    result = run(batch, size, args.model, args.loss, torch.device(args.device), args.repeats)
    for key, value in result.items():
        print(f"{key:>20}: {value:.4f}" if isinstance(value, float) else f"{key:>20}: {value}")
    if args.out:
        from s2mnet.io_utils import atomic_write_json

        atomic_write_json(args.out, result)


if __name__ == "__main__":
    main()
