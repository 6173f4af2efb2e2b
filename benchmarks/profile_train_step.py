"""Where a training step of ``s2m train`` spends its time on the CPU: torch.profiler, grouped by operator.

Times the same step as ``s2m bench efficiency`` (a real ``Trainer``, :mod:`s2mnet.bench.efficiency.training`)
for a model of the registry (default S2M-Net with MASL) and prints the operators by self CPU time, and the
time per module type of the forward pass (MRF-SE, SSTM, BFD...).

    python benchmarks/profile_train_step.py --model s2mnet --size 256 --batch 4 --threads 2 [--channels-last]
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="s2mnet")
    parser.add_argument("--loss", default="masl")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3, help="profiled steps (after 2 warm-up steps)")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()

    from s2mnet.bench.efficiency.training import make_trainer
    from s2mnet.losses import create_loss
    from s2mnet.models import create_model

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device("cpu")
    model = create_model(args.model, in_channels=3, num_classes=1)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    loss_fn = create_loss(args.loss, num_classes=1)
    images = torch.randn(args.batch, 3, args.size, args.size)
    masks = (torch.rand(args.batch, 1, args.size, args.size) > 0.8).float()
    trainer = make_trainer(model, loss_fn, images, masks, device, channels_last=args.channels_last)
    for _ in range(2):
        trainer.train_epoch()
    begin = time.perf_counter()
    for _ in range(args.steps):
        trainer.train_epoch()
    per_step = (time.perf_counter() - begin) / args.steps
    print(
        f"{args.model} {args.size}² batch {args.batch}, {args.threads} threads: {per_step * 1e3:.0f} ms/step"
    )

    module_time: dict[str, float] = defaultdict(float)
    starts: dict[int, float] = {}

    def before(module: torch.nn.Module, _inputs: object) -> None:
        starts[id(module)] = time.perf_counter()

    def after(module: torch.nn.Module, _inputs: object, _output: object) -> None:
        module_time[type(module).__name__] += time.perf_counter() - starts.pop(
            id(module), time.perf_counter()
        )

    watched = {"MRFSE", "SSTM", "BFDStage", "PlainDecoder", "EncoderStage", "SpectralBranch"}
    handles = [
        handle
        for module in model.modules()
        if type(module).__name__ in watched
        for handle in (module.register_forward_pre_hook(before), module.register_forward_hook(after))
    ]
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(args.steps):
            trainer.train_epoch()
    for handle in handles:
        handle.remove()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.top))
    print("forward time per module type (ms per step, nested modules counted in their parents too):")
    for name, seconds in sorted(module_time.items(), key=lambda item: -item[1]):
        print(f"  {name:<16} {seconds / args.steps * 1e3:8.1f}")


if __name__ == "__main__":
    main()
