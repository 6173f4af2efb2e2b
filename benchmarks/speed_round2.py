"""Issue 29's benchmark: S2M-Net against MONAI's UNet on the CPU, training step and predict-path forward.

One run, one process, every number against MONAI's UNet measured in the same run (docs/speed.md, "Round
two"):

* **training step**: 256², batch 4, channels-last, the real ``Trainer`` step of ``s2m train``
  (:mod:`s2mnet.bench.efficiency.training`: model + loss forward, backward, clipping, AdamW, scheduler);
  S2M-Net with MASL, MONAI UNet (``s2m bench efficiency``'s configuration) with Dice-CE;
* **forward**: 352², batch 1, in the path ``s2m predict`` / ``s2m evaluate`` use: the model as
  ``load_model(optimize=True)`` returns it (:func:`s2mnet.models.optimize_for_inference`: eval mode,
  BatchNorm folded, channels-last, fused blocks; for MONAI's UNet only eval and channels-last apply), a
  channels-last input, ``torch.inference_mode``;
* at one and at two intra-op threads; per cell the median and the minimum of ``--repeats`` timed calls,
  the models' calls interleaved (S2M-Net, MONAI UNet, S2M-Net, ...) so that a change of load hits both;
* references in the same run (``--no-reference`` drops them): S2M-Net's training step with the plain
  depthwise convolutions (``nn.Conv2d``, before :class:`~s2mnet.models.depthwise.DepthwiseConv2d`) and its
  forward as the plain eval model (what ``s2m predict`` ran before);
* then ``torch.profiler`` over ``--profile-steps`` S2M-Net training steps at one thread (self CPU time by
  operator) and over as many predict-path forwards.

About four minutes on two quiet cores with the defaults. Run it with nothing else on the machine:

    python benchmarks/speed_round2.py [--repeats 9] [--profile-steps 3] [--top 20]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

TRAIN_SIZE, TRAIN_BATCH = 256, 4
FORWARD_SIZE, FORWARD_BATCH = 352, 1
GOALS = {("train", 2): 2.0, ("train", 1): 2.5, ("forward", 2): 3.0, ("forward", 1): 3.0}
CL = torch.channels_last


def training_step(name: str, plain_depthwise: bool = False) -> Callable[[], None]:
    """One ``Trainer`` step of ``name`` at 256², batch 4, channels-last (``s2m train``'s default)."""
    from s2mnet.bench.efficiency.measure import synthetic_masks
    from s2mnet.bench.efficiency.peers import build_model, loss_name_for
    from s2mnet.bench.efficiency.training import make_trainer
    from s2mnet.losses import create_loss
    from s2mnet.models.depthwise import as_plain_conv2d

    torch.manual_seed(0)
    model = build_model(name)
    if plain_depthwise:
        as_plain_conv2d(model)
    model = model.to(memory_format=CL)
    cpu = torch.device("cpu")
    images = torch.randn(TRAIN_BATCH, 3, TRAIN_SIZE, TRAIN_SIZE)
    masks = synthetic_masks(TRAIN_BATCH, TRAIN_SIZE, cpu)
    trainer = make_trainer(model, create_loss(loss_name_for(name)), images, masks, cpu, channels_last=True)
    return lambda: trainer.train_epoch()


def predict_forward(name: str, optimized: bool = True) -> Callable[[], None]:
    """One forward pass at 352², batch 1, as ``s2m predict`` runs it (``optimized``) or as before (plain
    eval model, NCHW input)."""
    from s2mnet.bench.efficiency.peers import build_model
    from s2mnet.models import optimize_for_inference

    torch.manual_seed(0)
    model = build_model(name).eval()
    x = torch.randn(FORWARD_BATCH, 3, FORWARD_SIZE, FORWARD_SIZE)
    if optimized:
        model, x = optimize_for_inference(model), x.contiguous(memory_format=CL)

    def forward() -> None:
        with torch.inference_mode():
            model(x)

    return forward


def interleaved(
    calls: dict[str, Callable[[], None]], repeats: int, warmup: int = 2
) -> dict[str, list[float]]:
    """Seconds of ``repeats`` calls of each function, taken in turns after ``warmup`` untimed rounds."""
    for _ in range(warmup):
        for call in calls.values():
            call()
    times: dict[str, list[float]] = {key: [] for key in calls}
    for _ in range(repeats):
        for key, call in calls.items():
            start = time.perf_counter()
            call()
            times[key].append(time.perf_counter() - start)
    return times


def profile(call: Callable[[], None], calls: int, top: int, title: str) -> None:
    """Self CPU time by operator over ``calls`` calls of ``call`` (after one untimed call)."""
    call()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(calls):
            call()
    print(f"\n{title}: torch.profiler, {calls} calls, self CPU time by operator")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=top))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9, help="timed calls per cell (default 9)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--profile-steps", type=int, default=3, help="0: no profile")
    parser.add_argument("--top", type=int, default=20, help="operators in each profile table")
    parser.add_argument("--no-reference", action="store_true", help="skip the before-the-change rows")
    args = parser.parse_args()

    print(
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
        f"1-min load average at start {os.getloadavg()[0]:.2f}"
    )
    began = time.perf_counter()
    rows: list[dict[str, Any]] = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        workloads = {
            "train": {
                "s2mnet": training_step("s2mnet"),
                "monai_unet": training_step("monai_unet"),
                **({} if args.no_reference else {"s2mnet_before": training_step("s2mnet", True)}),
            },
            "forward": {
                "s2mnet": predict_forward("s2mnet"),
                "monai_unet": predict_forward("monai_unet"),
                **({} if args.no_reference else {"s2mnet_before": predict_forward("s2mnet", False)}),
            },
        }
        for workload, calls in workloads.items():
            times = interleaved(calls, args.repeats)
            for key, seconds in times.items():
                rows.append(
                    {
                        "threads": threads,
                        "workload": workload,
                        "model": key,
                        "median_ms": 1e3 * statistics.median(seconds),
                        "min_ms": 1e3 * min(seconds),
                    }
                )
    print(f"timing took {time.perf_counter() - began:.0f} s; load average now {os.getloadavg()[0]:.2f}\n")
    report(rows)
    if args.profile_steps:
        torch.set_num_threads(1)
        profile(training_step("s2mnet"), args.profile_steps, args.top, "S2M-Net training step, 1 thread")
        profile(predict_forward("s2mnet"), args.profile_steps, args.top, "S2M-Net predict forward, 1 thread")
    print(f"total {time.perf_counter() - began:.0f} s; load average at end {os.getloadavg()[0]:.2f}")


