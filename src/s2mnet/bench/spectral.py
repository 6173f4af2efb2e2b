"""``s2m bench spectral``: share of spectral energy inside the central K×K block (method.md §2, Table 4).

Definition (ours; the paper states none): for a map ``x`` (H×W) take ``F = fftshift(fft2(x))`` and the
energy ``|F|²``. The central K×K block is the frequencies ``−⌊K/2⌋ … K−1−⌊K/2⌋`` on both axes (the band
the SSTM keeps, :mod:`s2mnet.models.spectral`), with K clipped to ``min(K, H, W)``. The share is the
block's energy over the total. For an image, the energies of its channels are summed (one share per
image); the image is read with :func:`s2mnet.data.read_image` (intensities in [0, 1], no normalisation)
and resized to ``size``² (bilinear, antialiased; the paper's 352). For the feature maps that reach each
SSTM of a trained model (forward pre-hooks on the mixer of every encoder stage of an S2M-Net run; the
input is the run's preprocessing, resized to ``size``²), one share per channel.

DC: with ``dc="include"`` the zero-frequency bin counts (raw images: it dominates); with ``"exclude"``
it is left out of both the block and the total (equivalent to removing the mean of each map); ``"both"``
reports both. Maps with zero energy (a constant map without DC) have no share and are left out.
The recommended K is the smallest K whose mean share reaches the threshold (0.93 in the paper).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from s2mnet.bench import DEFAULT_KS, PAPER_THRESHOLD
from s2mnet.bench.stats import mean_sd
from s2mnet.errors import RunError, S2MError

DC_MODES = ("include", "exclude")


def energy_shares(maps: torch.Tensor, ks: Sequence[int], include_dc: bool = True) -> torch.Tensor:
    """Energy share of the central K×K block for each map and each K.

    Args:
        maps: ``(N, H, W)`` real maps (or ``(N, C, H, W)``: the energies of the C channels are summed).
        ks: block sizes.
        include_dc: count the zero-frequency bin.

    Returns:
        ``(N, len(ks))`` float64 shares in [0, 1]; NaN for a map with zero energy.
    """
    x = maps.double()
    if x.ndim == 3:
        x = x[:, None]
    energy = torch.fft.fftshift(torch.fft.fft2(x), dim=(-2, -1)).abs().square().sum(dim=1)  # (N, H, W)
    height, width = energy.shape[-2:]
    if not include_dc:
        energy[:, height // 2, width // 2] = 0.0
    total = energy.sum(dim=(-2, -1))
    shares = []
    for k in ks:
        kh, kw = min(k, height), min(k, width)
        rows = slice(height // 2 - kh // 2, height // 2 - kh // 2 + kh)
        cols = slice(width // 2 - kw // 2, width // 2 - kw // 2 + kw)
        block = energy[:, rows, cols].sum(dim=(-2, -1))
        shares.append(torch.where(total > 0, block / total.clamp_min(1e-300), torch.nan))
    return torch.stack(shares, dim=1)


def recommend_k(ks: Sequence[int], means: Sequence[float], threshold: float = PAPER_THRESHOLD) -> int | None:
    """The smallest K whose mean share is ≥ ``threshold`` (``None`` if none reaches it)."""
    reached = [k for k, m in zip(ks, means, strict=True) if math.isfinite(m) and m >= threshold]
    return min(reached) if reached else None


def summarise(shares: torch.Tensor, ks: Sequence[int], threshold: float) -> dict[str, Any]:
    """Mean ± sd per K over the rows of ``shares`` (NaN rows left out), and the recommendation."""
    rows = shares.numpy()
    stats = [mean_sd(rows[:, j].tolist()) for j in range(len(ks))]
    means = [m for m, _ in stats]
    k32 = dict(zip(ks, means, strict=True)).get(32)
    return {
        "n": int(np.isfinite(rows).all(axis=1).sum()),
        "mean": means,
        "sd": [s for _, s in stats],
        "recommended_k": recommend_k(ks, means, threshold),
        "k32_reaches": None if k32 is None or not math.isfinite(k32) else bool(k32 >= threshold),
    }


def image_tensor(path: Path, size: int) -> torch.Tensor:
    """An image as ``(C, size, size)`` float in [0, 1] (read_image, bilinear antialiased resize)."""
    from s2mnet.data.io import read_image

    image = torch.from_numpy(np.ascontiguousarray(read_image(path).transpose(2, 0, 1)))
    return F.interpolate(
        image[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False
    )[0]


def mixer_modules(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The module in the token-mixer position of each encoder stage of an S2M-Net (SSTM, attention...)."""
    from s2mnet.models import S2MNet

    if not isinstance(model, S2MNet):
        raise RunError(f"{type(model).__name__} has no SSTM stages (spectral features need an S2M-Net run)")
    return [stage[-1] for stage in model.encoder]


