"""``s2m bench ablation``: variants × seeds under one budget, one held-out split, paired statistics.

Protocol:

* One split for everything: ``OUT/splits.json`` is written once (from ``--splits FILE``, else
  :func:`s2mnet.data.make_splits` with ``--split-seed``, independent of the training seeds; DRIVE's
  published test images stay the test split) and every run trains with it, so all variants and seeds
  are evaluated on the same test cases.
* Each (variant, seed) is trained with :func:`s2mnet.engine.train.train` (identical plan overrides) into
  ``OUT/runs/<variant>_s<seed>`` and evaluated on the test split with
  :func:`s2mnet.engine.evaluate.evaluate_run` (best checkpoint, per-case Dice and HD95).
* Resumable: every finished (variant, seed) is appended as one JSON line to ``OUT/results.jsonl``
  (rewritten atomically); a rerun skips those and retrains unfinished ones from scratch. The budget is
  stored in ``OUT/ablation_config.json``; a rerun with another data folder or budget is refused.
* Report (rebuilt from all of ``results.jsonl`` after every run, and with ``--report-only``):
  mean ± sd over seeds of the per-seed mean test Dice and HD95 per variant; against the reference
  (``full``), the paired t-test and the Wilcoxon signed-rank test (:mod:`s2mnet.bench.stats`) (a) over
  seeds on the per-seed mean Dice, (b) over test cases on the per-case Dice averaged over the seeds both
  variants share; each family of p-values is Bonferroni-corrected over the number of variants compared.
  With 3 seeds the smallest possible two-sided Wilcoxon p is 0.25: the seed-level Wilcoxon cannot
  reach significance, the case-level tests carry the power.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from s2mnet.bench.stats import bonferroni, mean_sd, paired_tests
from s2mnet.errors import S2MError

REFERENCE = "full"
RESULTS = "results.jsonl"
CONFIG = "ablation_config.json"
SPLITS = "splits.json"


@dataclass(frozen=True)
class Variant:
    """One ablation arm: a model and a loss from the registries, with their overrides."""

    model: str
    loss: str
    description: str
    model_args: dict[str, Any] = field(default_factory=dict)
    loss_args: dict[str, Any] = field(default_factory=dict)


VARIANTS: dict[str, Variant] = {
    "full": Variant("s2mnet", "masl", "S2M-Net (SSTM K=32) + MASL, learned weights (reference)"),
    "no_sstm": Variant("s2mnet_none", "masl", "no token mixer"),
    "attention": Variant("s2mnet_attention", "masl", "parameter-matched self-attention instead of SSTM"),
    "k16": Variant("s2mnet_k16", "masl", "SSTM band K=16"),
    "k64": Variant("s2mnet_k64", "masl", "SSTM band K=64"),
    "dicece": Variant("s2mnet", "dicece", "S2M-Net + Dice-CE instead of MASL"),
    "masl_fixed": Variant("s2mnet", "masl_fixed", "MASL with fixed weights"),
    "masl_nomod": Variant("s2mnet", "masl_nomod", "MASL without morphology modulation"),
    "masl_paper": Variant("s2mnet", "masl_paper", "MASL with the paper's weighting (vs learned = full)"),
    **{
        f"masl_no_{part}": Variant("s2mnet", f"masl_no_{part}", f"MASL without the {part} component")
        for part in ("core", "boundary", "structure", "scale", "texture")
    },
    "no_bfd": Variant("s2mnet_nobfd", "masl", "BFD without routing"),
    "no_mrfse": Variant("s2mnet_nomrfse", "masl", "no MRF-SE blocks"),
    "official": Variant("s2mnet_official", "masl", "SSTM as the authors' TensorFlow code computes it"),
    "unet_dicece": Variant("unet", "dicece", "classic U-Net + Dice-CE"),
    "unet_masl": Variant("unet", "masl", "classic U-Net + MASL"),
}


def parse_variants(text: str) -> list[str]:
    """``"all"`` or a comma list of :data:`VARIANTS` names (the reference is always added first)."""
    names = list(VARIANTS) if text.strip() == "all" else [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise S2MError(f"--variants: unknown {unknown}; choose from all, {', '.join(VARIANTS)}")
    return list(dict.fromkeys([REFERENCE, *names]))


@dataclass
class AblationConfig:
    """Everything ``s2m bench ablation`` accepts (see :func:`run_ablation`)."""

    data: str | Path | None
    out: str | Path
    variants: list[str] = field(default_factory=lambda: [REFERENCE])
    seeds: list[int] = field(default_factory=lambda: [42, 123, 456])
    plan: dict[str, Any] = field(default_factory=dict)
    splits: str | Path | None = None
    split_seed: int = 0
    device: str = "auto"
    jobs: int = 1
    amp: str = "none"
    workers: int | None = None
    time_limit_s: float | None = None
    val_every: int | None = None
    drop_weights: bool = False
    command: list[str] | None = None


# --- one job --------------------------------------------------------------------------------------


def run_job(spec: dict[str, Any]) -> dict[str, Any]:
    """Train and evaluate one (variant, seed) in this process; returns its result record."""
    from s2mnet.engine.evaluate import evaluate_run
    from s2mnet.engine.train import TrainConfig, resolve_device, train

    variant = VARIANTS[spec["variant"]]
    run_dir = Path(spec["run_dir"])
    start = time.perf_counter()
    summary = train(
        TrainConfig(
            data=spec["data"],
            out=run_dir,
            model=variant.model,
            loss=variant.loss,
            seed=spec["seed"],
            device=spec["device"],
            plan_overrides=dict(spec["plan"]),
            splits=spec["splits"],
            model_args=dict(variant.model_args),
            loss_args=dict(variant.loss_args),
            amp=spec["amp"],
            workers=spec["workers"],
            time_limit_s=spec["time_limit_s"],
            val_every=spec.get("val_every"),
            overwrite=True,
            quiet=True,
            tensorboard=False,
            command=spec["command"],
        )
    )
    train_s = time.perf_counter() - start
    metrics = evaluate_run(
        run_dir, split="test", overlays=0, device=resolve_device(spec["device"]), progress=False
    )
    cases = {row["case_id"]: {"dice": row["dice"], "hd95": row.get("hd95")} for row in metrics["cases"]}
    if spec.get("drop_weights"):
        for weights in run_dir.glob("*.safetensors"):
            weights.unlink()
    return {
        "variant": spec["variant"],
        "seed": spec["seed"],
        "model": variant.model,
        "loss": variant.loss,
        "dice": metrics["dice"],
        "hd95": metrics.get("hd95"),
        "best_val_dice": summary["best_dice"],
        "epochs_run": summary["epochs_run"],
        "stopped_early": summary["stopped_early"],
        "stopped_by_time": summary["stopped_by_time"],
        "train_s": round(train_s, 1),
        "wall_s": round(time.perf_counter() - start, 1),
        "command": spec["command"],
        "machine": _machine(resolve_device(spec["device"])),
        "cases": cases,
    }


def _job_in_subprocess(spec: dict[str, Any], threads: int) -> dict[str, Any]:
    """Run :func:`run_job` in a fresh Python process with ``threads`` intra-op threads."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    command = [sys.executable, "-m", "s2mnet.bench.ablation", "--job", json.dumps(spec)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        reason = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        raise RuntimeError(reason)
    return json.loads(lines[-1])


