"""``s2m reproduce DATASET``: the paper's protocol for one benchmark, over seeds, beside the paper's numbers.

For each seed: :func:`s2mnet.engine.train.train` with the preset's plan and recipe at the chosen scale
(:mod:`s2mnet.planning.presets`),
then :func:`s2mnet.inference.evaluate.evaluate_run` on the preset's test split.
Each finished seed is written atomically into ``OUT/results.json`` at once, so an interrupted run resumes
where it stopped (finished seeds are skipped). The row — our mean ± std Dice (and IoU, HD95) beside the
paper's S2M-Net number and its best baseline — is written as ``OUT/row.md`` and ``OUT/row.json``.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path
from typing import Any

from s2mnet.errors import RunError, S2MError
from s2mnet.io_utils import atomic_write_json, atomic_write_text, read_json

RESULTS_JSON = "results.json"
SPLIT_JSON = "split.json"
ROW_MD = "row.md"
ROW_JSON = "row.json"
DEFAULT_SEEDS = "42,123,456,789,2024"  # method.md §4
_METRICS = ("dice", "iou", "hd95")


def parse_seeds(text: str) -> list[int]:
    """``"42,123"`` → ``[42, 123]``; bad or repeated seeds → S2MError."""
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise S2MError(f"--seeds {text!r}: expected comma-separated integers") from exc
    if not seeds or len(set(seeds)) != len(seeds):
        raise S2MError(f"--seeds {text!r}: give at least one seed, each once")
    return seeds


def reproduce(
    dataset: str,
    data: str | Path,
    out: str | Path,
    seeds: list[int],
    scale: str = "paper",
    device: str = "auto",
    quiet: bool = False,
) -> dict[str, Any]:
    """Run the preset's protocol for every seed not yet finished in ``out`` and return the row.

    Raises:
        S2MError: unknown preset or scale. DataError: the folder does not look like the dataset.
        RunError: ``out`` holds results of another dataset, scale, data folder or split.
    """
    from s2mnet.engine.config import TrainConfig
    from s2mnet.engine.train import train
    from s2mnet.inference.evaluate import evaluate_run
    from s2mnet.planning.presets.registry import (
        RECIPES,
        check_data,
        get_preset,
        plan_overrides,
        resolve_split,
    )

    preset = get_preset(dataset)
    data, out = Path(data), Path(out)
    index = check_data(preset, data)
    split = resolve_split(preset, index)
    plan = plan_overrides(preset, scale, len(split["train"]))
    recipe = RECIPES[scale]
    setup = {"dataset": preset.name, "scale": scale, "data": str(data.resolve()), "split": split}
    results = _load_results(out, setup)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / SPLIT_JSON, split)
    say = (lambda _: None) if quiet else (lambda text: print(text, file=sys.stderr))
    say(f"s2m reproduce {preset.name} ({scale}): {len(index.cases)} cases; split {split['source']}")
    for seed in seeds:
        if str(seed) in results["seeds"]:
            say(f"seed {seed}: finished earlier, skipped")
            continue
        say(f"seed {seed}: training")
        config = TrainConfig(
            data=data,
            out=out / f"seed_{seed}",
            seed=seed,
            device=device,
            splits=out / SPLIT_JSON,
            plan_overrides=plan,
            overwrite=True,  # a seed interrupted mid-run restarts from scratch
            quiet=quiet,
            tensorboard=False,
            command=["s2m", "reproduce", preset.name, "--scale", scale, "--seeds", str(seed)],
            **recipe,
        )
        summary = train(config)
        metrics = evaluate_run(
            summary["run_dir"],
            split="test",
            device=_device(device),
            overlays=0 if scale == "ci" else 4,  # overlay pictures cost seconds; the smoke test needs none
            progress=False,
        )
        results["seeds"][str(seed)] = _seed_result(summary, metrics)
        atomic_write_json(out / RESULTS_JSON, results)
        say(f"seed {seed}: test Dice {metrics['dice']:.4f}")
    row = make_row(preset, scale, results, [s for s in seeds if str(s) in results["seeds"]])
    row["train_plan"] = {**plan, **recipe}
    atomic_write_json(out / ROW_JSON, row)
    atomic_write_text(out / ROW_MD, format_row_markdown(row) + "\n")
    return row


def _device(name: str):
    from s2mnet.engine.device import resolve_device

    return resolve_device(name)


def _load_results(out: Path, setup: dict[str, Any]) -> dict[str, Any]:
    """Earlier results in ``out`` for the same setup, or a fresh record; another setup → RunError."""
    path = out / RESULTS_JSON
    if not path.is_file():
        if out.is_dir() and any(out.iterdir()) and not (out / SPLIT_JSON).is_file():
            raise RunError(f"{out}: not empty and not an s2m reproduce folder; choose a new --out")
        return {**setup, "seeds": {}}
    results = read_json(path, RunError, what="results file")
    for key, value in setup.items():
        if results.get(key) != value:
            raise RunError(f"{path}: holds results with another {key}; use another --out")
    return results


def _seed_result(summary: dict[str, Any], metrics: dict[str, Any]) -> dict[str, Any]:
    """One seed's numbers; volume data (BraTS, ACDC) report Dice per 3-D volume, as the field does."""
    result: dict[str, Any] = {name: metrics.get(name) for name in _METRICS}
    names = metrics.get("class_names", {})
    per_class = metrics.get("per_class") or {}
    volumes = metrics.get("volumes")
    if volumes:
        result["dice_per_slice"] = result["dice"]
        result["dice"] = volumes["dice"]
        per_class = volumes["per_class"]
    result["dice_unit"] = "volume" if volumes else "image"
    result["per_class"] = {names.get(key, key): values.get("dice") for key, values in per_class.items()}
    result.update(
        n_test=metrics.get("n_cases"),
        best_val_dice=summary.get("best_dice"),
        best_epoch=summary.get("best_epoch"),
        epochs_run=summary.get("epochs_run"),
        wall_s=summary.get("wall_s"),
        run_dir=summary.get("run_dir"),
    )
    return result


