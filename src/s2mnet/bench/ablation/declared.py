"""``s2m bench ablation --study DIR``: train the declared runs of a study that are missing, then report.

Resumable: a finished run is one line of ``results.jsonl`` and is skipped; a run killed mid-training
continues from its last epoch (:func:`s2mnet.bench.ablation.runner.run_job`). See
:mod:`s2mnet.bench.ablation.study`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from s2mnet.bench.ablation.records import read_results, relative_command
from s2mnet.bench.ablation.runner import execute
from s2mnet.bench.ablation.study import declared_runs, load_study, prepare_study, run_key, study_specs
from s2mnet.errors import S2MError


def run_study(
    folder: str | Path,
    arms: list[str] | None = None,
    replicates: list[int] | None = None,
    run: dict[str, Any] | None = None,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train the declared runs of the study in ``folder`` that ``results.jsonl`` lacks; rebuild the report.

    Args:
        folder: the study folder (as given; its ``study.json`` holds the protocol).
        arms, replicates: a subset of the declared arms and seeds (or fold numbers) to train now.
        run: how, not what: ``jobs``, ``workers``, ``drop_weights``, ``command``.
        say: where progress lines go.

    Returns:
        The report summary.
    """
    folder = Path(folder)
    study = load_study(folder)
    if not Path(study["data"]).is_dir():
        raise S2MError(
            f"{study['data']}: the study's data folder is not found (run from the repository root)"
        )
    runs = declared_runs(study, arms, replicates)
    done = {(r["variant"], run_key(study, r)) for r in read_results(folder)}
    todo = [item for item in runs if item not in done]
    prepare_study(study, folder)
    options = dict(run or {})
    extra = {
        "workers": options.get("workers"),
        "drop_weights": bool(options.get("drop_weights")),
        "command": relative_command(list(options.get("command") or sys.argv)),
    }
    specs = study_specs(study, folder, todo, extra)
    say(
        f"s2m bench ablation --study {folder}: {len(runs)} runs selected, {len(runs) - len(todo)} done, "
        f"{len(todo)} to do"
    )
    jobs = int(options.get("jobs") or 1)
    protocol = study["protocol"]
    return execute(
        folder,
        specs,
        (len(runs), len(runs) - len(todo)),
        (jobs, protocol["threads"], extra["workers"]),
        say,
        extra["command"],
    )
