"""Pairing two folders of masks by case (``s2m evaluate --pred DIR --truth DIR``; docs/evaluation.md,
"Scoring a folder of masks"). Torch-free, so that folders that do not pair are answered before any heavy
import.

The key of a file is its stem (a NIfTI volume's without ``.nii.gz``), case-folded, without nnU-Net's
``_0000`` channel suffix and without the role words of :mod:`s2mnet.data.naming` (``_mask``, ``_seg``,
``_gt``, ``image_`` ...), with leading zeros of numbers dropped: ``case_007_seg.png`` pairs with
``case_7.png``.
"""

from __future__ import annotations

import re
from pathlib import Path

from s2mnet.data.formats.nifti import is_volume_file, volume_stem
from s2mnet.data.naming import IMAGE_PREFIX, IMAGE_SUFFIX, MASK_PREFIX, MASK_SUFFIX, file_stem, is_image_file
from s2mnet.errors import DataError

_CHANNEL_SUFFIX = re.compile(r"_\d{4}$")
#: How many unpaired names an error lists.
LISTED = 3


def pair_key(path: Path) -> str:
    """The pairing key of a mask or image file (module docstring)."""
    key = _CHANNEL_SUFFIX.sub("", mask_stem(path).casefold())
    for pattern in (MASK_SUFFIX, IMAGE_SUFFIX, MASK_PREFIX, IMAGE_PREFIX):
        key = pattern.sub("", key) or key
    return re.sub(r"\d+", lambda match: str(int(match.group())), key)


def mask_files(folder: Path, what: str) -> list[Path]:
    """The image and NIfTI files at the top of ``folder`` (hidden files skipped), sorted by name."""
    if not folder.is_dir():
        raise DataError(f"{folder}: {what} folder not found")
    found = sorted(
        path
        for path in folder.iterdir()
        if path.is_file() and not path.name.startswith(".") and (is_image_file(path) or is_volume_file(path))
    )
    if not found:
        raise DataError(f"{folder}: no mask files (PNG, TIFF, NIfTI...) in this {what} folder")
    return found


def keyed_files(files: list[Path], folder: Path) -> dict[str, Path]:
    """``{pairing key: file}``; two files of ``folder`` with one key are a :class:`DataError`."""
    keyed: dict[str, Path] = {}
    for path in files:
        key = pair_key(path)
        if key in keyed:
            raise DataError(f"{folder}: {keyed[key].name} and {path.name} pair with the same case; keep one")
        keyed[key] = path
    return keyed


def pair_folders(pred_dir: Path, truth_dir: Path) -> tuple[list[tuple[str, Path, Path]], list[Path]]:
    """``[(case id, prediction, truth)]`` in prediction order, and the truths left without a prediction.

    Raises:
        DataError: a prediction without a truth (how many paired, a few unpaired names), two files of
            one folder with the same key.
    """
    preds = keyed_files(mask_files(pred_dir, "--pred"), pred_dir)
    truths = keyed_files(mask_files(truth_dir, "--truth"), truth_dir)
    unpaired = [path.name for key, path in preds.items() if key not in truths]
    if unpaired:
        paired = len(preds) - len(unpaired)
        spare = [path.name for key, path in truths.items() if key not in preds][:LISTED]
        more = f" (+{len(unpaired) - LISTED} more)" if len(unpaired) > LISTED else ""
        hint = f"; truths left: {', '.join(spare)}" if spare else ""
        raise DataError(
            f"{pred_dir}: {paired} of {len(preds)} predictions pair with a mask of {truth_dir}; no truth for "
            f"{', '.join(unpaired[:LISTED])}{more}{hint}"
        )
    pairs = [(mask_stem(path), path, truths[key]) for key, path in preds.items()]
    return pairs, [path for key, path in truths.items() if key not in preds]


def mask_stem(path: Path) -> str:
    """A mask file's case id: its stem (a NIfTI volume's without ``.nii``/``.nii.gz``)."""
    return volume_stem(path) if is_volume_file(path) else file_stem(path)
