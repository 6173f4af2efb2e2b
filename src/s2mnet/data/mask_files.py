"""Inputs and outputs of ``s2m predict`` (both the torch and the onnxruntime predictor).

Every output is ``OUTPUT/<image stem>.png``: {0, 255} for binary models, class indices 0..K-1 for
multi-class ones (8-bit grey PNG). Before any work is done, all outputs are checked
(:func:`output_paths`): an existing file is refused unless ``overwrite`` is set and an earlier
``s2m predict`` wrote it (it is listed in that folder's :data:`RECORD_FILE`), an output that would
replace one of the input images is always refused, and two inputs with the same stem (``a.jpg`` and
``a.png``) are refused because their masks would collide. The inputs' headers are read first
(:func:`check_inputs`): a missing, truncated-header or oversized image stops the command before the model
is loaded.

All or nothing (:class:`MaskOutput`): the output folder is claimed atomically (created with
:func:`os.mkdir`, or, when it exists, by creating :data:`CLAIM_FILE` with ``O_CREAT | O_EXCL``), so two
``s2m predict`` processes never write into the same folder; a folder that holds anything else is refused
unless ``overwrite`` is set. Masks are written into a hidden staging folder inside it and moved into place
only when every image has been segmented, after the folder's :data:`RECORD_FILE` (so a failure writing
it publishes nothing); on any error, Ctrl-C or SIGTERM the staging folder and the claim are removed, and
so is the output folder when this command created it. A claim left by a killed process (its process id
no longer runs) is taken over.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import numpy as np
from PIL import Image

from s2mnet.data.io import check_pixels, image_size
from s2mnet.data.naming import is_image_file
from s2mnet.errors import DataError, S2MError
from s2mnet.io_utils import atomic_write_json, atomic_write_with, name_final_path, read_json

#: Created (``O_EXCL``) in an output folder while an ``s2m predict`` writes into it; holds its process id.
CLAIM_FILE = ".s2m_predict.lock"
#: The masks an earlier ``s2m predict`` wrote into a folder (``--overwrite`` replaces only those).
RECORD_FILE = ".s2m_predict.json"
#: Hidden staging folder (``<prefix><pid>``) inside the output folder.
STAGING_PREFIX = ".s2m_predict.tmp-"
_OWN_FILES = (CLAIM_FILE, RECORD_FILE)
_UNREADABLE_CLAIM_GRACE_S = 10.0


def input_images(paths: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """Image files of ``paths``: files as given, folders → their image files sorted by name.

    Raises:
        DataError: a missing input, a file that is not an image, or a folder without images.
    """
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    images: list[Path] = []
    for path in map(Path, paths):
        if not path.exists():
            raise DataError(f"{path}: input not found")
        if path.is_file():
            if not is_image_file(path):
                raise DataError(f"{path}: not a supported image file")
            images.append(path)
            continue
        if not path.is_dir():
            raise DataError(f"{path}: not a regular file or a folder (a device or a pipe?); give images")
        found = sorted(child for child in path.iterdir() if child.is_file() and is_image_file(child))
        if not found:
            raise DataError(f"{path}: no image files in this folder")
        images.extend(found)
    return images


def output_paths(
    inputs: list[Path], output_dir: str | os.PathLike, overwrite: bool, suffix: str = ".png"
) -> list[Path]:
    """``OUTPUT/<stem><suffix>`` for each input, after the checks described in the module docstring."""
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise S2MError(f"{output_dir}: exists and is not a folder; choose another output folder")
    outputs = [output_dir / f"{source.stem}{suffix}" for source in inputs]
    seen: dict[Path, Path] = {}
    for source, target in zip(inputs, outputs, strict=True):
        if target in seen:
            raise S2MError(
                f"{source}: its mask {target.name} would collide with the mask of {seen[target].name}"
            )
        seen[target] = source
    input_set = {source.resolve() for source in inputs}
    for target in outputs:
        if target.resolve() in input_set:
            raise S2MError(f"{target}: the mask would replace this input image; choose another output folder")
    existing = [target for target in outputs if target.exists() or target.is_symlink()]
    if existing and not overwrite:
        more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
        raise S2MError(
            f"{existing[0]}: already exists{more}; pass --overwrite to replace, or choose another folder"
        )
    for target in existing:
        if target.is_symlink() or not target.is_file() or target.name not in _recorded(target.parent):
            raise S2MError(
                f"{target}: exists and was not written by s2m predict (not in {RECORD_FILE}); --overwrite "
                "replaces only masks of an earlier s2m predict; move it away or choose another folder"
            )
    return outputs


def check_inputs(inputs: Sequence[Path]) -> None:
    """Read every input's header before any work: unreadable headers and oversized images stop here.

    Raises:
        DataError: naming the file (truncated header, not an image, more pixels than
            :func:`s2mnet.data.io.max_pixels`).
    """
    for path in inputs:
        check_pixels(path, *image_size(path))


def _recorded(folder: Path) -> set[str]:
    """Names listed in ``folder``'s :data:`RECORD_FILE` (empty when absent or unreadable)."""
    try:
        names = read_json(folder / RECORD_FILE).get("masks", [])
    except (S2MError, AttributeError):
        return set()
    return {name for name in names if isinstance(name, str)} if isinstance(names, list) else set()


