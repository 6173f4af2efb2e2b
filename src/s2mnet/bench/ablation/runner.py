"""Training and evaluating the (arm, seed) runs of ``s2m bench ablation``, resumably.

* One split for everything: ``OUT/splits.json`` is written once (from ``--splits FILE``, else
  :func:`s2mnet.data.make_splits` with ``--split-seed``, independent of the training seeds; DRIVE keeps its
  published test images) and every run trains, validates and tests with it.
* Each run trains with :func:`s2mnet.engine.train.train` into ``OUT/runs/<arm>_s<seed>`` (identical plan
  overrides for every arm) and its best-validation checkpoint is evaluated on the test split with
  :func:`s2mnet.inference.evaluate.evaluate_run` (per-case Dice and HD95).
* Convergence (:func:`plateaued`): training validates every ``val_every`` epochs (an epoch is a fixed
  number of samples) and stops once the validation Dice has not improved for ``patience`` validations
  (the trainer's early stopping, patience ``patience × val_every`` epochs), or at the cap of
  ``max_epochs`` times the arm's ``cap_scale`` (3 for MONAI's UNet, whose step costs a third). A run is
  *converged* when its validation curve has plateaued (:func:`plateaued`: the last ``patience``
  validations lie within ``min_delta`` of the curve's best, the least-squares change over the last
  ``patience + 1`` validations is at most ``min_delta``, and the best is above the all-background value
  by more than ``min_delta``); a run is *failed* when its validation never left the all-background value
  or its training loss was not finite (:func:`failed`). Both are flags; no run is dropped.
* Pre-declared studies (:mod:`s2mnet.bench.ablation.study`) use the same jobs with a separate
  data-order seed (``data_seed``) and, for cross-validation, one split file per fold.
* Resumable: every finished run is appended as one JSON line to ``OUT/results.jsonl`` (atomically; a later
  line of the same (arm, seed) wins); a rerun skips those and trains what is missing. A run interrupted
  mid-training (a killed session) continues from its last epoch's training state, to the weights an
  uninterrupted run reaches, when its stored configuration is the one asked for; otherwise it starts
  again. The budget is stored in ``OUT/ablation_config.json`` (the data folder as
  given, relative to where the command runs); a rerun with another data folder or budget is refused.
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

from s2mnet.bench.ablation.arms import (
    DEFAULT_OTHER_SEEDS,
    DEFAULT_SEEDS,
    REFERENCE,
    arm,
    arm_seeds,
    reference_seed,
    resolve_model_args,
)
from s2mnet.bench.ablation.convergence import (
    MIN_DELTA,
    failed,
    finite_losses,
    plateaued,
    read_curve,
)
from s2mnet.bench.ablation.records import (
    CONFIG,
    RESULTS,
    SPLITS,
    append_result,
    read_results,
    relative_command,
)
from s2mnet.errors import S2MError
from s2mnet.io_utils import relative_path
from s2mnet.planning.recipe import default_lr


@dataclass
class AblationConfig:
    """Everything ``s2m bench ablation`` accepts (see :func:`run_ablation` and docs/bench.md).

    Attributes:
        data: dataset folder.
        out: output folder (results, runs, report).
        arms: arm names (:data:`s2mnet.bench.ablation.arms.ARMS`); ``paper`` first.
        seeds: the core seeds; other arms use the first ``other_seeds`` of them.
        other_seeds: seeds of the non-core arms (3).
        plan: plan overrides shared by every run (``size``, ``patch_size``, ``batch_size``,
            ``samples_per_epoch``, ...); ``epochs`` comes from ``max_epochs``.
        max_epochs: the cap (``None``: the plan's default number of epochs).
        min_epochs: early stopping never stops a run before this epoch (``None``: no floor), so that a
            run still at its starting point (all background) is not stopped as "plateaued".
        patience: validations without improvement that stop a run and define a plateau.
        val_every: validate every N epochs.
        min_delta: improvement below this does not count for the plateau (0.005 Dice).
        lr: learning rate (``None``: the recipe's).
        splits, split_seed: the split file to use, or the seed that makes one.
        device, amp, workers, jobs, time_limit_s: where and how the runs train (``time_limit_s`` per run).
        threads: intra-op CPU threads per training (default: the cores shared among ``jobs``; 1 on a
            machine busy with other work avoids OpenMP spin-waiting against it).
        drop_weights: delete each run's checkpoints after its evaluation.
        command: the command line recorded with every result.
    """

    data: str | Path | None
    out: str | Path
    arms: list[str] = field(default_factory=lambda: [REFERENCE])
    seeds: list[int] = field(default_factory=lambda: list(DEFAULT_SEEDS))
    other_seeds: int = DEFAULT_OTHER_SEEDS
    plan: dict[str, Any] = field(default_factory=dict)
    max_epochs: int | None = None
    min_epochs: int | None = None
    patience: int = 5
    val_every: int = 1
    min_delta: float = MIN_DELTA
    lr: float | None = None
    splits: str | Path | None = None
    split_seed: int = 0
    device: str = "auto"
    amp: str = "none"
    workers: int | None = None
    jobs: int = 1
    threads: int | None = None
    time_limit_s: float | None = None
    drop_weights: bool = False
    command: list[str] | None = None


# --- one job --------------------------------------------------------------------------------------


def run_job(spec: dict[str, Any]) -> dict[str, Any]:
    """Train and evaluate one (arm, seed or fold) in this process; returns its result record.

    A run that an earlier, interrupted ``s2m bench ablation`` left in ``spec["run_dir"]`` is continued
    rather than trained again when its stored configuration computes exactly what this spec asks
    (:func:`s2mnet.engine.continuation.computes_the_same`): from its last training state (``s2m train
    --resume``; the data order and random streams are re-seeded per epoch, so the weights are those of an
    uninterrupted run), or, when it had finished training, straight to its evaluation. Anything else in
    the folder (another protocol, a run killed before its first epoch ended) is replaced.
    """
    from s2mnet.engine.config import TrainConfig
    from s2mnet.engine.continuation import train_or_continue
    from s2mnet.engine.device import resolve_device
    from s2mnet.inference.evaluate import evaluate_run

    entry = arm(spec["variant"])
    run_dir = Path(spec["run_dir"])
    start = time.perf_counter()
    config = TrainConfig(
        data=spec["data"],
        out=run_dir,
        model=entry.model,
        loss=entry.loss,
        seed=spec["seed"],
        data_seed=spec.get("data_seed"),
        device=spec["device"],
        plan_overrides=dict(spec["plan"]),
        splits=spec["splits"],
        model_args=dict(spec["model_args"]),
        loss_args=dict(entry.loss_args),
        lr=spec["lr"],
        warmup_epochs=spec.get("warmup_epochs"),
        patience=spec["patience"] * spec["val_every"],
        min_epochs=spec.get("min_epochs"),
        val_every=spec["val_every"],
        amp=spec["amp"],
        workers=spec["workers"],
        time_limit_s=spec["time_limit_s"],
        overwrite=True,
        quiet=True,
        tensorboard=False,
        command=spec["command"],
    )
    summary, resumed = train_or_continue(config)
    train_s = time.perf_counter() - start
    earlier_s = float(resumed["earlier_s"]) if resumed else 0.0
    curve = read_curve(run_dir)
    metrics = evaluate_run(
        run_dir, split="test", overlays=0, device=resolve_device(spec["device"]), progress=False
    )
    cases = {row["case_id"]: {"dice": row["dice"], "hd95": row.get("hd95")} for row in metrics["cases"]}
    if spec.get("drop_weights"):
        for weights in run_dir.glob("*.safetensors"):
            weights.unlink()
    values, background = [d for _, d in curve], float(spec.get("background_val_dice") or 0.0)
    fold = {} if spec.get("fold") is None else {"fold": spec["fold"], "study": spec.get("study")}
    return {
        "variant": spec["variant"],
        "seed": spec["seed"],
        "data_seed": spec.get("data_seed", spec["seed"]),
        "pair_seed": spec.get("pair_seed", reference_seed(spec["variant"], spec["seed"])),
        **fold,
        "dice": metrics["dice"],
        "hd95": metrics.get("hd95"),
        "converged": plateaued(values, spec["patience"], spec["min_delta"], background),
        "failed": failed(values, background, spec["min_delta"], finite_losses(run_dir)),
        "background_val_dice": background,
        "stopped_early": summary["stopped_early"],
        "stopped_by_time": summary["stopped_by_time"],
        "epochs_run": summary["epochs_run"],
        "epoch_cap": spec["plan"].get("epochs"),
        "steps": curve[-1][0] if curve else None,
        "best_val_dice": summary["best_dice"],
        "curve": curve,
        "model": entry.model,
        "loss": entry.loss,
        "model_args": spec["model_args"],
        "loss_args": entry.loss_args,
        "train_s": round(train_s + earlier_s, 1),
        "wall_s": round(time.perf_counter() - start + earlier_s, 1),
        "resumed": resumed,
        "command": spec["command"],
        "machine": _machine(resolve_device(spec["device"])),
        "cases": cases,
    }


#: Environment variable through which a worker learns the pid of the process that started it.
PARENT_PID_ENV = "S2MNET_ABLATION_PARENT"


def _job_in_subprocess(spec: dict[str, Any], threads: int) -> dict[str, Any]:
    """Run :func:`run_job` in a fresh Python process with ``threads`` intra-op threads."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        PARENT_PID_ENV: str(os.getpid()),
    }
    command = [sys.executable, "-m", "s2mnet.bench.ablation", "--job", json.dumps(spec)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        reason = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        raise RuntimeError(reason)
    return json.loads(lines[-1])


def _machine(device: Any) -> dict[str, str]:
    """Where a run was made: CPU (and GPU) name, torch and Python versions."""
    import torch

    from s2mnet.bench.efficiency import machine_description

    return {
        "description": machine_description(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


# --- results file ---------------------------------------------------------------------------------


def _budget(config: AblationConfig) -> dict[str, Any]:
    floor = {} if config.min_epochs is None else {"min_epochs": config.min_epochs}  # older studies had none
    return {
        **floor,
        "data": relative_path(str(config.data)) if config.data is not None else None,
        "plan": config.plan,
        "max_epochs": config.max_epochs,
        "patience": config.patience,
        "val_every": config.val_every,
        "min_delta": config.min_delta,
        "lr": config.lr,
        "time_limit_s": config.time_limit_s,
        "amp": config.amp,
    }


def prepare_out(config: AblationConfig) -> Path:
    """Create ``OUT`` with its split and budget files, or check that a rerun uses the same ones."""
    from s2mnet.data.discover import discover
    from s2mnet.data.splits import load_splits, make_splits, save_splits
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


def planned_runs(config: AblationConfig) -> list[tuple[str, int]]:
    """Every (arm, seed) of the study, seed rank by seed rank (all arms with the first seed, then the
    second, ...) so that a study cut short still compares every arm."""
    seeds = {name: arm_seeds(name, config.seeds, config.other_seeds) for name in config.arms}
    depth = max((len(s) for s in seeds.values()), default=0)
    return [(name, seeds[name][i]) for i in range(depth) for name in config.arms if i < len(seeds[name])]


def _train_size(plan: dict[str, Any]) -> int | None:
    """The side the network trains on: ``patch_size`` (patch mode) or ``size`` (resize mode)."""
    if plan.get("mode") == "resize":
        return plan.get("size")
    return plan.get("patch_size") or plan.get("size")


def _spec(config: AblationConfig, out: Path, name: str, seed: int) -> dict[str, Any]:
    plan = dict(config.plan)
    scale = arm(name).cap_scale
    if config.max_epochs is not None:
        plan["epochs"] = config.max_epochs * scale
    lr = config.lr
    if lr is None and config.max_epochs is not None:
        # The recipe picks the learning rate from the run's length; a larger cap (cap_scale) must not
        # change it, so every arm gets the one of the study's cap.
        lr = default_lr(config.max_epochs)
    return {
        "variant": name,
        "seed": seed,
        "data": str(config.data),
        "run_dir": str(out / "runs" / f"{name}_s{seed}"),
        "splits": str(out / SPLITS),
        "plan": plan,
        "model_args": resolve_model_args(name, _train_size(plan)),
        "lr": lr,
        "min_epochs": None if config.min_epochs is None else config.min_epochs * scale,
        "patience": config.patience,
        "val_every": config.val_every,
        "min_delta": config.min_delta,
        "device": config.device,
        "amp": config.amp,
        "workers": config.workers,
        "time_limit_s": config.time_limit_s,
        "drop_weights": config.drop_weights,
        "command": relative_command(list(config.command or sys.argv)),
    }


def run_ablation(config: AblationConfig, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Train and evaluate every missing (arm, seed), appending results; then write the report."""
    if config.data is None or not Path(config.data).is_dir():
        raise S2MError(f"{config.data}: dataset folder not found")
    if config.jobs < 1:
        raise S2MError(f"--jobs {config.jobs}: must be ≥ 1")
    if config.patience < 1 or config.val_every < 1:
        raise S2MError(f"--patience {config.patience} / --val-every {config.val_every}: must be ≥ 1")
    out = prepare_out(config)
    done = {(r["variant"], int(r["seed"])) for r in read_results(out)}
    runs = planned_runs(config)
    todo = [run for run in runs if run not in done]
    specs = [_spec(config, out, name, seed) for name, seed in todo]  # a bad arm fails before training
    say(
        f"s2m bench ablation: {len(runs)} runs, {len(runs) - len(todo)} already in {out / RESULTS}, "
        f"{len(todo)} to do"
    )
    if len(config.seeds) < 5 or config.other_seeds < 3:
        say(
            f"note: {len(config.seeds)} core / {min(config.other_seeds, len(config.seeds))} other seeds; the "
            "protocol asks for ≥ 5 / ≥ 3 (fewer than 3 converged pairs are 'not testable')"
        )
    return execute(
        out,
        specs,
        (len(runs), len(runs) - len(todo)),
        (config.jobs, config.threads, config.workers),
        say,
        config.command,
    )


def execute(
    out: Path,
    specs: list[dict[str, Any]],
    counts: tuple[int, int],
    parallel: tuple[int, int | None, int | None],
    say: Callable[[str], None],
    command: Sequence[str] | None,
) -> dict[str, Any]:
    """Train ``specs`` (in this process, or ``jobs`` subprocesses), append each result, rebuild the report.

    Args:
        out: the study folder.
        specs: job specs (:func:`run_job`).
        counts: (runs of the study, runs already done), for the progress lines.
        parallel: (jobs, intra-op threads per job or ``None``, data-loading workers or ``None``).
        say: where progress lines go.
        command: the command line recorded in the report.
    """
    from s2mnet.bench.ablation.report import write_report

    jobs, threads_given, workers = parallel
    total, done_before = counts
    threads = threads_given or max(1, (os.cpu_count() or 1) // jobs)
    if workers is None and jobs > 1 and specs and _on_cuda(specs[0]["device"]):
        for spec in specs:
            spec["workers"] = max(1, threads - 1)  # data loaders of concurrent jobs share the CPU cores
    start = time.perf_counter()
    finished = failures = 0

    def progress(spec: dict[str, Any], record: dict[str, Any] | None, error: str | None) -> None:
        nonlocal finished, failures
        finished += 1
        eta = (time.perf_counter() - start) / finished * (len(specs) - finished)
        where = f"fold {spec['fold']}" if spec.get("fold") is not None else f"seed {spec['seed']}"
        position = f"[{done_before + finished}/{total}] {spec['variant']} {where}"
        if record is None:
            failures += 1
            say(f"{position}: FAILED ({error}); it will be retried on the next run; ETA {_clock(eta)}")
            return
        append_result(out, record)
        write_report(out, command)
        state = "converged" if record["converged"] else "NOT converged"
        flag = ", FAILED (never left the all-background prediction)" if record.get("failed") else ""
        say(
            f"{position}: test Dice {record['dice']:.4f}, {state}{flag} after {record['steps']} steps "
            f"({record['wall_s']:.0f} s); ETA {_clock(eta)}"
        )

    if jobs == 1:
        if threads_given is not None:
            import torch

            torch.set_num_threads(threads_given)
        for spec in specs:
            say(f"training {spec['variant']} seed {spec['seed']} ...")
            try:
                record, error = run_job(spec), None
            except S2MError:
                raise  # a bad flag or data folder fails every run: stop at once
            except Exception as exc:  # one failed run must not lose the others
                record, error = None, f"{type(exc).__name__}: {exc}"
            progress(spec, record, error)
    else:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = {pool.submit(_job_in_subprocess, spec, threads): spec for spec in specs}
            for future in as_completed(futures):
                try:
                    record, error = future.result(), None
                except Exception as exc:  # one failed run must not lose the others
                    record, error = None, str(exc)
                progress(futures[future], record, error)
    report = write_report(out, command)
    say(f"report: {out / 'ablation.md'}" + (f" ({failures} failed run(s))" if failures else ""))
    return report


def _on_cuda(device: str) -> bool:
    from s2mnet.engine.device import resolve_device

    return resolve_device(device).type == "cuda"


def _clock(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