def _mean_std(values: list[float]) -> dict[str, float | None]:
    """Mean and sample standard deviation (None with one value), as the paper's "mean ± std over runs"."""
    clean = [float(v) for v in values if isinstance(v, int | float)]
    if not clean:
        return {"mean": None, "std": None}
    return {"mean": statistics.fmean(clean), "std": statistics.stdev(clean) if len(clean) > 1 else None}


def make_row(preset, scale: str, results: dict[str, Any], seeds: list[int]) -> dict[str, Any]:
    """Our mean ± std over ``seeds`` beside the paper's numbers (Dice in %, HD95 in pixels)."""
    runs = [results["seeds"][str(s)] for s in seeds]
    ours = {name: _mean_std([r.get(name) for r in runs]) for name in _METRICS}
    for name in ("dice", "iou"):
        ours[name] = {k: None if v is None else 100.0 * v for k, v in ours[name].items()}
    classes = sorted({c for r in runs for c in r.get("per_class", {})})
    per_class = (
        {
            c: _mean_std([100.0 * r["per_class"][c] for r in runs if r["per_class"].get(c) is not None])
            for c in classes
        }
        if len(classes) > 1
        else {}
    )
    best_name, best_value = preset.paper.best_baseline()
    return {
        "dataset": preset.title,
        "preset": preset.name,
        "scale": scale,
        "seeds": seeds,
        "split": results["split"]["source"],
        "n_test": runs[0]["n_test"] if runs else None,
        "dice_unit": runs[0].get("dice_unit", "image") if runs else "image",
        "ours": ours,
        "ours_per_class": per_class,
        "paper_s2mnet": preset.paper.s2mnet,
        "paper_per_class": dict(preset.paper.per_class),
        "paper_best_baseline": {"name": best_name, "dice": best_value},
        "wall_s": sum(float(r.get("wall_s") or 0.0) for r in runs),
        "protocol_note": "paper protocol"
        if scale == "paper"
        else f"reduced {scale} protocol: not comparable",
    }


def _pm(stat: dict[str, float | None], digits: int = 2) -> str:
    if stat["mean"] is None:
        return "–"
    return f"{stat['mean']:.{digits}f}" + (f" ± {stat['std']:.{digits}f}" if stat["std"] is not None else "")


def format_row_markdown(row: dict[str, Any]) -> str:
    """The row as a Markdown table (one line per class when the run has several)."""
    best = row["paper_best_baseline"]
    lines = [
        "| dataset | scale | seeds | our Dice % | our IoU % | our HD95 px | paper S2M-Net | "
        "paper best baseline | split |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| {row['dataset']} | {row['scale']} | {len(row['seeds'])} | {_pm(row['ours']['dice'])} | "
        f"{_pm(row['ours']['iou'])} | {_pm(row['ours']['hd95'], 1)} | {row['paper_s2mnet']:.2f} | "
        f"{best['dice']:.2f} ({best['name']}) | {row['split']} |",
    ]
    for name, stat in row.get("ours_per_class", {}).items():
        paper = row["paper_per_class"].get(name)
        lines.append(
            f"| {row['dataset']}: {name} | {row['scale']} | {len(row['seeds'])} | {_pm(stat)} | | | "
            f"{'–' if paper is None else f'{paper:.2f}'} | | |"
        )
    lines.append("")
    lines.append(
        f"{row['protocol_note']}; "
        + ("Dice per 3-D volume (IoU and HD95 per 2-D slice); " if row.get("dice_unit") == "volume" else "")
        + f"seeds {', '.join(map(str, row['seeds']))}; "
        f"training + evaluation wall time {row['wall_s'] / 60:.1f} min."
    )
    return "\n".join(lines)
