"""Output folders that are never overwritten silently.

Rules (docs/tool.md, "Bad input"): an existing, non-empty output folder is refused unless the user passes
``--overwrite``; even then only a folder that s2m itself wrote (recognised by its marker file, e.g.
``run.json``) is reused, and only the entries s2m writes there are removed. Any other file the user put in
the folder stays untouched.

:func:`staged_dir` builds a whole output folder beside its destination and swaps it in at the end (all
or nothing); :func:`check_replaceable_file` is the rule for single output files (``--json FILE``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from s2mnet.errors import S2MError


def check_output_dir(path: str | Path, *, overwrite: bool, marker: str, what: str = "run") -> None:
    """Raise the errors of :func:`prepare_output_dir` without touching anything (check before slow work)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise S2MError(f"{path}: exists and is not a folder; choose another output folder")
    if path.is_dir() and any(path.iterdir()):
        if not overwrite:
            raise S2MError(
                f"{path}: output folder already exists and is not empty; choose a new folder or pass "
                f"--overwrite to replace the earlier s2m {what} in it"
            )
        if not (path / marker).is_file():
            raise S2MError(
                f"{path}: --overwrite refused: this folder has no {marker}, so it is not an s2m {what} "
                "folder; nothing was changed"
            )


def prepare_output_dir(
    path: str | Path, *, overwrite: bool, marker: str, owned: Iterable[str], what: str = "run"
) -> Path:
    """Create ``path`` or make an earlier s2m output there ready to be replaced.

    Args:
        path: the output folder.
        overwrite: the user asked to replace an earlier output in ``path``.
        marker: a file that s2m writes first into every such folder (``run.json``, ``demo.json``...).
        owned: the names (files or folders) that s2m writes in this folder; with ``overwrite`` exactly
            these are removed, nothing else.
        what: the kind of folder, for messages ("run", "demo").

    Returns:
        The folder (created if needed).

    Raises:
        S2MError: ``path`` is a file; it is non-empty and ``overwrite`` is false; or ``overwrite`` is true
            but the folder was not written by s2m (no ``marker``).
    """
    check_output_dir(path, overwrite=overwrite, marker=marker, what=what)
    path = Path(path)
    if path.is_dir():
        for name in owned:
            entry = path / name
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            elif entry.exists() or entry.is_symlink():
                entry.unlink()
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def staged_dir(path: str | Path) -> Iterator[Path]:
    """Yield a hidden staging folder beside ``path``; it replaces ``path`` when the block succeeds.

    All or nothing: on an error the staging folder is removed and ``path`` is left as it was. On success
    an earlier ``path`` is moved aside, the staging folder is renamed onto ``path`` and the old one is
    removed (if the rename fails, the old folder is put back).

    Raises:
        S2MError: ``path`` exists and is not a folder.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise S2MError(f"{path}: exists and is not a folder; choose another output folder")
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.parent / f".{path.name}.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    old = path.parent / f".{path.name}.old-{os.getpid()}"
    if path.exists():
        os.replace(path, old)
    try:
        os.replace(staging, path)
    except OSError:
        if old.exists():
            os.replace(old, path)
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)


def check_replaceable_file(
    path: str | Path, *, overwrite: bool, ours: Callable[[Path], bool], writer: str, flag: str
) -> None:
    """Refuse an output file that names a folder, or that exists and ``writer`` did not write.

    Args:
        path: the file the command will write (e.g. ``s2m evaluate --json FILE``).
        overwrite: the user passed ``--overwrite``: any existing file may be replaced.
        ours: whether an existing file is one ``writer`` wrote earlier (replaced without ``overwrite``).
        writer: the command, for messages ("s2m evaluate").
        flag: the option naming the file, for messages ("--json").

    Raises:
        S2MError: one line naming the file and the problem.
    """
    path = Path(path)
    if path.is_dir():
        raise S2MError(f"{path}: is a folder; {flag} takes a file name")
    if path.exists() and not overwrite and not ours(path):
        raise S2MError(
            f"{path}: exists and was not written by {writer}; pass --overwrite to replace it, or choose "
            "another file"
        )