# --- results file ---------------------------------------------------------------------------------


def read_results(out: Path) -> list[dict[str, Any]]:
    """All records of ``OUT/results.jsonl`` (a later record of the same (variant, seed) wins)."""
    path = out / RESULTS
    if not path.is_file():
        return []
    records: dict[tuple[str, int], dict[str, Any]] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise S2MError(f"{path}: line {number} is not valid JSON") from None
        records[(record["variant"], int(record["seed"]))] = record
    return list(records.values())


def append_result(out: Path, record: dict[str, Any]) -> None:
    """Append one record to ``results.jsonl`` (the file is rewritten atomically: never half a line)."""
    from s2mnet.io_utils import atomic_write_text

    path = out / RESULTS
    old = path.read_text(encoding="utf-8") if path.is_file() else ""
    if old and not old.endswith("\n"):
        old += "\n"
    atomic_write_text(path, old + json.dumps(record) + "\n")


# --- the run --------------------------------------------------------------------------------------


def _budget(config: AblationConfig) -> dict[str, Any]:
    return {
        "data": str(Path(config.data).resolve()) if config.data is not None else None,
        "plan": config.plan,
        "time_limit_s": config.time_limit_s,
        "val_every": config.val_every,
        "amp": config.amp,
    }


def prepare_out(config: AblationConfig) -> Path:
    """Create ``OUT`` with its split and budget files, or check that a rerun uses the same ones."""
    from s2mnet.data import discover, load_splits, make_splits, save_splits
    from s2mnet.io_utils import atomic_write_json

    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    budget = _budget(config)
    stored = out / CONFIG
    if stored.is_file():
        previous = json.loads(stored.read_text(encoding="utf-8"))
        if previous != budget:
            raise S2MError(
                f"{stored}: results in {out} were made with another data folder or budget "
                f"({previous}); use a new --out or the same flags"
            )
    else:
        atomic_write_json(stored, budget)
    if not (out / SPLITS).is_file():
        index = discover(config.data)
        splits = (
            load_splits(config.splits, index) if config.splits else make_splits(index, seed=config.split_seed)
        )
        if not splits.get("test"):
            raise S2MError(f"{config.data}: the split has no test cases")
        save_splits(splits, out / SPLITS)
    elif config.splits:
        raise S2MError(f"{out / SPLITS}: already exists; drop --splits to reuse it, or use a new --out")
    return out


