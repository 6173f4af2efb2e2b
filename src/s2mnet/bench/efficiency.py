"""``s2m bench efficiency``: parameters, FLOPs, latency, training-step time, throughput and memory.

Every (model, size) cell is measured in a subprocess (``python -m s2mnet.bench.efficiency --serve``; a
fresh one per cell on CPU, one reused across cells on GPU, see :class:`CellWorker`) with a wall-time cap,
so an out-of-memory error or a cell that is too slow is reported as "skipped" with its reason instead of
ending the run, and the CPU peak-memory mark starts clean. Larger sizes of a model
that did not fit are skipped too.

Conventions (also written into the report):

* FLOPs: :class:`torch.utils.flop_counter.FlopCounterMode` on one image (batch 1, eval mode) counts
  convolutions and matrix products at 2 FLOPs per multiply-add (element-wise ops, norms and activations
  are not counted). "GMAC" is that count / 2. The counter skips FFTs; they are added by hand at
  5·N·log2(N) real FLOPs per complex length-N FFT, half for a real-input one (:func:`fft_flops`); the
  FFT FLOPs have no MAC equivalent and are reported separately ("FFT GFLOPs") and in "GFLOPs total".
  Counting runs on the ``meta`` device where the model allows it (shapes only, no compute), else on the
  measuring device; the CPU flash-attention kernel is unknown to the counter and is counted by hand
  (QKᵀ and AV, 4·N²·C FLOPs per image for N tokens of C channels).
* Latency: forward pass in eval mode under ``torch.inference_mode`` (and bf16 autocast with ``--amp bf16``),
  median of the timed repeats after warm-up; ``torch.cuda.synchronize`` around every timed call on GPU.
  Throughput = batch / median time.
* Training step: forward + loss + backward + AdamW step (model parameters and the loss's learnable
  weights), MASL for the S2M-Net family (``s2mnet*``), MONAI Dice-CE for every other model; the targets
  are disks. MASL's share = median time of MASL forward + backward alone on the same logits shape /
  median time of the whole step.
* Peak memory, of the first forward pass and of the first training step of the fresh process (nothing
  cached yet; the step includes allocating AdamW's state): GPU: ``torch.cuda.max_memory_allocated`` after
  ``reset_peak_memory_stats`` (absolute: weights, optimizer state, activations, workspaces).
  CPU: growth of the resident set during the phase: the kernel's peak-RSS mark is reset
  (``/proc/self/clear_refs``) and the number is ``VmHWM − VmRSS`` (activations and workspaces on top
  of what was already resident; ``ru_maxrss`` where /proc is absent).
* Scaling exponent: least-squares slope of log(time or memory) against log(pixel count) over the sizes
  that were measured (:func:`s2mnet.bench.stats.fit_exponent`).
* Peers: MONAI ``UNet(spatial_dims=2, channels=(32, 64, 128, 256, 512), strides=(2, 2, 2, 2),
  num_res_units=2)`` and ``SwinUNETR(spatial_dims=2, feature_size=24)`` (patch 2 and four ×2 merges:
  the input side must be divisible by 32; other sizes are skipped). Our ``unet`` is the classic 64…1024
  U-Net.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import resource
import select
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from s2mnet.bench import DEFAULT_MODELS, DEFAULT_SIZES
from s2mnet.bench.stats import fit_exponent
from s2mnet.errors import S2MError

REFERENCE = "s2mnet"
MONAI_UNET = {"channels": (32, 64, 128, 256, 512), "strides": (2, 2, 2, 2), "num_res_units": 2}
SWIN_FEATURE_SIZE = 24
SWIN_DIVISOR = 32


# --- models ---------------------------------------------------------------------------------------


def known_models() -> list[str]:
    """Model names this benchmark can build: the s2mnet registry plus the MONAI peers."""
    from s2mnet.models import list_models

    return [*list_models(), "monai_unet", "monai_swinunetr"]


def size_problem(name: str, size: int) -> str | None:
    """Why ``name`` cannot run at ``size`` (``None`` if it can)."""
    if name == "monai_swinunetr" and size % SWIN_DIVISOR:
        return f"SwinUNETR needs a size divisible by {SWIN_DIVISOR}"
    return None


def build_model(name: str, in_channels: int = 3, num_classes: int = 1) -> torch.nn.Module:
    """An s2mnet registry model or a MONAI peer (configurations in the module docstring)."""
    if name == "monai_unet":
        from monai.networks.nets import UNet

        return UNet(spatial_dims=2, in_channels=in_channels, out_channels=num_classes, **MONAI_UNET)
    if name == "monai_swinunetr":
        from monai.networks.nets import SwinUNETR

        return SwinUNETR(
            spatial_dims=2, in_channels=in_channels, out_channels=num_classes, feature_size=SWIN_FEATURE_SIZE
        )
    from s2mnet.models import create_model

    return create_model(name, in_channels=in_channels, num_classes=num_classes)


def loss_name_for(model_name: str) -> str:
    """MASL for the S2M-Net family, Dice-CE for the baselines and peers."""
    return "masl" if model_name.startswith("s2mnet") else "dicece"


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
    function: Callable[[], None], device: torch.device, repeats: int, warmup: int = 1, budget_s: float = 60.0
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


# --- one cell -------------------------------------------------------------------------------------


def measure_cell(
    name: str,
    size: int,
    device: str = "cpu",
    amp: str = "none",
    batch: int = 1,
    repeats: int = 10,
    warmup: int = 2,
    budget_s: float = 60.0,
    threads: int | None = None,
) -> dict[str, Any]:
    """All numbers of one (model, size) cell, measured in this process. See the module docstring."""
    from s2mnet.losses import create_loss

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    dev = torch.device(device)
    model = build_model(name)
    row: dict[str, Any] = {"model": name, "size": size, "pixels": size * size, "batch": batch}
    row["params"] = sum(p.numel() for p in model.parameters())
    model = model.to(dev)
    autocast = _autocast(dev, amp)
    images = torch.randn(batch, 3, size, size, device=dev)

    model.eval()

    def forward() -> None:
        with torch.inference_mode(), autocast():
            model(images)

    with PeakMemory(dev) as memory:  # the first call in this fresh process: nothing cached yet
        forward()
    fwd_s, fwd_runs = median_seconds(forward, dev, repeats, warmup, budget_s)
    row.update(fwd_ms=1e3 * fwd_s, fwd_runs=fwd_runs, fwd_img_s=batch / fwd_s, fwd_mem_mib=memory.mib)

    loss_name = loss_name_for(name)
    loss_fn = create_loss(loss_name).to(dev)
    targets = synthetic_masks(batch, size, dev)
    model.train()
    optimizer = torch.optim.AdamW(
        [{"params": list(model.parameters())}, *loss_fn.parameter_groups()], lr=1e-4
    )

    def train_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast():
            logits = model(images)
        loss_fn(logits.float(), targets).backward()
        optimizer.step()

    with PeakMemory(dev) as memory:  # the first step, which also allocates the optimizer state
        train_step()
    step_s, step_runs = median_seconds(train_step, dev, repeats, warmup, budget_s)
    row.update(
        loss=loss_name,
        step_ms=1e3 * step_s,
        step_runs=step_runs,
        train_img_s=batch / step_s,
        train_mem_mib=memory.mib,
    )
    if loss_name == "masl":
        logits = torch.randn(batch, 1, size, size, device=dev, requires_grad=True)

        def masl_step() -> None:
            logits.grad = None
            loss_fn(logits, targets).backward()

        masl_s, _ = median_seconds(masl_step, dev, repeats, warmup, budget_s)
        row.update(masl_ms=1e3 * masl_s, masl_share=masl_s / step_s)
    row.update(model_flops(name, size, device=str(dev)))  # last: it may run a forward pass (memory above)
    return row


def _autocast(device: torch.device, amp: str) -> Callable[[], Any]:
    import contextlib

    if amp == "bf16":
        return lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext


def _measure_or_skip(spec: dict[str, Any]) -> dict[str, Any]:
    """:func:`measure_cell`, with out-of-memory and a missing optional package as a skipped row."""
    try:
        row = measure_cell(**spec)
    except torch.OutOfMemoryError as exc:
        row = {"model": spec["name"], "size": spec["size"], "skipped": f"out of memory ({str(exc)[:80]})"}
    except ImportError as exc:
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:100]
        row = {"model": spec["name"], "size": spec["size"], "skipped": f"missing package: {reason}"}
    except (RuntimeError, ValueError) as exc:  # e.g. a size too small for the model's batch norm
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:100]
        row = {"model": spec["name"], "size": spec["size"], "skipped": f"failed: {reason}"}
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return row


# --- the run --------------------------------------------------------------------------------------


RESULT_MARK = "s2m-bench-row "


def _serve() -> int:
    """Worker loop: one JSON spec per stdin line → one result line on the original standard output.

    Everything else written to standard output (by Python or C code) is redirected to standard error, so
    the result pipe only ever holds result lines.
    """
    results = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    for line in sys.stdin:
        if line.strip():
            results.write(RESULT_MARK + json.dumps(_measure_or_skip(json.loads(line))) + "\n")
            results.flush()
    return 0


class CellWorker:
    """Measures cells in a subprocess with a wall-time cap per cell (kill and restart on time-out or crash).

    Args:
        reuse: keep the process for the next cell (saves the start-up on GPU, where peak memory is
            measured by the allocator's own counters); ``False`` starts a fresh process per cell (CPU,
            where the peak resident set must start clean). A process is never reused after a skipped cell.
    """

    def __init__(self, reuse: bool = False) -> None:
        self.reuse = reuse
        self.process: subprocess.Popen | None = None
        self.stderr: Any = None

    def _start(self) -> subprocess.Popen:
        self.stderr = tempfile.TemporaryFile(mode="w+", encoding="utf-8")  # noqa: SIM115 (closed in close())
        self.process = subprocess.Popen(
            [sys.executable, "-m", "s2mnet.bench.efficiency", "--serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
        )
        return self.process

    def measure(self, spec: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        """The row of one cell; a time-out, crash or out-of-memory becomes ``{"skipped": reason}``."""
        process = self.process if self.process is not None and self.process.poll() is None else self._start()
        skipped = {"model": spec["name"], "size": spec["size"]}
        try:
            process.stdin.write(json.dumps(spec) + "\n")
            process.stdin.flush()
        except BrokenPipeError:
            pass  # the worker died at start-up; reported below
        ready, _, _ = select.select([process.stdout], [], [], timeout_s)
        if not ready:
            self.close()
            return {**skipped, "skipped": f"over the {timeout_s:.0f} s cap per cell"}
        line = process.stdout.readline()
        if not line.startswith(RESULT_MARK):
            code = process.wait()
            self.stderr.seek(0)
            last = (self.stderr.read().strip().splitlines() or [f"exit status {code}"])[-1][:120]
            self.close()
            reason = "killed (out of memory?)" if code in (-9, 137) else f"failed: {last}"
            return {**skipped, "skipped": reason}
        row = json.loads(line[len(RESULT_MARK) :])
        if not self.reuse or "skipped" in row:
            self.close()
        return row

    def close(self) -> None:
        """Stop the worker process (if any)."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait()
            for stream in (self.process.stdin, self.process.stdout):
                stream.close()
            self.process = None
        if self.stderr is not None:
            self.stderr.close()
            self.stderr = None


