"""Issue 29's candidate rewrites, A/B on the CPU with interleaved timing (docs/speed.md, "Round two").

Each experiment alternates the plain and the rewritten computation ``--pairs`` times in one process and
reports the minimum and the median of the lower half of each (robust to a loaded machine). ``--clock cpu``
(default) times the process's CPU time, which at one thread is far less sensitive to other jobs than the
wall clock; use ``--clock wall`` on a quiet machine and at two threads (CPU time then also counts the
OpenMP threads' spin waits).

* ``depthwise``: the depthwise weight gradient of MRF-SE's stage 1 at 256², batch 4 (144 channels, 128²,
  channels-last) per kernel size: oneDNN's (``convolution_backward``) vs
  :func:`s2mnet.models.depthwise.depthwise_weight_grad`; and the forward + backward of one depthwise call
  over the three branches (3×3 and 5×5 zero-padded to 7×7, channel multiplier 3) vs three calls.
* ``conv1x1``: the whole ``Trainer`` step (256², batch 4, channels-last) with every stride-1 1×1
  convolution computed as ``F.linear`` on the NHWC view vs ``nn.Conv2d``.
* ``step``: the whole ``Trainer`` step with :class:`~s2mnet.models.depthwise.DepthwiseConv2d` vs plain
  ``nn.Conv2d`` depthwise convolutions.

    python benchmarks/speed_candidates.py depthwise|conv1x1|step [--threads 1] [--pairs 5] [--clock cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

CL = torch.channels_last


def ab(plain: Callable[[], object], new: Callable[[], object], pairs: int, clock: Callable[[], float]) -> str:
    """Interleaved timing of ``plain`` and ``new`` (one untimed call each first); a one-line summary."""
    plain(), new()
    times: dict[str, list[float]] = {"plain": [], "new": []}
    for _ in range(pairs):
        for key, call in (("plain", plain), ("new", new)):
            start = clock()
            call()
            times[key].append(clock() - start)

    def low(values: list[float]) -> float:
        return statistics.median(sorted(values)[: max(1, len(values) // 2)])

    a, b = times["plain"], times["new"]
    return (
        f"plain min {min(a) * 1e3:8.1f} low-median {low(a) * 1e3:8.1f} ms | new min {min(b) * 1e3:8.1f} "
        f"low-median {low(b) * 1e3:8.1f} ms | plain/new {low(a) / low(b):.2f}×"
    )


def depthwise(pairs: int, clock: Callable[[], float]) -> None:
    from s2mnet.models.depthwise import depthwise_weight_grad

    channels, side, batch = 144, 128, 4
    x = torch.randn(batch, channels, side, side).contiguous(memory_format=CL)
    grad = torch.randn_like(x)
    for k in (3, 5, 7):
        weight = torch.randn(channels, 1, k, k)

        def onednn(weight: torch.Tensor = weight, k: int = k) -> torch.Tensor:
            return torch.ops.aten.convolution_backward(
                grad, x, weight, None, [1, 1], [k // 2] * 2, [1, 1], False, [0, 0], channels,
                [False, True, False],
            )[1]  # fmt: skip

        def blocks(k: int = k) -> torch.Tensor:
            return depthwise_weight_grad(grad, x, (k, k))

        print(f"weight gradient {k}×{k}: {ab(onednn, blocks, pairs, clock)}")
    weights = [torch.randn(channels, 1, k, k, requires_grad=True) for k in (3, 5, 7)]
    merged = torch.zeros(channels, 3, 7, 7)
    for index, w in enumerate(weights):
        pad = (7 - w.shape[-1]) // 2
        merged[:, index, pad : 7 - pad, pad : 7 - pad] = w.detach()[:, 0]
    merged = merged.reshape(3 * channels, 1, 7, 7).requires_grad_()
    xg = x.clone().requires_grad_()

    def three_calls() -> None:
        outs = [F.conv2d(xg, w, None, 1, w.shape[-1] // 2, 1, channels) for w in weights]
        torch.autograd.backward(outs, [grad] * 3)

    def one_call() -> None:
        out = F.conv2d(xg, merged, None, 1, 3, 1, channels)
        out.backward(torch.cat([grad] * 3, dim=1))

    print(
        "three depthwise calls vs one (7×7, multiplier 3), forward + backward: "
        f"{ab(three_calls, one_call, pairs, clock)}"
    )


def trainer_step(model: nn.Module) -> Callable[[], object]:
    from s2mnet.bench.efficiency.measure import synthetic_masks
    from s2mnet.bench.efficiency.training import make_trainer
    from s2mnet.losses import create_loss

    cpu = torch.device("cpu")
    images = torch.randn(4, 3, 256, 256)
    trainer = make_trainer(
        model.to(memory_format=CL),
        create_loss("masl"),
        images,
        synthetic_masks(4, 256, cpu),
        cpu,
        channels_last=True,
    )
    return trainer.train_epoch


class _LinearSwitch:
    """Routes stride-1, ungrouped 1×1 ``nn.Conv2d`` calls on channels-last inputs to ``F.linear`` while on."""

    def __init__(self) -> None:
        self.on = False
        self.original = nn.Conv2d.forward
        switch = self

        def forward(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
            pointwise = conv.kernel_size == (1, 1) and conv.stride == (1, 1) and conv.groups == 1
            if switch.on and pointwise and x.is_contiguous(memory_format=CL):
                weight = conv.weight.view(conv.out_channels, -1)
                return F.linear(x.permute(0, 2, 3, 1), weight, conv.bias).permute(0, 3, 1, 2)
            return switch.original(conv, x)

        nn.Conv2d.forward = forward  # type: ignore[method-assign]


def conv1x1(pairs: int, clock: Callable[[], float]) -> None:
    from s2mnet.models import create_model

    switch = _LinearSwitch()
    torch.manual_seed(0)
    step = trainer_step(create_model("s2mnet"))

    def with_conv() -> None:
        switch.on = False
        step()

    def with_linear() -> None:
        switch.on = True
        step()

    print(
        "training step, 1×1 convolutions as nn.Conv2d vs F.linear: "
        f"{ab(with_conv, with_linear, pairs, clock)}"
    )


def step(pairs: int, clock: Callable[[], float]) -> None:
    from s2mnet.models import create_model
    from s2mnet.models.depthwise import as_plain_conv2d

    torch.manual_seed(0)
    fast = create_model("s2mnet")
    plain = as_plain_conv2d(create_model("s2mnet"))
    plain.load_state_dict(fast.state_dict())
    print(
        "training step, nn.Conv2d vs DepthwiseConv2d depthwise convolutions: "
        f"{ab(trainer_step(plain), trainer_step(fast), pairs, clock)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiment", choices=["depthwise", "conv1x1", "step"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--clock", choices=["cpu", "wall"], default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    print(f"{args.experiment}: {args.threads} thread(s), {args.pairs} pairs, {args.clock} time")
    {"depthwise": depthwise, "conv1x1": conv1x1, "step": step}[args.experiment](args.pairs, clock)


if __name__ == "__main__":
    main()
