"""Train a run, or continue the same run that an interrupted command left in its folder.

``s2m bench ablation`` runs studies of many hour-long trainings across sessions that end without warning;
a run cut off mid-training should not start again. :func:`train_or_continue` trains a new run, or, when
the folder already holds a run whose stored configuration computes exactly what is asked
(:func:`computes_the_same`), continues it from its last epoch's training state (``s2m train --resume``:
the data order and the random streams are re-seeded per epoch, so it reaches the weights an
uninterrupted run reaches) or, when it had finished training, returns its stored summary.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from s2mnet.engine.config import RESUME_CHANGEABLE, TrainConfig, resume_config
from s2mnet.engine.console import jsonable
from s2mnet.engine.resume import load_resumable_state
from s2mnet.engine.rundir import RUN_CONFIG, TRAIN_STATE, read_run_config
from s2mnet.engine.train import train
from s2mnet.errors import S2MError

#: Fields that name the run or the command, not what it computes (besides :data:`RESUME_CHANGEABLE`).
_NOT_COMPUTED = ("data", "out", "overwrite", "command", "resume")


def computes_the_same(stored: dict[str, Any], config: TrainConfig) -> bool:
    """Whether the run whose ``run.json`` is ``stored`` trains exactly what ``config`` would train.

    Every ``train_config`` field must be equal except those that only say where and how fast a run goes
    (:data:`RESUME_CHANGEABLE`) or name it (out, command, ...); the data folder must be the same folder
    (``run.json`` stores it resolved). Used to continue an interrupted run of a study rather than train
    it again (:func:`s2mnet.bench.ablation.runner.run_job`).
    """
    saved = stored.get("train_config")
    if not isinstance(saved, dict) or stored.get("data") != str(Path(config.data).resolve()):
        return False
    skipped = set(RESUME_CHANGEABLE) | set(_NOT_COMPUTED)
    wanted = {key: value for key, value in jsonable(dataclasses.asdict(config)).items() if key not in skipped}
    return {key: saved.get(key) for key in wanted} == wanted


def train_or_continue(config: TrainConfig) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Train ``config``, or continue the same run an interrupted command left in ``config.out``.

    A run there that finished training (its cap, early stopping or its time limit) and was interrupted
    afterwards (during a study's evaluation) is not trained again: its stored summary is returned.

    Returns:
        The training summary and ``None`` for a new run, or ``{"from_epoch": N, "earlier_s": S,
        "from_epochs": [...]}`` for a continued one (N: the epoch this command continued from; S: the
        training seconds spent before it, added to the record's times; ``from_epochs``: every epoch the
        run's training was continued from, in order, as its ``run.json`` records them, so a run cut off
        in more than one session shows each continuation).
    """
    run_dir = Path(config.out)
    if not (run_dir / RUN_CONFIG).is_file():
        return train(config), None
    try:
        stored = read_run_config(run_dir)
        same = computes_the_same(stored, config)
    except S2MError:
        same = False  # an unreadable run.json: that run is replaced
    if not same:
        return train(config), None
    if stored.get("status") == "finished":  # by its cap, early stopping or time limit; then interrupted
        best = stored.get("best") or {}
        summary = {
            "stopped_early": stored.get("stopped_early"),
            "stopped_by_time": stored.get("stopped_by_time"),
            "epochs_run": stored.get("epochs_run"),
            "best_dice": best.get("dice"),
        }
        earlier = {"from_epoch": stored.get("epochs_run"), "earlier_s": stored.get("wall_s") or 0.0}
        return summary, {**earlier, "from_epochs": _training_continuations(stored)}
    if not (run_dir / TRAIN_STATE).is_file():
        return train(config), None  # killed before its first epoch ended
    try:
        state = load_resumable_state(run_dir / TRAIN_STATE)
    except S2MError:
        return train(config), None  # a damaged state: that run is replaced
    earlier = {"from_epoch": int(state["trainer"]["epoch"]), "earlier_s": float(state.get("elapsed_s", 0.0))}
    changes = {"device": config.device, "workers": config.workers, "time_limit_s": config.time_limit_s}
    changes.update(quiet=config.quiet, progress=config.progress, tensorboard=config.tensorboard)
    summary = train(resume_config(run_dir, command=config.command, **changes))
    return summary, {**earlier, "from_epochs": _training_continuations(read_run_config(run_dir))}


def _training_continuations(run_config: dict[str, Any]) -> list[int]:
    """The epochs a run's training was continued from, oldest first (``run.json``'s ``resumed`` list)."""
    return [int(entry["from_epoch"]) for entry in run_config.get("resumed", [])]
