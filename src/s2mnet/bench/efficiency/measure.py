"""Measurements of one model: FLOPs (FFTs counted by hand), wall time and peak memory.

Conventions (also in the report, :mod:`s2mnet.bench.efficiency.report`):

* FLOPs: :class:`torch.utils.flop_counter.FlopCounterMode` on one image (batch 1, eval mode) counts
  convolutions and matrix products at 2 FLOPs per multiply-add. The counter skips FFTs; they are added by
  hand at 5·N·log2(N) real FLOPs per complex length-N FFT, half for a real-input one (:func:`fft_flops`).
  Counting runs on the ``meta`` device where the model allows it, else on the measuring device; the CPU
  flash-attention kernel is unknown to the counter and is counted by hand (4·N²·C FLOPs per image).
* Time: median of the timed repeats after warm-up, ``torch.cuda.synchronize`` around every call on GPU.
* Peak memory: GPU ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``; CPU growth of the
  resident set during the phase (``VmHWM − VmRSS`` after resetting the peak mark via
  ``/proc/self/clear_refs``; ``ru_maxrss`` where /proc is absent).
"""

from __future__ import annotations

import gc
import math
import resource
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from s2mnet.bench.efficiency.peers import build_model

# --- FLOPs ----------------------------------------------------------------------------------------


def fft_flops(height: int, width: int) -> float:
    """Real FLOPs of one ``rfft2`` of a real H×W map (5·N·log2 N per complex FFT, half for real input)."""
    return height * 2.5 * width * _log2(width) + (width // 2 + 1) * 5 * height * _log2(height)


def complex_fft2_flops(rows: int, cols: int) -> float:
    """Real FLOPs of one complex 2-D FFT of rows×cols (5·N·log2 N per 1-D FFT of length N)."""
    return rows * 5 * cols * _log2(cols) + cols * 5 * rows * _log2(rows)


def _log2(n: int) -> float:
    return math.log2(n) if n > 1 else 0.0


def count_flops(model: torch.nn.Module, x: torch.Tensor) -> tuple[float, float, float]:
    """(counter FLOPs, FFT FLOPs, hand-counted attention FLOPs) of one forward pass of ``model`` on ``x``.

    FFTs are counted by forward hooks on the spectral modules: SSTM's ``rfft2`` + ``irfft2`` over (H, W),
    the ``official`` flavour's complex ``fft2`` + ``ifft2`` over (W, C) of the NHWC tensor (its bilinear
    spectrum resizes are not counted). Attention is counted by hand only when the counter saw no
    attention kernel or batched matmul (the CPU flash kernel).
    """
    from torch.utils.flop_counter import FlopCounterMode

    from s2mnet.models.attention import AttentionMixer
    from s2mnet.models.sstm import SpectralBranch
    from s2mnet.models.sstm_official import OfficialSSTM

    extra = {"fft": 0.0, "attention": 0.0}

    def hook(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], _output: Any) -> None:
        batch, channels, height, width = inputs[0].shape
        if isinstance(module, SpectralBranch) and module.impl == "fft":
            extra["fft"] += 2 * batch * channels * fft_flops(height, width)
        elif isinstance(module, OfficialSSTM):
            extra["fft"] += 2 * batch * height * complex_fft2_flops(width, channels)
        elif isinstance(module, AttentionMixer):
            extra["attention"] += 4.0 * batch * (height * width) ** 2 * channels

    kinds = (SpectralBranch, OfficialSSTM, AttentionMixer)
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, kinds)]
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    ops = [str(op) for op in counter.get_flop_counts().get("Global", {})]
    counted_attention = any("scaled_dot_product" in op or "bmm" in op for op in ops)
    return float(counter.get_total_flops()), extra["fft"], 0.0 if counted_attention else extra["attention"]


def model_flops(name: str, size: int, in_channels: int = 3, device: str = "cpu") -> dict[str, float]:
    """FLOPs of one image at ``size``² (meta device when the model allows it, else on ``device``).

    See :func:`count_flops`.
    """
    try:
        meta_input = torch.empty(1, in_channels, size, size, device="meta")
        counted, fft, attention = count_flops(build_model(name, in_channels).eval().to("meta"), meta_input)
    except (RuntimeError, NotImplementedError, TypeError):
        real_input = torch.randn(1, in_channels, size, size, device=device)
        counted, fft, attention = count_flops(build_model(name, in_channels).eval().to(device), real_input)
    counted += attention
    return {"gflops_counter": counted / 1e9, "gflops_fft": fft / 1e9, "gmac": counted / 2e9}


# --- timing and memory ----------------------------------------------------------------------------


def synchronise(device: torch.device) -> None:
    """Wait for queued CUDA work (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(
    function: Callable[[], object],
    device: torch.device,
    repeats: int,
    warmup: int = 1,
    budget_s: float = 60.0,
) -> tuple[float, int]:
    """(median wall time, timed runs) of ``function`` after ``warmup`` calls.

    The number of timed runs is ``repeats``, reduced so that they take about ``budget_s`` (at least 1).
    """
    for _ in range(warmup):
        function()
    synchronise(device)
    times: list[float] = []
    while len(times) < max(1, repeats):
        start = time.perf_counter()
        function()
        synchronise(device)
        times.append(time.perf_counter() - start)
        if sum(times) > budget_s:
            break
    return statistics.median(times), len(times)


def synthetic_masks(batch: int, size: int, device: torch.device) -> torch.Tensor:
    """Half disks of varied radius, half thin diagonal lines (vessel-like), (B, 1, S, S) float."""
    rows, cols = torch.meshgrid(
        torch.arange(size, device=device), torch.arange(size, device=device), indexing="ij"
    )
    masks = torch.zeros(batch, 1, size, size, device=device)
    for index in range(batch):
        if index % 2 == 0:
            radius = size * (0.1 + 0.05 * index)
            masks[index, 0] = (((rows - size / 2) ** 2 + (cols - size / 2) ** 2) <= radius**2).float()
        else:
            masks[index, 0] = ((rows - cols + index).abs() <= 1).float()
    return masks


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


class PeakMemory:
    """Context manager measuring the peak memory of a phase in MiB (see the module docstring)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.mib = math.nan

    def __enter__(self) -> PeakMemory:
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self._baseline = reset_peak_rss_kib()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            synchronise(self.device)
            self.mib = torch.cuda.max_memory_allocated(self.device) / 2**20
        else:
            self.mib = (peak_rss_kib() - self._baseline) / 1024
