"""Output folders and files that are never overwritten silently, and outputs kept out of their inputs.

Rules (docs/tool.md, "Bad input"): an existing, non-empty output folder is refused unless the user passes
``--overwrite``; even then only a folder that s2m itself wrote (recognised by its marker file, e.g.
``run.json``) is reused, and only the entries s2m writes there are removed. Any other file the user put in
the folder stays untouched. :func:`staged_dir` builds a whole output folder beside its destination and
swaps it in at the end (all or nothing). An output file (``--json``, ``export --output``) that exists is
replaced only with ``--overwrite`` (:func:`check_output_file`), and never when it is one of the command's
inputs. An output folder never lies inside the data folder, nor the data folder inside it
(:func:`check_separate`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

from s2mnet.errors import S2MError
from s2mnet.io_utils import name_final_path


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
    except BaseException as error:
        shutil.rmtree(staging, ignore_errors=True)
        name_final_path(error, staging, path)
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


def check_output_file(
    path: str | Path,
    overwrite: bool,
    what: str,
    flag: str = "--json",
    protected: Iterable[str | Path] = (),
) -> Path:
    """Refuse an output file that would replace something the user has; call before any slow work.

    The rule (docs/tool.md, "Output files"): an existing file is never replaced without ``--overwrite``,
    and never at all when it is (or lies inside) one of ``protected`` — the command's inputs, such as the
    dataset folder or the run's own files. Symbolic links are resolved before comparing.

    Args:
        path: the output file the command will write.
        overwrite: the user passed ``--overwrite``.
        what: what the file holds, for messages ("metrics", "fingerprint and plan").
        flag: the flag that named the file, for messages.
        protected: files and folders the output may never replace or lie inside.

    Returns:
        ``path`` as a :class:`Path`.

    Raises:
        S2MError: ``path`` is a folder or not a regular file, is protected, or exists without ``overwrite``.
    """
    path = Path(path)
    target = path.resolve()
    for item in protected:
        guarded = Path(item).resolve()
        if target == guarded or guarded in target.parents:
            raise S2MError(
                f"{path}: {flag} would write the {what} over an input of this command ({item}); "
                "choose a file outside it"
            )
    if path.is_dir():
        raise S2MError(f"{path}: is a folder; {flag} needs a file name for the {what}")
    if path.exists() or path.is_symlink():
        if not path.is_file():
            raise S2MError(f"{path}: exists and is not a regular file; choose another {flag} file")
        if not overwrite:
            raise S2MError(
                f"{path}: already exists; nothing was changed; pass --overwrite to replace it with the "
                f"{what}, or choose another {flag} file"
            )
    return path


def check_separate(
    output: str | Path, data: str | Path, out_flag: str = "--out", data_flag: str = "--data"
) -> None:
    """Refuse an output folder inside the data folder, the data folder inside it, or the same folder.

    Symbolic links are resolved first. Written into the data set, outputs would become part of it (a
    ``curves.png`` "without a mask"); a data set inside an output folder could be removed with it.

    Raises:
        S2MError: naming both folders.
    """
    out, source = Path(output).resolve(), Path(data).resolve()
    if out == source or source in out.parents:
        raise S2MError(
            f"{output}: {out_flag} lies inside the {data_flag} folder {data}; outputs written there would "
            "become part of the data set; choose a folder outside it"
        )
    if out in source.parents:
        raise S2MError(
            f"{output}: the {data_flag} folder {data} lies inside this {out_flag} folder; choose an output "
            "folder that does not contain the data"
        )


@contextlib.contextmanager
def removed_on_failure(folder: str | Path, enabled: bool = True) -> Iterator[None]:
    """Remove ``folder`` when the block fails (a full disk, Ctrl-C) and the folder did not exist before.

    For the first files of a new output folder (a run's plan.json, splits.json and run.json): a failure
    there leaves no folder that ``--overwrite`` would refuse (it has no marker yet).
    """
    created = enabled and not Path(folder).exists()
    try:
        yield
    except BaseException:
        if created:
            shutil.rmtree(folder, ignore_errors=True)
        raise