class MaskOutput:
    """A claimed output folder whose masks appear all at once (see the module docstring).

    Use as a context manager: :meth:`path` gives the staging path of a final mask path (for writers of
    their own), :meth:`write` writes a mask there; leaving the block without an error moves every staged
    mask into place, leaving it with an error removes them.

    Args:
        output_dir: the folder to claim (created when missing).
        overwrite: accept a folder that already holds files (masks of an earlier ``s2m predict`` are
            replaced; other files are kept).

    Raises:
        S2MError: the folder is a file, another ``s2m predict`` holds it, or it is not empty (without
            ``overwrite``).
    """

    def __init__(self, output_dir: str | os.PathLike, overwrite: bool = False) -> None:
        self.root = Path(output_dir)
        self.overwrite = overwrite
        self.staging = self.root / f"{STAGING_PREFIX}{os.getpid()}"
        self._created = False
        self._claimed = False
        self._staged: dict[Path, Path] = {}

    def __enter__(self) -> MaskOutput:
        self._claim()
        try:
            self._refuse_foreign_content()
            self.staging.mkdir()
        except BaseException:
            self._release(success=False)
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if error is not None:  # errors name the output folder, not the hidden staging folder
            name_final_path(error, self.staging, self.root)
        success = False
        try:
            if kind is None:
                self._commit()
                success = True
        except BaseException as commit_error:
            name_final_path(commit_error, self.staging, self.root)
            raise
        finally:
            self._release(success)

    def path(self, target: str | os.PathLike) -> Path:
        """The staging path of the final mask path ``target`` (inside the output folder)."""
        target = Path(target)
        try:
            relative = target.relative_to(self.root)
        except ValueError:
            raise S2MError(f"{target}: not inside the output folder {self.root}") from None
        staged = self.staging / relative
        staged.parent.mkdir(parents=True, exist_ok=True)
        self._staged[target] = staged
        return staged

    def write(self, target: str | os.PathLike, mask: np.ndarray, binary: bool) -> None:
        """Stage ``mask`` for ``target`` (see :func:`write_mask`)."""
        write_mask(self.path(target), mask, binary)

    def write_probabilities(self, target: str | os.PathLike, probs: np.ndarray) -> None:
        """Stage a ``(C, H, W)`` probability map for ``target`` (see :func:`write_probabilities`)."""
        write_probabilities(self.path(target), probs)

    def _claim(self) -> None:
        if self.root.exists() and not self.root.is_dir():
            raise S2MError(f"{self.root}: exists and is not a folder; choose another output folder")
        self.root.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.mkdir(self.root)
            self._created = True
        claim = self.root / CLAIM_FILE
        for _attempt in range(2):
            try:
                handle = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = _claim_owner(claim)
                if _claim_held(claim, owner):
                    raise S2MError(
                        f"{self.root}: another s2m predict (process {owner}) is writing into this folder; "
                        "wait for it to finish or choose another folder"
                    ) from None
                claim.unlink(missing_ok=True)  # left by a killed process: take it over
                continue
            with os.fdopen(handle, "w") as stream:
                stream.write(str(os.getpid()))
            self._claimed = True
            break
        if not self._claimed:
            raise S2MError(f"{self.root}: could not claim the folder ({CLAIM_FILE} keeps reappearing)")
        for stale in self.root.glob(f"{STAGING_PREFIX}*"):  # staging folders of killed runs
            shutil.rmtree(stale, ignore_errors=True)

    def _refuse_foreign_content(self) -> None:
        if self._created or self.overwrite:
            return
        others = sorted(entry.name for entry in self.root.iterdir() if entry.name not in _OWN_FILES)
        others = [name for name in others if not name.startswith(STAGING_PREFIX)]
        if others:
            more = f" and {len(others) - 1} more" if len(others) > 1 else ""
            raise S2MError(
                f"{self.root}: not empty ({others[0]}{more}); s2m predict writes into a new or empty folder; "
                "pass --overwrite to add to it, or choose another folder"
            )

    def _commit(self) -> None:
        """Move every staged mask into place and record it (per folder) in :data:`RECORD_FILE`."""
        by_folder: dict[Path, list[str]] = {}
        for target in self._staged:
            by_folder.setdefault(target.parent, []).append(target.name)
        for folder, names in by_folder.items():  # the record first: a failure here publishes nothing
            folder.mkdir(parents=True, exist_ok=True)
            record = sorted(_recorded(folder) | set(names))
            atomic_write_json(folder / RECORD_FILE, {"written_by": "s2m predict", "masks": record})
        for target, staged in self._staged.items():
            os.replace(staged, target)

    def _release(self, success: bool) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)
        if self._claimed:
            (self.root / CLAIM_FILE).unlink(missing_ok=True)
            self._claimed = False
        if not success and self._created:
            with contextlib.suppress(OSError):
                self.root.rmdir()  # only when still empty: nothing of this command is left