def report(rows: list[dict[str, Any]]) -> None:
    """The table: per thread count and workload, each model's median / min ms and its ratio to MONAI UNet."""
    what = {
        "train": f"training step {TRAIN_SIZE}² batch {TRAIN_BATCH}",
        "forward": f"forward {FORWARD_SIZE}² batch {FORWARD_BATCH} (predict path)",
    }
    print(
        f"{'threads':>7}  {'workload':<36} {'model':<14} {'median ms':>10} {'min ms':>9} {'÷ MONAI':>8}  goal"
    )
    print("-" * 100)
    for row in rows:
        peer = next(
            r
            for r in rows
            if (r["threads"], r["workload"], r["model"]) == (row["threads"], row["workload"], "monai_unet")
        )
        ratio = row["median_ms"] / peer["median_ms"]
        goal = GOALS.get((row["workload"], row["threads"])) if row["model"] == "s2mnet" else None
        verdict = f"≤ {goal:.1f}×: {'met' if ratio <= goal else 'not met'}" if goal else ""
        print(
            f"{row['threads']:>7}  {what[row['workload']]:<36} {row['model']:<14} {row['median_ms']:>10.1f} "
            f"{row['min_ms']:>9.1f} {ratio:>7.2f}×  {verdict}"
        )
    print(
        "\ns2mnet_before: training with plain nn.Conv2d depthwise convolutions; forward as the plain eval "
        "model with an NCHW input (s2m predict before issue 29). Ratios use the medians."
    )


if __name__ == "__main__":
    main()
