"""One (model, size) cell: :func:`measure_cell` in this process, or in a subprocess with a time cap.

Every cell is measured in a subprocess (``python -m s2mnet.bench.efficiency --serve``; a fresh one per cell
on CPU, one reused across cells on GPU, see :class:`CellWorker`) with a wall-time cap, so an out-of-memory
error or a cell that is too slow is reported as "skipped" with its reason instead of ending the run, and
the CPU peak-memory mark starts clean.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
import tempfile
from collections.abc import Callable
from typing import Any

import torch

from s2mnet.bench.efficiency.measure import PeakMemory, median_seconds, model_flops, synthetic_masks
from s2mnet.bench.efficiency.peers import build_model, loss_name_for
from s2mnet.bench.efficiency.training import make_trainer


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
    channels_last: bool = False,
    compile: bool = False,
) -> dict[str, Any]:
    """All numbers of one (model, size) cell, measured in this process.

    Args:
        name: model name (:func:`~s2mnet.bench.efficiency.peers.known_models`).
        size: square input side.
        device: ``cpu``, ``cuda`` or ``cuda:N``.
        amp: ``none`` or ``bf16`` (forward: autocast on any device; training step: CUDA only, as in
            ``s2m train``).
        batch: images per forward pass and per training step.
        repeats: timed runs per measurement (median).
        warmup: untimed runs before timing.
        budget_s: seconds per measurement (fewer repeats when slower).
        threads: ``torch.set_num_threads`` (``None``: torch's default).
        channels_last: model and inputs in NHWC, as ``s2m train --channels-last``.
        compile: ``torch.compile`` the training step, as ``s2m train --compile`` (the forward stays eager).

    Returns:
        The row: ``params``, forward ``fwd_*``, training step ``step_*``/``train_*`` (timed through a real
        :class:`~s2mnet.engine.trainer.Trainer`, :mod:`s2mnet.bench.efficiency.training`), MASL's share,
        FLOPs.
    """
    from s2mnet.losses import create_loss

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    dev = torch.device(device)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = build_model(name)
    row: dict[str, Any] = {"model": name, "size": size, "pixels": size * size, "batch": batch}
    row["params"] = sum(p.numel() for p in model.parameters())
    model = model.to(dev, memory_format=memory_format)
    autocast = _autocast(dev, amp)
    images = torch.randn(batch, 3, size, size, device=dev).contiguous(memory_format=memory_format)

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
    trainer = make_trainer(model, loss_fn, images, targets, dev, amp, channels_last, compile)
    with PeakMemory(dev) as memory:  # the first step: allocates the optimizer state (and compiles)
        trainer.train_epoch()
    step_s, step_runs = median_seconds(trainer.train_epoch, dev, repeats, warmup, budget_s)
    row.update(
        loss=loss_name,
        step_ms=1e3 * step_s,
        step_runs=step_runs,
        step_amp=trainer.amp,
        train_img_s=batch / step_s,
        train_mem_mib=memory.mib,
        channels_last=channels_last,
        compile=compile,
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


# --- the worker -----------------------------------------------------------------------------------


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
