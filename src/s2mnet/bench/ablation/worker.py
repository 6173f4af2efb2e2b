"""The per-run worker of ``s2m bench ablation --jobs N``: ``python -m s2mnet.bench.ablation --job JSON``."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence

from s2mnet.bench.ablation.runner import PARENT_PID_ENV, run_job


def die_with_parent() -> None:
    """End this worker when the ``s2m bench ablation`` process that started it ends.

    Killing the study (``kill PID``) must not leave its ``--jobs`` workers training on for hours with
    nobody to record their results. On Linux the kernel sends SIGKILL to the worker when its parent
    dies (``prctl(PR_SET_PDEATHSIG)``); a parent that died before the request took effect is caught by
    comparing the parent pid with the one in :data:`PARENT_PID_ENV`. Elsewhere this does nothing.
    SIGKILL, not SIGTERM: a study started under ``nohup`` or a job launcher that ignores SIGTERM passes
    that on to its workers, which then outlived a killed study, training on into the next study's runs.
    The killed run loses nothing it saved: its training state is written atomically after every epoch
    and the next ``s2m bench ablation`` continues it (:mod:`s2mnet.engine.continuation`).
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    pr_set_pdeathsig = 1  # <linux/prctl.h>
    ctypes.CDLL(None).prctl(pr_set_pdeathsig, signal.SIGKILL)
    expected = os.environ.get(PARENT_PID_ENV)
    if expected and os.getppid() != int(expected):
        sys.exit(f"s2m bench ablation worker: the parent process {expected} is gone")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m s2mnet.bench.ablation --job JSON``: one (arm, seed) in a subprocess."""
    import argparse

    parser = argparse.ArgumentParser(description="per-run worker of s2m bench ablation")
    parser.add_argument("--job", required=True, help="JSON job spec")
    spec = json.loads(parser.parse_args(argv).job)
    die_with_parent()
    print(json.dumps(run_job(spec)))
    return 0
