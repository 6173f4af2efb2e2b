"""The report of ``s2m bench efficiency``: ratios, scaling exponents, Markdown, JSON and the plot.

Ratios are taken at the same size against two models measured in the same run: ``s2mnet``
(:data:`REFERENCE`, the ``ratio`` of each row) and MONAI's UNet (:data:`PEER_REFERENCE`,
``ratio_monai_unet``). Scaling exponent: least-squares slope of log(time or memory) against log(pixel
count) over the sizes that were measured (:func:`s2mnet.bench.stats.fit_exponent`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from s2mnet.bench.stats import fit_exponent
from s2mnet.errors import S2MError

REFERENCE = "s2mnet"
#: The peer every model is also compared with (the lead's question: S2M-Net against MONAI's UNet).
PEER_REFERENCE = "monai_unet"


def write_tables(result: dict[str, Any], out: Path) -> None:
    """Ratios and exponents of the rows so far → ``efficiency.json`` and ``efficiency.md``."""
    from s2mnet.io_utils import atomic_write_json, atomic_write_text

    add_ratios_and_exponents(result)
    atomic_write_json(out / "efficiency.json", result)
    atomic_write_text(out / "efficiency.md", efficiency_markdown(result))


def rebuild_report(out: str | Path) -> dict[str, Any]:
    """Rebuild ``efficiency.md`` and ``.png`` from ``efficiency.json`` (e.g. after an interrupted run)."""
    from s2mnet.engine.rundir import read_run_json

    out = Path(out)
    path = out / "efficiency.json"
    if not path.is_file():
        raise S2MError(f"{path}: not found; run s2m bench efficiency --out {out} first")
    result = read_run_json(path)
    write_tables(result, out)
    plot_efficiency(result, out / "efficiency.png")
    return result


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
_RATIO_HEADER = (
    "| model | size | params | GFLOPs total | forward time | step time | forward memory | train memory |",
    "|---|---:|---:|---:|---:|---:|---:|---:|",
)


def add_ratios_and_exponents(result: dict[str, Any]) -> None:
    """Add ``gflops_total``, ratios at the same size and exponents per model.

    ``ratio``: against :data:`REFERENCE` (``s2mnet``); ``ratio_monai_unet``: against :data:`PEER_REFERENCE`
    (MONAI's UNet), each only where that model was measured at the row's size in this run.
    """
    rows = [row for row in result["rows"] if "skipped" not in row]
    for row in rows:
        row["gflops_total"] = row["gflops_counter"] + row["gflops_fft"]
    for name, key in ((REFERENCE, "ratio"), (PEER_REFERENCE, f"ratio_{PEER_REFERENCE}")):
        reference = {row["size"]: row for row in rows if row["model"] == name}
        for row in rows:
            ref = reference.get(row["size"])
            if ref is not None:
                row[key] = {k: _ratio(row.get(k), ref.get(k)) for k in RATIO_KEYS}
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


def _ratio_rows(result: dict[str, Any], key: str) -> list[str]:
    """Markdown rows of the ratios stored under ``key``."""
    return [
        f"| {row['model']} | {row['size']} | " + " | ".join(_fmt(row[key][k]) for k in RATIO_KEYS) + " |"
        for row in result["rows"]
        if key in row
    ]


def peer_ratio_lines(result: dict[str, Any]) -> list[str]:
    """One console line per measured model and size against MONAI's UNet of the same run.

    Args:
        result: the run's result after :func:`add_ratios_and_exponents`.

    Returns:
        e.g. ``s2mnet 256²: training step 1.40× monai_unet (812.0 vs 580.1 ms), forward 1.21×, ...``; empty
        without a measured ``monai_unet``.
    """
    key = f"ratio_{PEER_REFERENCE}"
    peers = {row["size"]: row for row in result["rows"] if row["model"] == PEER_REFERENCE and key in row}
    lines = []
    for row in result["rows"]:
        if key not in row or row["model"] == PEER_REFERENCE:
            continue
        ratio, peer = row[key], peers[row["size"]]
        lines.append(
            f"{row['model']} {row['size']}²: training step {_fmt(ratio['step_ms'])}× {PEER_REFERENCE} "
            f"({row['step_ms']:.1f} vs {peer['step_ms']:.1f} ms), forward {_fmt(ratio['fwd_ms'])}×, "
            f"train memory {_fmt(ratio['train_mem_mib'])}×, params {_fmt(ratio['params'])}×, "
            f"GFLOPs {_fmt(ratio['gflops_total'])}×"
        )
    return lines


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
        f"amp {result['amp']}; batch {result['batch']}; torch threads per cell "
        f"{result.get('threads') or 'default'}; wall time {result.get('wall_s', 0):.0f} s",
        f"- latency: median of up to {result['repeats']} timed runs after {result['warmup']} warm-up runs",
        "- training step: one `Trainer.train_epoch` of `s2m train` over a one-batch in-memory loader "
        "(host→device copy, model + loss under the Trainer's autocast, backward, gradient clipping 1.0, "
        "AdamW, scheduler; MASL for s2mnet*, Dice-CE otherwise; no data loading); "
        f"channels_last {result.get('channels_last', False)}, compile {result.get('compile', False)}",
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
        *_RATIO_HEADER,
    ]
    lines += _ratio_rows(result, "ratio")
    if any(f"ratio_{PEER_REFERENCE}" in row for row in result["rows"]):
        lines += [
            "",
            f"## Ratios against `{PEER_REFERENCE}` (MONAI's UNet, measured in this run) at the same size",
            "",
            *_RATIO_HEADER,
            *_ratio_rows(result, f"ratio_{PEER_REFERENCE}"),
        ]
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