def run_ablation(config: AblationConfig, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Train and evaluate every missing (variant, seed), appending results; then write the report."""
    if config.data is None or not Path(config.data).is_dir():
        raise S2MError(f"{config.data}: dataset folder not found")
    if config.jobs < 1:
        raise S2MError(f"--jobs {config.jobs}: must be ≥ 1")
    out = prepare_out(config)
    done = {(r["variant"], int(r["seed"])) for r in read_results(out)}
    todo = [(v, s) for s in config.seeds for v in config.variants if (v, s) not in done]
    total = len(config.variants) * len(config.seeds)
    say(
        f"s2m bench ablation: {total} runs, {total - len(todo)} already in {out / RESULTS}, {len(todo)} to do"
    )
    threads = max(1, (os.cpu_count() or 1) // config.jobs)
    if config.workers is None and config.jobs > 1 and _on_cuda(config.device):
        config.workers = max(1, threads - 1)  # data loaders of concurrent jobs share the CPU cores
    specs = [_spec(config, out, variant, seed) for variant, seed in todo]
    start = time.perf_counter()
    finished = failed = 0

    def report_progress(spec: dict[str, Any], record: dict[str, Any] | None, error: str | None) -> None:
        nonlocal finished, failed
        finished += 1
        elapsed = time.perf_counter() - start
        eta = elapsed / finished * (len(specs) - finished)
        position = f"[{total - len(todo) + finished}/{total}] {spec['variant']} seed {spec['seed']}"
        if record is not None:
            append_result(out, record)
            write_report(out, config.command)
            say(
                f"{position}: test Dice {record['dice']:.4f}, HD95 {_num(record['hd95'], 1)} "
                f"({record['wall_s']:.0f} s); ETA {_clock(eta)}"
            )
        else:
            failed += 1
            say(f"{position}: FAILED ({error}); it will be retried on the next run; ETA {_clock(eta)}")

    if config.jobs == 1:
        for spec in specs:
            say(f"training {spec['variant']} seed {spec['seed']} ...")
            try:
                record, error = run_job(spec), None
            except S2MError:
                raise  # a bad flag or data folder fails every run: stop at once
            except Exception as exc:  # one failed run must not lose the others
                record, error = None, f"{type(exc).__name__}: {exc}"
            report_progress(spec, record, error)
    else:
        with ThreadPoolExecutor(max_workers=config.jobs) as pool:
            futures = {pool.submit(_job_in_subprocess, spec, threads): spec for spec in specs}
            for future in as_completed(futures):
                try:
                    record, error = future.result(), None
                except Exception as exc:  # one failed run must not lose the others
                    record, error = None, str(exc)
                report_progress(futures[future], record, error)
    report = write_report(out, config.command)
    say(
        f"report: {out / 'ablation.md'} ({failed} failed run(s))"
        if failed
        else f"report: {out / 'ablation.md'}"
    )
    return report


def _on_cuda(device: str) -> bool:
    from s2mnet.engine.train import resolve_device

    return resolve_device(device).type == "cuda"


def _spec(config: AblationConfig, out: Path, variant: str, seed: int) -> dict[str, Any]:
    return {
        "variant": variant,
        "seed": seed,
        "data": str(config.data),
        "run_dir": str(out / "runs" / f"{variant}_s{seed}"),
        "splits": str(out / SPLITS),
        "plan": config.plan,
        "device": config.device,
        "amp": config.amp,
        "workers": config.workers,
        "time_limit_s": config.time_limit_s,
        "val_every": config.val_every,
        "drop_weights": config.drop_weights,
        "command": list(config.command or sys.argv),
    }


# --- report ---------------------------------------------------------------------------------------


def summarise_results(records: list[dict[str, Any]], reference: str = REFERENCE) -> dict[str, Any]:
    """Per-variant mean ± sd and the paired tests against ``reference`` (see the module docstring)."""
    by_variant: dict[str, dict[int, dict[str, Any]]] = {}
    for record in records:
        by_variant.setdefault(record["variant"], {})[int(record["seed"])] = record
    order = [v for v in VARIANTS if v in by_variant] + sorted(set(by_variant) - set(VARIANTS))
    ref = by_variant.get(reference, {})
    compared = [v for v in order if v != reference and set(by_variant[v]) & set(ref)]
    rows = []
    for name in order:
        runs = by_variant[name]
        dice_mean, dice_sd = mean_sd([r["dice"] for r in runs.values()])
        hd_mean, hd_sd = mean_sd([r["hd95"] for r in runs.values() if r.get("hd95") is not None])
        row: dict[str, Any] = {
            "variant": name,
            "description": VARIANTS[name].description if name in VARIANTS else "",
            "seeds": sorted(runs),
            "dice_mean": dice_mean,
            "dice_sd": dice_sd,
            "hd95_mean": hd_mean,
            "hd95_sd": hd_sd,
            "wall_s": sum(r.get("wall_s", 0.0) for r in runs.values()),
        }
        if name in compared:
            seeds = sorted(set(runs) & set(ref))
            row["vs_reference"] = _comparison(runs, ref, seeds, len(compared))
        rows.append(row)
    return {"reference": reference, "comparisons": len(compared), "variants": rows}


def _comparison(
    runs: dict[int, dict[str, Any]], ref: dict[int, dict[str, Any]], seeds: list[int], m: int
) -> dict[str, Any]:
    by_seed = paired_tests([runs[s]["dice"] for s in seeds], [ref[s]["dice"] for s in seeds])
    cases = sorted(set.intersection(*(set(runs[s]["cases"]) & set(ref[s]["cases"]) for s in seeds)))

    def case_mean(source: dict[int, dict[str, Any]], case: str) -> float:
        return sum(source[s]["cases"][case]["dice"] for s in seeds) / len(seeds)

    by_case = paired_tests([case_mean(runs, c) for c in cases], [case_mean(ref, c) for c in cases])
    result: dict[str, Any] = {"seeds": seeds, "by_seed": by_seed, "by_case": by_case}
    for family in (by_seed, by_case):
        family["t_p_bonf"] = bonferroni(family["t_p"], m)
        family["wilcoxon_p_bonf"] = bonferroni(family["wilcoxon_p"], m)
    return result


def write_report(out: Path, command: Sequence[str] | None = None) -> dict[str, Any]:
    """Rebuild ``ablation.{json,md,png}`` from all of ``results.jsonl``."""
    from s2mnet.io_utils import atomic_write_json, atomic_write_text

    records = read_results(out)
    if not records:
        raise S2MError(f"{out / RESULTS}: no results yet")
    summary = summarise_results(records)
    summary.update(
        command=list(command or sys.argv),
        run_commands=_distinct(r.get("command") for r in records),
        machines=_distinct(r.get("machine") for r in records),
        total_run_wall_s=round(sum(r.get("wall_s", 0.0) for r in records), 1),
        budget=json.loads((out / CONFIG).read_text(encoding="utf-8")) if (out / CONFIG).is_file() else None,
    )
    atomic_write_json(out / "ablation.json", summary)
    atomic_write_text(out / "ablation.md", ablation_markdown(summary))
    plot_ablation(summary, records, out / "ablation.png")
    return summary


def _distinct(values: Any) -> list[Any]:
    """The distinct non-empty values, in first-seen order (JSON-comparable)."""
    seen: dict[str, Any] = {}
    for value in values:
        if value:
            seen.setdefault(json.dumps(value, sort_keys=True), value)
    return list(seen.values())


def _machine(device: Any) -> dict[str, str]:
    """Where a run was made: CPU (and GPU) name, torch and Python versions."""
    import torch

    from s2mnet.bench.efficiency import machine_description

    return {
        "description": machine_description(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def _num(value: float | None, digits: int = 4) -> str:
    return "–" if value is None or value != value else f"{value:.{digits}f}"


def _p(family: dict[str, Any], key: str) -> str:
    raw, corrected = family.get(key), family.get(f"{key}_bonf")
    return "–" if raw is None else f"{raw:.3g} ({corrected:.3g})"


def ablation_markdown(summary: dict[str, Any]) -> str:
    """The Markdown report (see the module docstring for the statistics)."""
    lines = [
        "# s2m bench ablation",
        "",
        *[f"- command: `{' '.join(c)}`" for c in summary["run_commands"]],
        *[
            f"- machine: {m['description']}; torch {m['torch']}; Python {m['python']}"
            for m in summary["machines"]
        ],
        f"- report written by: `{' '.join(summary['command'])}`",
        f"- budget: `{json.dumps(summary['budget'])}`",
        f"- wall time, training + evaluation, summed over runs: {_clock(summary['total_run_wall_s'])}",
        "- Dice / HD95: mean ± sd over seeds of the per-seed mean over the test cases (same split for all)",
        f"- p-values against `{summary['reference']}`: raw (Bonferroni over {summary['comparisons']} "
        "comparisons); by seed: paired over the per-seed mean Dice; by case: paired over the per-case Dice "
        "averaged over the shared seeds. t = paired t-test, W = Wilcoxon signed-rank (two-sided)",
        "",
        "| variant | seeds | Dice | ΔDice | HD95 (px) | t by seed | W by seed | t by case | W by case |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in summary["variants"]:
        comparison = row.get("vs_reference")
        if comparison:
            seed_fam, case_fam = comparison["by_seed"], comparison["by_case"]
            stats = " | ".join(
                [
                    f"{seed_fam['mean_diff']:+.4f}",
                    _num(row["hd95_mean"], 1) + " ± " + _num(row["hd95_sd"], 1),
                    _p(seed_fam, "t_p"),
                    _p(seed_fam, "wilcoxon_p"),
                    _p(case_fam, "t_p"),
                    _p(case_fam, "wilcoxon_p"),
                ]
            )
        else:
            stats = f"– | {_num(row['hd95_mean'], 1)} ± {_num(row['hd95_sd'], 1)} | – | – | – | –"
        lines.append(
            f"| {row['variant']} | {len(row['seeds'])} | {_num(row['dice_mean'])} ± {_num(row['dice_sd'])} | "
            f"{stats} |"
        )
    lines += ["", "Variants:", ""]
    lines += [f"- `{row['variant']}`: {row['description']}" for row in summary["variants"]]
    lines += ["", "![Dice per variant](ablation.png)", ""]
    return "\n".join(lines)


def plot_ablation(summary: dict[str, Any], records: list[dict[str, Any]], path: Path) -> None:
    """Bars of mean Dice ± sd over seeds per variant, with each seed's Dice as a dot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from s2mnet.io_utils import atomic_write_with

    rows = summary["variants"]
    fig, ax = plt.subplots(figsize=(max(6, 0.7 * len(rows) + 2), 4.5))
    positions = range(len(rows))
    ax.bar(positions, [r["dice_mean"] for r in rows], yerr=[r["dice_sd"] for r in rows], capsize=4, alpha=0.6)
    for i, row in enumerate(rows):
        dice = [r["dice"] for r in records if r["variant"] == row["variant"]]
        ax.plot([i] * len(dice), dice, "k.", markersize=6)
    ax.set_xticks(list(positions), [r["variant"] for r in rows], rotation=45, ha="right")
    ax.set_ylabel("test Dice (mean ± sd over seeds; dots = seeds)")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    atomic_write_with(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)


def _clock(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m s2mnet.bench.ablation --job JSON``: one (variant, seed) in a subprocess."""
    import argparse

    parser = argparse.ArgumentParser(description="per-run worker of s2m bench ablation")
    parser.add_argument("--job", required=True, help="JSON job spec")
    spec = json.loads(parser.parse_args(argv).job)
    print(json.dumps(run_job(spec)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