def feature_shares(
    model: torch.nn.Module, plan: dict, paths: Sequence[Path], ks: Sequence[int], size: int, include_dc: bool
) -> list[torch.Tensor]:
    """Per encoder stage, ``(images × channels, len(ks))`` shares of the maps entering its mixer."""
    from s2mnet.data.io import read_image
    from s2mnet.data.preprocessing import preprocess

    captured: list[torch.Tensor] = []
    handles = [
        module.register_forward_pre_hook(lambda _m, inputs: captured.append(inputs[0].detach().float()))
        for module in mixer_modules(model)
    ]
    per_stage: list[list[torch.Tensor]] = [[] for _ in handles]
    device = next(model.parameters()).device
    try:
        model.eval()
        for path in paths:
            image = torch.from_numpy(
                np.ascontiguousarray(preprocess(read_image(path), plan).transpose(2, 0, 1))
            )
            x = F.interpolate(image[None], size=(size, size), mode="bilinear", align_corners=False)
            captured.clear()
            with torch.inference_mode():
                model(x.to(device))
            for stage, features in enumerate(captured):
                per_stage[stage].append(energy_shares(features[0].cpu(), ks, include_dc))
    finally:
        for handle in handles:
            handle.remove()
    return [torch.cat(shares) for shares in per_stage]


