"""``--folds 0,2``: the folds of a cross-validation run that ``s2m predict`` / ``export`` ensemble."""

from __future__ import annotations

import argparse
from pathlib import Path

from s2mnet.engine.rundir import RUN_CONFIG, is_cv_run, read_cv_manifest
from s2mnet.errors import S2MError


def add_folds_flag(parser: argparse.ArgumentParser) -> None:
    """Add ``--folds`` (a comma-separated list of fold numbers) to ``parser``."""
    parser.add_argument(
        "--folds",
        metavar="0,2",
        help="with --run on a cross-validation run: the folds to ensemble (default all)",
    )


def parse_folds(text: str | None, run: Path | None) -> list[int] | None:
    """``"0,2"`` → ``[0, 2]`` after checking ``run`` is a cross-validation run that has those folds.

    Raises:
        S2MError: a malformed list, ``--folds`` without a cross-validation ``--run``, a fold out of range.
    """
    if text is None:
        return None
    if run is None or not is_cv_run(run) or (run / RUN_CONFIG).is_file():
        raise S2MError(f"--folds {text}: needs --run with a cross-validation run (s2m train --folds K)")
    try:
        folds = [int(part) for part in text.split(",")]
    except ValueError:
        raise S2MError(f"--folds {text}: expected fold numbers like 0,2") from None
    count = read_cv_manifest(run)["folds"]
    bad = [f for f in folds if not 0 <= f < count]
    if bad or len(set(folds)) != len(folds):
        raise S2MError(f"--folds {text}: {run} has folds 0..{count - 1}, each at most once")
    return folds