def run_efficiency(
    out: str | Path,
    sizes: Sequence[int] = DEFAULT_SIZES,
    models: Sequence[str] = DEFAULT_MODELS,
    device: str = "auto",
    amp: str = "none",
    batch: int = 1,
    repeats: int = 10,
    warmup: int = 2,
    budget_s: float = 60.0,
    cell_timeout_s: float = 600.0,
    threads: int | None = None,
    isolate: bool = True,
    command: Sequence[str] | None = None,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Measure every (model, size) cell, then write ``efficiency.{json,md,png}`` into ``out``.

    The JSON is rewritten after every cell, so an interrupted run keeps what it measured.
    """
    from s2mnet.engine.train import resolve_device

    unknown = sorted(set(models) - set(known_models()))
    if unknown:
        raise S2MError(f"--models: unknown {unknown}; choose from {', '.join(known_models())}")
    if any(size < 32 for size in sizes):
        raise S2MError(f"--sizes {','.join(map(str, sizes))}: sizes must be ≥ 32 pixels")
    if amp not in ("none", "bf16"):
        raise S2MError(f"--amp {amp}: use none or bf16")
    dev = resolve_device(device)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "command": list(command or sys.argv),
        "machine": machine_description(dev),
        "torch": torch.__version__,
        "device": str(dev),
        "amp": amp,
        "batch": batch,
        "repeats": repeats,
        "warmup": warmup,
        "cell_timeout_s": cell_timeout_s if isolate else None,
        "isolated": isolate,
        "rows": [],
    }
    start = time.perf_counter()
    did_not_fit: dict[str, int] = {}
    cells = [(name, size) for name in models for size in sorted(sizes)]
    worker = CellWorker(reuse=dev.type == "cuda") if isolate else None
    for i, (name, size) in enumerate(cells, start=1):
        problem = size_problem(name, size)
        if problem is None and name in did_not_fit:
            problem = f"larger than {did_not_fit[name]}, which did not fit"
        if problem is not None:
            row: dict[str, Any] = {"model": name, "size": size, "skipped": problem}
        else:
            spec = {
                "name": name,
                "size": size,
                "device": str(dev),
                "amp": amp,
                "batch": batch,
                "repeats": repeats,
                "warmup": warmup,
                "budget_s": budget_s,
                "threads": threads,
            }
            row = worker.measure(spec, cell_timeout_s) if worker is not None else _measure_or_skip(spec)
            if "skipped" in row and ("memory" in row["skipped"] or "cap" in row["skipped"]):
                did_not_fit[name] = size
        row.setdefault("pixels", size * size)
        result["rows"].append(row)
        say(f"[{i}/{len(cells)}] {format_cell(row)}")
        result["wall_s"] = round(time.perf_counter() - start, 1)
        write_tables(result, out)
    if worker is not None:
        worker.close()
    write_tables(result, out)
    plot_efficiency(result, out / "efficiency.png")
    say(f"efficiency.md, efficiency.json and efficiency.png written to {out}")
    return result


def write_tables(result: dict[str, Any], out: Path) -> None:
    """Ratios and exponents of the rows so far → ``efficiency.json`` and ``efficiency.md``."""
    from s2mnet.io_utils import atomic_write_json, atomic_write_text

    add_ratios_and_exponents(result)
    atomic_write_json(out / "efficiency.json", result)
    atomic_write_text(out / "efficiency.md", efficiency_markdown(result))


def rebuild_report(out: str | Path) -> dict[str, Any]:
    """Rebuild ``efficiency.md`` and ``.png`` from ``efficiency.json`` (e.g. after an interrupted run)."""
    from s2mnet.engine.checkpoint import read_run_json

    out = Path(out)
    path = out / "efficiency.json"
    if not path.is_file():
        raise S2MError(f"{path}: not found; run s2m bench efficiency --out {out} first")
    result = read_run_json(path)
    write_tables(result, out)
    plot_efficiency(result, out / "efficiency.png")
    return result


def machine_description(device: torch.device) -> str:
    """CPU model (and GPU name on CUDA) with core count, for the reports."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), cpu)
    except OSError:
        pass
    text = f"{cpu}, {os.cpu_count()} logical CPUs, {torch.get_num_threads()} torch threads"
    if device.type == "cuda":
        text += f"; GPU {torch.cuda.get_device_name(device)}"
    return text


def format_cell(row: dict[str, Any]) -> str:
    """One progress line per cell."""
    if "skipped" in row:
        return f"{row['model']} {row['size']}²: skipped ({row['skipped']})"
    return (
        f"{row['model']} {row['size']}²: {row['params'] / 1e6:.2f} M params, "
        f"{row['gflops_counter'] + row['gflops_fft']:.2f} GFLOPs, forward {row['fwd_ms']:.1f} ms, "
        f"step {row['step_ms']:.1f} ms, train peak {row['train_mem_mib']:.0f} MiB"
    )


RATIO_KEYS = ("params", "gflops_total", "fwd_ms", "step_ms", "fwd_mem_mib", "train_mem_mib")
EXPONENT_KEYS = ("fwd_ms", "step_ms", "fwd_mem_mib", "train_mem_mib")


def add_ratios_and_exponents(result: dict[str, Any]) -> None:
    """Add ``gflops_total``, ratios against ``s2mnet`` at the same size, and exponents per model."""
    rows = [row for row in result["rows"] if "skipped" not in row]
    for row in rows:
        row["gflops_total"] = row["gflops_counter"] + row["gflops_fft"]
    reference = {row["size"]: row for row in rows if row["model"] == REFERENCE}
    for row in rows:
        ref = reference.get(row["size"])
        if ref is not None:
            row["ratio"] = {key: _ratio(row.get(key), ref.get(key)) for key in RATIO_KEYS}
    exponents: dict[str, dict[str, float | None]] = {}
    for name in dict.fromkeys(row["model"] for row in result["rows"]):
        mine = [row for row in rows if row["model"] == name]
        exponents[name] = {
            key: fit_exponent([r["pixels"] for r in mine], [r.get(key) for r in mine])
            for key in EXPONENT_KEYS
        }
    result["exponents"] = exponents


def _ratio(value: float | None, reference: float | None) -> float | None:
    if value is None or reference is None or not reference or math.isnan(value) or math.isnan(reference):
        return None
    return value / reference


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}"


