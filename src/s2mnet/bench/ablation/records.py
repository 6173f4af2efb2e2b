"""The study's files: ``results.jsonl`` (one record per finished (arm, seed or fold) run, written atomically),
``ablation_config.json`` and ``splits.json``; read by the runner and the report alike."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from s2mnet.errors import S2MError
from s2mnet.io_utils import relative_path

RESULTS = "results.jsonl"
CONFIG = "ablation_config.json"
SPLITS = "splits.json"


def read_results(out: Path) -> list[dict[str, Any]]:
    """All records of ``OUT/results.jsonl`` (a later record of the same (arm, seed, fold) wins)."""
    path = Path(out) / RESULTS
    if not path.is_file():
        return []
    records: dict[tuple[str, int, Any], dict[str, Any]] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise S2MError(f"{path}: line {number} is not valid JSON") from None
        records[(record["variant"], int(record["seed"]), record.get("fold"))] = record
    return list(records.values())


def append_result(out: Path, record: dict[str, Any]) -> None:
    """Append one record to ``results.jsonl`` (the file is rewritten atomically: never half a line).

    Two processes of the same study (``--folds 0,1`` in one, ``--folds 2,3,4`` in another) append under an
    exclusive lock on ``results.jsonl.lock``, so neither rewrite loses the other's line (POSIX; on Windows,
    where :mod:`fcntl` is missing, run one process with ``--jobs 2`` instead).
    """
    from s2mnet.io_utils import atomic_write_text

    path = out / RESULTS
    with _locked(out / (RESULTS + ".lock")):
        old = path.read_text(encoding="utf-8") if path.is_file() else ""
        if old and not old.endswith("\n"):
            old += "\n"
        atomic_write_text(path, old + json.dumps(record) + "\n")


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``lock_path`` (a no-op where :mod:`fcntl` is missing)."""
    try:
        import fcntl
    except ImportError:  # Windows
        yield
        return
    with open(lock_path, "a", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def relative_command(command: list[str]) -> list[str]:
    """The command line with absolute paths (``--data /x/y`` or ``--data=/x/y``) made relative."""
    out = []
    for word in command:
        flag, sep, value = word.partition("=")
        out.append(f"{flag}={relative_path(value)}" if sep and flag.startswith("--") else relative_path(word))
    return out
