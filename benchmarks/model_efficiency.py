"""Side-by-side efficiency of S2M-Net (SSTM), its attention / no-mixer variants and U-Net on this machine.

Prints parameters, FLOPs, forward latency, peak memory and achieved GFLOP/s (against a measured fp32
matmul peak) for each model and input size, in one run::

    python benchmarks/model_efficiency.py                       # sizes 128 256 352 512, 4 models
    python benchmarks/model_efficiency.py --sizes 64 96 --repeats 2 --models sstm none   # smoke test

Conventions (printed with the table):

* FLOPs: ``torch.utils.flop_counter.FlopCounterMode`` (convolutions, matmuls, attention; 1 multiply-add =
  2 FLOPs; element-wise ops, norms and activations are not counted) plus the FFTs of SSTM, which the
  counter skips, counted as 5·N·log2(N) real FLOPs per complex length-N FFT and half that for a real-input
  one: ``rfft2`` of H×W = H·2.5·W·log2 W + (W/2+1)·5·H·log2 H, the same again for ``irfft2``.
  The ``matmul`` spectral form is plain matmuls and is counted by the counter.
* Latency: batch 1, ``torch.no_grad()``, eval mode, median of ``--repeats`` timed runs after one warm-up.
  By default the models run with BatchNorm folded and channels-last (inference options of
  :func:`s2mnet.models.inference.optimize_for_inference`, applied to every model alike); ``--plain`` runs
  them as constructed.
* Peak memory: each (model, size) runs in a fresh subprocess; the kernel's peak-RSS mark is reset
  (``/proc/self/clear_refs``) just before the first forward pass and the number is ``VmHWM − VmRSS``, the
  growth of the resident set during that pass: activations and workspaces on top of weights and input.
* Matmul peak: best of several ``torch.mm`` of two 2048×2048 fp32 matrices, same threads, measured at the
  start and again in every worker; the best value seen in the run is the reference for "% peak".
* Attention FLOPs: the counter only knows the CUDA attention kernels, so the CPU fused attention is
  counted by hand (QKᵀ and AV: 4·N²·C per image for N tokens of C channels) and included in "GFLOPs".
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import resource
import shlex
import statistics
import subprocess
import sys
import time

import torch

MODELS = {"sstm": "s2mnet", "attention": "s2mnet_attention", "none": "s2mnet_none", "unet": "unet"}


def fft_flops(height: int, width: int) -> float:
    """Real FLOPs of one ``rfft2`` of a real H×W map (5·N·log2 N per complex FFT, half for real input)."""
    log2 = lambda n: math.log2(n) if n > 1 else 0.0  # noqa: E731
    return height * 2.5 * width * log2(width) + (width // 2 + 1) * 5 * height * log2(height)


def count_flops(model: torch.nn.Module, x: torch.Tensor) -> tuple[float, float, float]:
    """(counter FLOPs, FFT FLOPs, CPU attention FLOPs) of one forward pass.

    The counter has formulas for the CUDA attention kernels only; the CPU flash-attention kernel that
    ``scaled_dot_product_attention`` uses here is counted by hand: QKᵀ and AV, 2·N²·C FLOPs each.
    """
    from torch.utils.flop_counter import FlopCounterMode

    from s2mnet.models.attention import AttentionMixer
    from s2mnet.models.sstm import SpectralBranch

    extra = {"fft": 0.0, "attention": 0.0}

    def spectral_hook(
        module: SpectralBranch, inputs: tuple[torch.Tensor, ...], _output: torch.Tensor
    ) -> None:
        if module.impl == "fft":
            batch, channels, height, width = inputs[0].shape
            extra["fft"] += 2 * batch * channels * fft_flops(height, width)  # rfft2 + irfft2

    def attention_hook(
        _module: AttentionMixer, inputs: tuple[torch.Tensor, ...], _output: torch.Tensor
    ) -> None:
        batch, channels, height, width = inputs[0].shape
        extra["attention"] += 4.0 * batch * (height * width) ** 2 * channels

    handles = [
        m.register_forward_hook(spectral_hook) for m in model.modules() if isinstance(m, SpectralBranch)
    ]
    handles += [
        m.register_forward_hook(attention_hook) for m in model.modules() if isinstance(m, AttentionMixer)
    ]
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    for handle in handles:
        handle.remove()
    counted_attention = any("scaled_dot_product" in str(op) for op in counter.get_flop_counts()["Global"])
    return float(counter.get_total_flops()), extra["fft"], 0.0 if counted_attention else extra["attention"]


def matmul_peak_gflops(n: int = 2048, repeats: int = 10) -> float:
    """Best-of-``repeats`` GFLOP/s of an n×n fp32 ``torch.mm`` (best, to resist other load)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def _status_kib(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak_rss_kib() -> int:
    """Reset the kernel's peak-RSS mark (``/proc/self/clear_refs`` ← 5) and return the current RSS (KiB).

    Falls back to the (monotonic) ``ru_maxrss`` where that is not possible."""
    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
        return _status_kib("VmRSS")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def peak_rss_kib() -> int:
    """Peak RSS since the last reset (``VmHWM``), or ``ru_maxrss``."""
    try:
        return _status_kib("VmHWM")
    except (OSError, RuntimeError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def worker(model_key: str, size: int, repeats: int, budget_s: float, plain: bool, impl: str | None) -> dict:
    """Measure one (model, size) in this (fresh) process."""
    from s2mnet.models import create_model
    from s2mnet.models.inference import optimize_for_inference

    torch.manual_seed(0)
    overrides = {"spectral_impl": impl} if impl and model_key != "unet" and model_key != "none" else {}
    model = create_model(MODELS[model_key], **overrides).eval()
    params = sum(p.numel() for p in model.parameters())
    x = torch.randn(1, 3, size, size)
    if not plain:
        model = optimize_for_inference(model)
        x = x.contiguous(memory_format=torch.channels_last)
    baseline = reset_peak_rss_kib()
    with torch.no_grad():
        start = time.perf_counter()
        model(x)
        first = time.perf_counter() - start
    peak_mib = (peak_rss_kib() - baseline) / 1024
    counted, fft, attention = count_flops(model, x)
    counted += attention
    peak = matmul_peak_gflops(repeats=5)
    runs = max(1, min(repeats, int(budget_s / max(first, 1e-3))))
    times = []
    with torch.no_grad():
        for _ in range(runs):
            start = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - start)
    latency = statistics.median(times)
    return {
        "model": model_key,
        "size": size,
        "params": params,
        "gflops_counter": counted / 1e9,
        "gflops_fft": fft / 1e9,
        "latency_ms": latency * 1e3,
        "runs": runs,
        "peak_mib": peak_mib,
        "gflops_per_s": (counted + fft) / latency / 1e9,
        "matmul_peak_gflops": peak,
    }


def run_one(args: argparse.Namespace, model_key: str, size: int) -> dict:
    command = [
        sys.executable,
        __file__,
        "--worker",
        model_key,
        str(size),
        "--repeats",
        str(args.repeats),
        "--budget-s",
        str(args.budget_s),
    ]
    command += ["--plain"] if args.plain else []
    command += ["--spectral-impl", args.spectral_impl] if args.spectral_impl else []
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return {"model": model_key, "size": size, "skipped": f"over {args.timeout_s:.0f} s"}
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["failed"])[-1][:60]
        return {"model": model_key, "size": size, "skipped": reason}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 352, 512])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per configuration (median)")
    parser.add_argument("--budget-s", type=float, default=60.0, help="fewer repeats when a run is slower")
    parser.add_argument("--timeout-s", type=float, default=600.0, help="skip a configuration after this")
    parser.add_argument("--plain", action="store_true", help="no BN folding / channels-last")
    parser.add_argument("--spectral-impl", choices=["fft", "matmul"], default=None)
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    parser.add_argument("--worker", nargs=2, metavar=("MODEL", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        key, size = args.worker
        print(json.dumps(worker(key, int(size), args.repeats, args.budget_s, args.plain, args.spectral_impl)))
        return

    print("command: python " + " ".join(shlex.quote(a) for a in sys.argv))
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{'plain models' if args.plain else 'BN folded + channels-last'}"
    )
    first_peak = matmul_peak_gflops()
    rows = [run_one(args, key, size) for size in args.sizes for key in args.models]
    # The reference is the best peak seen in this run (here and in every worker): a busy machine can
    # only make a measured peak lower.
    peak = max([first_peak, *(r["matmul_peak_gflops"] for r in rows if "skipped" not in r)])
    print(
        f"fp32 matmul peak (torch.mm 2048², best seen in this run): {peak:.1f} GFLOP/s "
        f"(at start: {first_peak:.1f})\n"
    )
    header = (
        f"{'model':<10} {'size':>5} {'params':>8} {'GFLOPs':>8} {'(FFT)':>7} {'ms':>9} {'runs':>4} "
        f"{'peak MiB':>9} {'GFLOP/s':>8} {'% peak':>7}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        if "skipped" in row:
            print(f"{row['model']:<10} {row['size']:>5}  skipped: {row['skipped']}")
            continue
        total = row["gflops_counter"] + row["gflops_fft"]
        print(
            f"{row['model']:<10} {row['size']:>5} {row['params'] / 1e6:>7.2f}M {total:>8.2f} "
            f"{row['gflops_fft']:>7.3f} {row['latency_ms']:>9.1f} {row['runs']:>4} {row['peak_mib']:>9.0f} "
            f"{row['gflops_per_s']:>8.1f} {100 * row['gflops_per_s'] / peak:>6.1f}%"
        )
    timed = {(r["model"], r["size"]): r["latency_ms"] for r in rows if "skipped" not in r}
    print()
    for size in args.sizes:
        if ("sstm", size) in timed and ("attention", size) in timed:
            ratio = timed[("attention", size)] / timed[("sstm", size)]
            print(f"attention / SSTM latency at {size}²: {ratio:.2f}× (paper claims 4.2×)")
    if 352 in args.sizes and ("sstm", 352) in timed:
        row = next(r for r in rows if r.get("model") == "sstm" and r["size"] == 352)
        print(
            f"S2M-Net FLOPs at 352²: {row['gflops_counter'] + row['gflops_fft']:.2f} G "
            f"(of which FFT {row['gflops_fft']:.3f} G); paper claims 11.2 G"
        )
    if args.json:
        from s2mnet.io_utils import atomic_write_json

        atomic_write_json(args.json, {"command": sys.argv, "matmul_peak_gflops": peak, "rows": rows})


if __name__ == "__main__":
    main()
