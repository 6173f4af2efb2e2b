"""Atomic file writes and the guarded JSON reader: nothing half-written, no traceback from a JSON file.

Every output of s2mnet (checkpoints, JSON, CSV, PNG) is written to a temporary file in the destination
folder and moved into place with :func:`os.replace`, which is atomic on POSIX and Windows. A crash or a
kill during the write leaves the previous file intact.

Every JSON file s2mnet did not just write itself (run.json, plan.json, split files, palettes, nnU-Net's
dataset.json and plans, ONNX and safetensors metadata) is read through :func:`read_json` or
:func:`parse_json`: a missing file, a FIFO or device, a file over :data:`MAX_JSON_BYTES`, invalid JSON or
JSON nested too deeply for the parser is one error line naming the file.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from s2mnet.errors import S2MError, first_line

#: Largest JSON file read (run.json, plans, split files...): real ones are a few hundred kilobytes.
MAX_JSON_BYTES = 64 * 2**20


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it onto ``path`` when the block succeeds.

    Args:
        path: the final destination. Its folder is created if missing.

    Yields:
        A temporary file path in the same folder (same file system, so the final rename is atomic).
        The suffix is kept so that writers that dispatch on the extension still work.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    except OSError as exc:
        raise _naming(exc, path) from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as handle:
            os.fsync(handle.fileno())
        # mkstemp creates 0600 files; give outputs the permissions an ordinary open() would.
        os.chmod(tmp_path, 0o666 & ~_current_umask())
        os.replace(tmp_path, path)
    except OSError as exc:  # a full disk, a file-size limit: name the destination, not the temporary
        raise _naming(exc, path) from None
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _naming(exc: OSError, path: Path) -> OSError:
    """``exc`` naming ``path`` (the file the user asked for) when it carries an errno."""
    return OSError(exc.errno, exc.strerror, str(path)) if exc.errno is not None else exc


def _current_umask() -> int:
    """The process umask (reading it requires setting it; it is restored at once)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def atomic_write_with(path: str | os.PathLike, writer: Callable[[Path], None]) -> None:
    """Call ``writer(tmp_path)`` and move the result onto ``path`` atomically (for library savers)."""
    with atomic_path(path) as tmp:
        writer(tmp)


def _json_default(obj: Any) -> Any:
    """Serialise numpy scalars/arrays and paths in JSON outputs."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


def parse_json(text: str | bytes, source: str | os.PathLike, error: type[S2MError] = S2MError) -> Any:
    """Parse JSON text that came from ``source`` (a file, or a file's metadata entry).

    Args:
        text: the JSON text (bytes are decoded as UTF-8).
        source: what to name in the error (a path, or e.g. ``"model.onnx (metadata s2mnet.plan)"``).
        error: the :class:`S2MError` subclass to raise.

    Raises:
        S2MError: (``error``) invalid JSON, text that is not UTF-8, or JSON nested too deeply to parse.
    """
    return _loads(text, f"{source}: not valid JSON", error)


def _loads(text: str | bytes, problem: str, error: type[S2MError]) -> Any:
    try:
        return json.loads(text)
    except RecursionError:
        raise error(f"{problem} (nested too deeply to be read)") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise error(f"{problem} ({first_line(exc)})") from None


def read_json(
    path: str | os.PathLike,
    error: type[S2MError] = S2MError,
    what: str = "file",
    max_bytes: int = MAX_JSON_BYTES,
) -> Any:
    """Read a JSON file that s2mnet did not just write, with one-line errors naming it.

    Args:
        path: the file. Only a regular file is opened (a FIFO or a device would block or never end).
        error: the :class:`S2MError` subclass to raise.
        what: the kind of file, for the messages ("split file", "palette"...): "JSON <what>".
        max_bytes: larger files are refused before they are read.

    Raises:
        S2MError: (``error``) missing, not a regular file, too large, unreadable, or not valid JSON.
    """
    path = Path(path)
    try:
        if not path.exists():
            raise error(f"{path}: {what} not found")
        if not path.is_file():
            raise error(f"{path}: not a regular file (a JSON {what} is expected)")
        size = path.stat().st_size
        if size > max_bytes:
            raise error(f"{path}: {size:,} bytes, more than the {max_bytes:,} bytes a JSON {what} may have")
        text = path.read_bytes()
    except OSError as exc:
        raise error(f"{path}: cannot read the {what} ({exc.strerror or first_line(exc)})") from None
    return _loads(text, f"{path}: not a readable JSON {what}", error)


def relative_path(text: str, roots: list[Path] | None = None) -> str:
    """``text`` relative to the first of ``roots`` (default: the working directory) that holds it, else to
    the first whose parent holds it (``../shared/data/DRIVE``); any other text is returned unchanged.

    Records and metrics files hold paths relative to the folder the command runs in (for committed results:
    the repository root), never a machine's absolute folders.
    """
    if not os.path.isabs(text):
        return text
    path = Path(text)
    roots = [Path(root).absolute() for root in roots or [Path.cwd()]]
    for root in roots:
        if path == root or root in path.parents:
            return os.path.relpath(path, root)
    for root in roots:
        if root.parent in path.parents:
            return os.path.join("..", os.path.relpath(path, root.parent))
    return text


def name_final_path(error: BaseException, staging: str | os.PathLike, final: str | os.PathLike) -> None:
    """Make ``error`` name the output the user asked for instead of the hidden staging folder.

    Writers stage their files in a hidden folder (``.out.tmp-<pid>``) and publish it at the end; an error
    while writing (a full disk, a permission) would otherwise name a path the user never chose and that
    no longer exists once the staging folder is removed.
    """
    old, new = str(staging), str(final)
    if isinstance(error, OSError):
        for attribute in ("filename", "filename2"):
            value = getattr(error, attribute, None)
            if isinstance(value, str) and old in value:
                setattr(error, attribute, value.replace(old, new))
    if error.args and isinstance(error.args[0], str) and old in error.args[0]:
        error.args = (error.args[0].replace(old, new), *error.args[1:])
