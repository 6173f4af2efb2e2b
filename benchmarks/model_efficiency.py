"""Side-by-side efficiency of S2M-Net (SSTM), its attention / no-mixer variants and U-Net on this machine.

Prints parameters, FLOPs, forward latency, peak memory and achieved GFLOP/s (against a measured fp32
matmul peak) for each model and input size, in one run::

    python benchmarks/model_efficiency.py                       # sizes 128 256 352 512, 4 models
    python benchmarks/model_efficiency.py --sizes 64 96 --repeats 2 --models sstm none   # smoke test
    python benchmarks/model_efficiency.py --sizes 352 --models sstm --compile   # eager / optimized / compiled

Conventions (printed with the table):

* FLOPs: ``torch.utils.flop_counter.FlopCounterMode`` on the plain eval model (convolutions, matmuls,
  attention; 1 multiply-add = 2 FLOPs; element-wise ops, norms and activations are not counted; "GMAC" is
  the same count in multiply-adds, without the FFTs) plus the FFTs of SSTM, which the
  counter skips, counted as 5·N·log2(N) real FLOPs per complex length-N FFT and half that for a real-input
  one: ``rfft2`` of H×W = H·2.5·W·log2 W + (W/2+1)·5·H·log2 H, the same again for ``irfft2``.
  The ``matmul`` spectral form is plain matmuls and is counted by the counter.
* Latency: batch 1, ``torch.no_grad()``, eval mode, ``--threads`` intra-op threads (2, the same for the
  matmul peak), median of ``--repeats`` timed runs after one warm-up. Modes (``--modes``): ``eager`` = the
  model as constructed (NCHW input); ``folded`` = BN folded + channels-last
  (``optimize_for_inference(model, fuse_ops=False)``); ``optimized`` =
  :func:`s2mnet.models.fusion.optimize_for_inference` (BN folded, channels-last, fused-op rewrites);
  ``compiled`` (``--compile``) = ``torch.compile`` (inductor,
  ``freezing`` on, the CPU inference setting) of the BN-folded channels-last model, whose first call (the
  compilation, "compile s") is reported separately and excluded from the latency. The FLOPs of every mode
  are those of the model as defined, so GFLOP/s compare the modes on the same work.
* Peak memory: each (model, size) runs in a fresh subprocess; the kernel's peak-RSS mark is reset
  (``/proc/self/clear_refs``) just before the first forward pass and the number is ``VmHWM − VmRSS``, the
  growth of the resident set during that pass: activations and workspaces on top of weights and input.
* Matmul peak: best of several ``torch.mm`` of two 2048×2048 fp32 matrices, same threads, measured at the
  start and again in every worker; the best value seen in the run is the reference for "% peak".
* Load: the 1-minute load average (``os.getloadavg``) at the start and at the end is printed; on a
  shared machine every latency is an upper bound.
* Attention FLOPs: the counter only knows the CUDA attention kernels, so the CPU fused attention is
  counted by hand (QKᵀ and AV: 4·N²·C per image for N tokens of C channels) and included in "GFLOPs".
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import statistics
import subprocess
import sys
import time

import torch

from s2mnet.bench.efficiency import count_flops, peak_rss_kib, reset_peak_rss_kib

MODELS = {"sstm": "s2mnet", "attention": "s2mnet_attention", "none": "s2mnet_none", "unet": "unet"}


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


def prepare(model: torch.nn.Module, x: torch.Tensor, mode: str) -> tuple[torch.nn.Module, torch.Tensor]:
    """The model and input for one benchmark mode (see the module docstring)."""
    from s2mnet.models.fusion import optimize_for_inference

    if mode == "eager":
        return model, x
    x = x.contiguous(memory_format=torch.channels_last)
    if mode == "folded":
        return optimize_for_inference(model, fuse_ops=False), x
    if mode == "optimized":
        return optimize_for_inference(model), x
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True
    return torch.compile(optimize_for_inference(model, fuse_ops=False)), x


def worker(model_key: str, size: int, args: argparse.Namespace) -> dict:
    """Measure one (model, size, mode) in this (fresh) process."""
    from s2mnet.models import create_model

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    impl = args.spectral_impl
    overrides = {"spectral_impl": impl} if impl and model_key != "unet" and model_key != "none" else {}
    plain = create_model(MODELS[model_key], **overrides).eval()
    params = sum(p.numel() for p in plain.parameters())
    x = torch.randn(1, 3, size, size)
    counted, fft, attention = count_flops(plain, x)
    counted += attention
    model, x = prepare(plain, x, args.mode)
    compile_s = None
    if args.mode == "compiled":
        with torch.no_grad():
            start = time.perf_counter()
            model(x)
            compile_s = time.perf_counter() - start
    baseline = reset_peak_rss_kib()
    with torch.no_grad():
        start = time.perf_counter()
        model(x)
        first = time.perf_counter() - start
    peak_mib = (peak_rss_kib() - baseline) / 1024
    peak = matmul_peak_gflops(repeats=5)
    runs = max(1, min(args.repeats, int(args.budget_s / max(first, 1e-3))))
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
        "mode": args.mode,
        "params": params,
        "gflops_counter": counted / 1e9,
        "gflops_fft": fft / 1e9,
        "latency_ms": latency * 1e3,
        "best_ms": min(times) * 1e3,
        "runs": runs,
        "compile_s": compile_s,
        "peak_mib": peak_mib,
        "gflops_per_s": (counted + fft) / latency / 1e9,
        "matmul_peak_gflops": peak,
        "threads": torch.get_num_threads(),
    }


def run_one(args: argparse.Namespace, model_key: str, size: int, mode: str) -> dict:
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
        "--threads",
        str(args.threads),
        "--mode",
        mode,
    ]
    command += ["--spectral-impl", args.spectral_impl] if args.spectral_impl else []
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return {"model": model_key, "size": size, "mode": mode, "skipped": f"over {args.timeout_s:.0f} s"}
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["failed"])[-1][:60]
        return {"model": model_key, "size": size, "mode": mode, "skipped": reason}
    return json.loads(done.stdout.strip().splitlines()[-1])


MODES = ("eager", "folded", "optimized", "compiled")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 352, 512])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--modes", nargs="+", default=["eager", "folded", "optimized"], choices=MODES)
    parser.add_argument("--compile", action="store_true", help="add the torch.compile (inductor) mode")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads (model and matmul peak)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per configuration (median)")
    parser.add_argument("--budget-s", type=float, default=60.0, help="fewer repeats when a run is slower")
    parser.add_argument("--timeout-s", type=float, default=900.0, help="skip a configuration after this")
    parser.add_argument("--spectral-impl", choices=["fft", "matmul"], default=None)
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    parser.add_argument("--worker", nargs=2, metavar=("MODEL", "SIZE"), help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=MODES, default="optimized", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        key, size = args.worker
        print(json.dumps(worker(key, int(size), args)))
        return
    modes = [*args.modes, *(["compiled"] if args.compile and "compiled" not in args.modes else [])]

    torch.set_num_threads(args.threads)
    print("command: python " + " ".join(shlex.quote(a) for a in sys.argv))
    load_start = os.getloadavg()[0]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, modes: {', '.join(modes)}")
    first_peak = matmul_peak_gflops()
    rows = [run_one(args, key, size, mode) for size in args.sizes for key in args.models for mode in modes]
    # The reference is the best peak seen in this run (here and in every worker): a busy machine can
    # only make a measured peak lower.
    peak = max([first_peak, *(r["matmul_peak_gflops"] for r in rows if "skipped" not in r)])
    print(
        f"fp32 matmul peak (torch.mm 2048², {args.threads} threads, best seen in this run): "
        f"{peak:.1f} GFLOP/s (at start: {first_peak:.1f}); 1-min load average {load_start:.2f} at start, "
        f"{os.getloadavg()[0]:.2f} at end\n"
    )
    header = (
        f"{'model':<10} {'size':>5} {'mode':<9} {'params':>8} {'GFLOPs':>8} {'(FFT)':>6} {'GMAC':>6} "
        f"{'ms':>8} {'best ms':>8} {'runs':>4} {'compile s':>9} {'peak MiB':>8} {'GFLOP/s':>8} {'% peak':>7}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        if "skipped" in row:
            print(f"{row['model']:<10} {row['size']:>5} {row['mode']:<9}  skipped: {row['skipped']}")
            continue
        total = row["gflops_counter"] + row["gflops_fft"]
        compile_s = f"{row['compile_s']:.0f}" if row["compile_s"] is not None else "-"
        print(
            f"{row['model']:<10} {row['size']:>5} {row['mode']:<9} {row['params'] / 1e6:>7.2f}M "
            f"{total:>8.2f} "
            f"{row['gflops_fft']:>6.3f} {row['gflops_counter'] / 2:>6.2f} {row['latency_ms']:>8.1f} "
            f"{row['best_ms']:>8.1f} {row['runs']:>4} {compile_s:>9} {row['peak_mib']:>8.0f} "
            f"{row['gflops_per_s']:>8.1f} {100 * row['gflops_per_s'] / peak:>6.1f}%"
        )
    timed = {(r["model"], r["size"], r["mode"]): r["latency_ms"] for r in rows if "skipped" not in r}
    print()
    for size in args.sizes:
        for mode in modes:
            if ("sstm", size, mode) in timed and ("attention", size, mode) in timed:
                ratio = timed[("attention", size, mode)] / timed[("sstm", size, mode)]
                print(f"attention / SSTM latency at {size}² ({mode}): {ratio:.2f}× (paper claims 4.2×)")
    row = next((r for r in rows if r["model"] == "sstm" and r["size"] == 352 and "skipped" not in r), None)
    if row is not None:
        print(
            f"S2M-Net at 352²: {row['gflops_counter'] + row['gflops_fft']:.2f} GFLOPs "
            f"(of which FFT {row['gflops_fft']:.3f}) = {row['gflops_counter'] / 2:.2f} GMAC + FFT; "
            "paper claims 11.2 G (convention unstated)"
        )
    if args.json:
        from s2mnet.io_utils import atomic_write_json

        atomic_write_json(args.json, {"command": sys.argv, "matmul_peak_gflops": peak, "rows": rows})


if __name__ == "__main__":
    main()