def _claim_owner(claim: Path) -> int | None:
    """Process id written in a claim file (``None`` when unreadable: treated as stale)."""
    try:
        return int(claim.read_text(encoding="utf-8").strip() or "x")
    except (OSError, ValueError):
        return None


def _claim_held(claim: Path, owner: int | None) -> bool:
    """A claim is held while its process runs; one without a readable id only for its first seconds
    (another process may be between creating the file and writing its id)."""
    if owner is not None:
        return _running(owner)
    try:
        return time.time() - claim.stat().st_mtime < _UNREADABLE_CLAIM_GRACE_S
    except OSError:
        return False


def _running(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def write_mask(path: Path, mask: np.ndarray, binary: bool) -> None:
    """Save an ``(H, W)`` {0, 1} or class-index mask as an 8-bit grey PNG (binary → {0, 255})."""
    picture = Image.fromarray((mask * 255 if binary else mask).astype(np.uint8))  # 2-D uint8 → grey "L"
    atomic_write_with(path, lambda tmp: picture.save(tmp, format="PNG"))


#: Sub-folders of ``s2m predict``'s output for ``--probabilities`` and ``--overlays``.
PROBABILITIES_DIR, OVERLAYS_DIR = "probabilities", "overlays"


def write_probabilities(path: Path, probs: np.ndarray) -> None:
    """Save ``(C, H, W)`` probabilities as a float32 ``.npy`` (``np.load(path, allow_pickle=False)``)."""
    array = np.ascontiguousarray(probs, dtype=np.float32)

    def save(tmp: Path) -> None:
        with open(tmp, "wb") as stream:
            np.save(stream, array, allow_pickle=False)

    atomic_write_with(path, save)
