"""``s2m bench ablation``: the arms × seeds study with the training run as the unit (docs/bench.md).

* :mod:`~s2mnet.bench.ablation.arms` — the arms (``ARMS`` registry), the reference ``paper`` and seeds;
* :mod:`~s2mnet.bench.ablation.runner` — one split, training to convergence, resumable ``results.jsonl``;
* :mod:`~s2mnet.bench.ablation.study` — pre-declared studies (``study.json``): seeds or folds, protocol;
* :mod:`~s2mnet.bench.ablation.convergence` — the convergence and failure flags;
* :mod:`~s2mnet.bench.ablation.analysis` — the primary analysis (every declared run) and its tables;
* :mod:`~s2mnet.bench.ablation.report` — run-level statistics, verdicts, learning curves, plots.
"""

from s2mnet.bench.ablation.arms import (
    AA_ARM,
    AA_SEED_OFFSET,
    ARMS,
    DEFAULT_OTHER_SEEDS,
    DEFAULT_SEEDS,
    PAPER_MASL,
    REFERENCE,
    Arm,
    arm,
    arm_seeds,
    core_arms,
    parse_arms,
)
from s2mnet.bench.ablation.convergence import MIN_DELTA, epochs_for_steps, failed, plateaued
from s2mnet.bench.ablation.declared import run_study
from s2mnet.bench.ablation.records import read_results
from s2mnet.bench.ablation.report import summarise_results, write_report
from s2mnet.bench.ablation.runner import AblationConfig, run_ablation
from s2mnet.bench.ablation.study import declared_runs, load_study
from s2mnet.planning.budget import steps_per_epoch

__all__ = [
    "AA_ARM",
    "AA_SEED_OFFSET",
    "ARMS",
    "DEFAULT_OTHER_SEEDS",
    "DEFAULT_SEEDS",
    "MIN_DELTA",
    "PAPER_MASL",
    "REFERENCE",
    "AblationConfig",
    "Arm",
    "arm",
    "arm_seeds",
    "core_arms",
    "declared_runs",
    "epochs_for_steps",
    "failed",
    "load_study",
    "parse_arms",
    "plateaued",
    "read_results",
    "run_ablation",
    "run_study",
    "steps_per_epoch",
    "summarise_results",
    "write_report",
]