def run_spectral(
    data: str | Path,
    out: str | Path,
    run: str | Path | None = None,
    ks: Sequence[int] = DEFAULT_KS,
    size: int = 352,
    dc: str = "both",
    threshold: float = PAPER_THRESHOLD,
    limit: int | None = None,
    device: str = "auto",
    command: Sequence[str] | None = None,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Measure the shares on the images of ``data`` (and the SSTM inputs of ``run``); write the reports."""
    from s2mnet.data.discover import discover
    from s2mnet.io_utils import atomic_write_json, atomic_write_text

    if not ks or any(k < 1 for k in ks):
        raise S2MError(f"--ks {','.join(map(str, ks))}: block sizes must be positive integers")
    if size < 2:
        raise S2MError(f"--size {size}: must be ≥ 2")
    modes = DC_MODES if dc == "both" else (dc,)
    if any(mode not in DC_MODES for mode in modes):
        raise S2MError(f"--dc {dc}: use include, exclude or both")
    start = time.perf_counter()
    paths = [case.image for case in discover(data).cases][: limit or None]
    result: dict[str, Any] = {
        "command": list(command or sys.argv),
        "data": str(data),
        "size": size,
        "ks": list(ks),
        "threshold": threshold,
        "n_images": len(paths),
        "images": {},
        "features": {},
    }
    images = [image_tensor(path, size) for path in paths]
    for mode in modes:
        shares = torch.stack([energy_shares(image[None], ks, mode == "include")[0] for image in images])
        result["images"][mode] = summarise(shares, ks, threshold)
    if run is not None:
        from s2mnet.engine.checkpoint import load_model
        from s2mnet.engine.device import resolve_device
        from s2mnet.engine.rundir import run_plan

        model, config = load_model(run, device=resolve_device(device))
        plan = run_plan(Path(run), config)
        result["run"] = str(run)
        for mode in modes:
            stages = feature_shares(model, plan, paths, ks, size, mode == "include")
            result["features"][mode] = [
                {"stage": i + 1, **summarise(shares, ks, threshold)} for i, shares in enumerate(stages)
            ]
        result["feature_sizes"] = [size // 2 ** (i + 1) for i in range(len(mixer_modules(model)))]
    result["wall_s"] = round(time.perf_counter() - start, 1)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "spectral.json", result)
    text = spectral_markdown(result)
    atomic_write_text(out / "spectral.md", text)
    plot_spectral(result, out / "spectral.png")
    say(text)
    say(f"spectral.md, spectral.json and spectral.png written to {out}")
    return result


def _row(label: str, summary: dict[str, Any], ks: Sequence[int], threshold: float) -> str:
    cells = " | ".join(
        f"{m:.4f} ± {s:.4f}" if math.isfinite(m) else "–"
        for m, s in zip(summary["mean"], summary["sd"], strict=True)
    )
    k = summary["recommended_k"]
    reach = {True: "yes", False: "no", None: "–"}[summary["k32_reaches"]]
    return (
        f"| {label} | {summary['n']} | {cells} | {k if k is not None else f'none ≥ {threshold}'} | {reach} |"
    )


def spectral_markdown(result: dict[str, Any]) -> str:
    """Markdown tables: images per DC mode, then SSTM inputs per stage."""
    ks, threshold = result["ks"], result["threshold"]
    header = (
        "| maps | n | " + " | ".join(f"K={k}" for k in ks) + " | recommended K | K=32 ≥ threshold |\n"
        "|---|---:|" + "---:|" * len(ks) + "---:|---|"
    )
    lines = [
        "# s2m bench spectral",
        "",
        f"- command: `{' '.join(result['command'])}`",
        f"- {result['n_images']} images of {result['data']}, resized to {result['size']}²; share of |FFT|² "
        "inside the central K×K block (after fftshift), channels summed per image; mean ± sd over images",
        f"- recommended K: the smallest K with mean share ≥ {threshold} (the paper's threshold)",
        "",
    ]
    for mode, summary in result["images"].items():
        lines += [f"## Images, DC {mode}d", "", header, _row("images", summary, ks, threshold), ""]
    for mode, stages in result["features"].items():
        lines += [
            f"## Feature maps entering each SSTM, DC {mode}d",
            "",
            f"Run {result['run']}; mean ± sd over images × channels.",
            "",
            header,
        ]
        for stage, side in zip(stages, result["feature_sizes"], strict=True):
            lines.append(_row(f"stage {stage['stage']} ({side}²)", stage, ks, threshold))
        lines.append("")
    lines += ["![energy share against K](spectral.png)", ""]
    return "\n".join(lines)


def plot_spectral(result: dict[str, Any], path: Path) -> None:
    """Mean share ± sd against K for the images (and each SSTM stage), one panel per DC mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from s2mnet.io_utils import atomic_write_with

    modes = list(result["images"])
    fig, axes = plt.subplots(1, len(modes), figsize=(6 * len(modes), 4.5), squeeze=False)
    for ax, mode in zip(axes[0], modes, strict=True):
        curves = [("images", result["images"][mode])]
        curves += [(f"SSTM stage {s['stage']}", s) for s in result["features"].get(mode, [])]
        for label, summary in curves:
            ax.errorbar(result["ks"], summary["mean"], yerr=summary["sd"], marker="o", capsize=3, label=label)
        ax.axhline(
            result["threshold"], color="grey", linestyle="--", label=f"threshold {result['threshold']}"
        )
        ax.set_xlabel("K")
        ax.set_ylabel("energy share in the central K×K block")
        ax.set_title(f"DC {mode}d")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_write_with(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