def efficiency_markdown(result: dict[str, Any]) -> str:
    """The report: absolute numbers, ratios, exponents, MASL's share, skipped cells, conventions."""
    memory = (
        "torch.cuda.max_memory_allocated (absolute)"
        if result["device"].startswith("cuda")
        else "growth of the resident set during the phase (VmHWM − VmRSS)"
    )
    lines = [
        "# s2m bench efficiency",
        "",
        f"- command: `{' '.join(result['command'])}`",
        *(
            f"- cell re-measured and merged into the JSON by hand: `{' '.join(command)}`"
            for command in result.get("merged_commands", [])
        ),
        f"- machine: {result['machine']}; torch {result['torch']}; device {result['device']}; "
        f"amp {result['amp']}; batch {result['batch']}; wall time {result.get('wall_s', 0):.0f} s",
        f"- latency: median of up to {result['repeats']} timed runs after {result['warmup']} warm-up runs; "
        f"training step = forward + loss (MASL for s2mnet*, Dice-CE otherwise) + backward + AdamW",
        "- FLOPs per image: FlopCounterMode (conv/matmul, 2 FLOPs per MAC; GMAC = counter / 2, no FFTs) "
        "+ FFTs by hand at 5·N·log2 N per complex FFT (half for real input)",
        f"- peak memory: {memory}",
        "",
        "## Absolute numbers",
        "",
        "| model | size | params (M) | GMAC | FFT GFLOPs | GFLOPs total | forward ms | forward img/s | "
        "step ms | train img/s | forward peak MiB | train peak MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in result["rows"]:
        if "skipped" in row:
            lines.append(f"| {row['model']} | {row['size']} | skipped: {row['skipped']} |||||||||")
            continue
        lines.append(
            f"| {row['model']} | {row['size']} | {row['params'] / 1e6:.3f} | {_fmt(row['gmac'])} | "
            f"{_fmt(row['gflops_fft'], 3)} | {_fmt(row['gflops_total'])} | {_fmt(row['fwd_ms'], 1)} | "
            f"{_fmt(row['fwd_img_s'], 1)} | {_fmt(row['step_ms'], 1)} | {_fmt(row['train_img_s'], 1)} | "
            f"{_fmt(row['fwd_mem_mib'], 0)} | {_fmt(row['train_mem_mib'], 0)} |"
        )
    lines += [
        "",
        f"## Ratios against `{REFERENCE}` at the same size",
        "",
        "| model | size | params | GFLOPs total | forward time | step time | forward memory | train memory |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in result["rows"]:
        if "ratio" in row:
            ratio = row["ratio"]
            cells = " | ".join(_fmt(ratio[key]) for key in RATIO_KEYS)
            lines.append(f"| {row['model']} | {row['size']} | {cells} |")
    lines += [
        "",
        "## Scaling exponents in the pixel count (least-squares slope in log-log)",
        "",
        "| model | forward time | step time | forward memory | train memory |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, values in result.get("exponents", {}).items():
        lines.append(f"| {name} | " + " | ".join(_fmt(values[key]) for key in EXPONENT_KEYS) + " |")
    masl = [row for row in result["rows"] if "masl_share" in row and row["model"] == REFERENCE]
    if masl:
        lines += [
            "",
            f"## MASL's share of a `{REFERENCE}` training step",
            "",
            "| size | MASL fwd+bwd ms | step ms | share |",
            "|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {r['size']} | {r['masl_ms']:.1f} | {r['step_ms']:.1f} | {100 * r['masl_share']:.1f} % |"
            for r in masl
        ]
    lines += ["", "![time and memory against pixel count](efficiency.png)", ""]
    return "\n".join(lines)


def plot_efficiency(result: dict[str, Any], path: Path) -> None:
    """Log-log plot of forward time, step time and training memory against pixels, exponent in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from s2mnet.io_utils import atomic_write_with

    panels = (
        ("fwd_ms", "forward time (ms)"),
        ("step_ms", "training step (ms)"),
        ("train_mem_mib", "train peak (MiB)"),
    )
    fig, axes = plt.subplots(1, 3, figsize=(16, 5))
    for ax, (key, label) in zip(axes, panels, strict=True):
        for name, exps in result.get("exponents", {}).items():
            mine = [
                r for r in result["rows"] if r["model"] == name and "skipped" not in r and r.get(key, 0) > 0
            ]
            if mine:
                ax.plot(
                    [r["pixels"] for r in mine],
                    [r[key] for r in mine],
                    "o-",
                    label=f"{name} (b={_fmt(exps[key])})",
                )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("pixels per image")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"s2m bench efficiency on {result['device']} (batch {result['batch']}); b = log-log slope")
    fig.tight_layout()
    atomic_write_with(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m s2mnet.bench.efficiency --serve``: the measuring worker of :class:`CellWorker`."""
    parser = argparse.ArgumentParser(description="measuring worker of s2m bench efficiency")
    parser.add_argument("--serve", action="store_true", required=True, help="read JSON specs from stdin")
    parser.parse_args(argv)
    return _serve()


if __name__ == "__main__":
    sys.exit(main())
