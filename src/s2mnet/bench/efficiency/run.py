"""``s2m bench efficiency``: the run over every (model, size) cell.

``python -m s2mnet.bench.efficiency --serve`` is the measuring worker of
:class:`~s2mnet.bench.efficiency.cells.CellWorker` (one fresh process per cell).
"""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from s2mnet.bench import DEFAULT_MODELS, DEFAULT_SIZES
from s2mnet.bench.efficiency.cells import CellWorker, _measure_or_skip, _serve
from s2mnet.bench.efficiency.peers import known_models, size_problem
from s2mnet.bench.efficiency.report import (
    format_cell,
    peer_ratio_lines,
    plot_efficiency,
    write_tables,
)
from s2mnet.errors import S2MError


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
    channels_last: bool = False,
    compile: bool = False,
) -> dict[str, Any]:
    """Measure every (model, size) cell, then write ``efficiency.{json,md,png}`` into ``out``.

    The JSON is rewritten after every cell, so an interrupted run keeps what it measured. At the end,
    every model is compared with MONAI's UNet of the same run (when it was measured), one line per size.

    Args:
        out: output folder.
        sizes: square input sides (≥ 32).
        models: names of :func:`~s2mnet.bench.efficiency.peers.known_models`.
        device: ``auto``, ``cpu``, ``cuda``.
        amp: ``none`` or ``bf16``.
        batch: images per forward pass and per training step.
        repeats: timed runs per measurement (median).
        warmup: untimed runs before timing.
        budget_s: seconds per measurement (fewer repeats when slower).
        cell_timeout_s: seconds per cell before it is skipped (subprocess cells only).
        threads: torch CPU threads per cell (``None``: torch's default).
        isolate: one subprocess per cell with a time cap (``False``: in this process, for debugging).
        command: the command line written into the report (default ``sys.argv``).
        say: progress printer.
        channels_last: NHWC model and inputs (``s2m train --channels-last``).
        compile: ``torch.compile`` the training step (``s2m train --compile``).

    Returns:
        The result written to ``efficiency.json``.

    Raises:
        S2MError: unknown models, sizes below 32, an unknown ``amp``.
    """
    from s2mnet.engine.device import resolve_device

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
        "threads": threads,
        "repeats": repeats,
        "warmup": warmup,
        "cell_timeout_s": cell_timeout_s if isolate else None,
        "isolated": isolate,
        "channels_last": channels_last,
        "compile": compile,
        "training_step": "s2m train's Trainer.train_epoch over a one-batch in-memory loader",
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
                "channels_last": channels_last,
                "compile": compile,
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
    for line in peer_ratio_lines(result):
        say(line)
    say(f"efficiency.md, efficiency.json and efficiency.png written to {out}")
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


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m s2mnet.bench.efficiency --serve``: the measuring worker of the subprocess cells.

    The benchmark itself is ``s2m bench efficiency`` (:mod:`s2mnet.cli.bench`); this entry point only
    serves the cells it starts.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["--serve"]:
        return _serve()
    print(
        "error: run the benchmark with `s2m bench efficiency` (this module only serves its cells)",
        file=sys.stderr,
    )
    return 2
