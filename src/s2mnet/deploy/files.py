"""Inputs and outputs of ``s2m predict`` (both the torch and the onnxruntime predictor).

Every output is ``OUTPUT/<image stem>.png``: {0, 255} for binary models, class indices 0..K-1 for
multi-class ones (8-bit grey PNG), written atomically. Before any work is done, all outputs are
checked: an existing file is refused unless ``overwrite`` is set, an output that would replace one of
the input images is always refused, and two inputs with the same stem (``a.jpg`` and ``a.png``) are
refused because their masks would collide.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from s2mnet.data.io import is_image_file
from s2mnet.errors import DataError, S2MError
from s2mnet.io_utils import atomic_write_with


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
        found = sorted(child for child in path.iterdir() if child.is_file() and is_image_file(child))
        if not found:
            raise DataError(f"{path}: no image files in this folder")
        images.extend(found)
    return images


def output_paths(inputs: list[Path], output_dir: str | os.PathLike, overwrite: bool) -> list[Path]:
    """``OUTPUT/<stem>.png`` for each input, after the checks described in the module docstring."""
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise S2MError(f"{output_dir}: exists and is not a folder; choose another output folder")
    outputs = [output_dir / f"{source.stem}.png" for source in inputs]
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
    existing = [target for target in outputs if target.exists()]
    if existing and not overwrite:
        more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
        raise S2MError(
            f"{existing[0]}: already exists{more}; pass --overwrite to replace, or choose another folder"
        )
    return outputs


def write_mask(path: Path, mask: np.ndarray, binary: bool) -> None:
    """Save an ``(H, W)`` {0, 1} or class-index mask as an 8-bit grey PNG (binary → {0, 255})."""
    picture = Image.fromarray((mask * 255 if binary else mask).astype(np.uint8))  # 2-D uint8 → grey "L"
    atomic_write_with(path, lambda tmp: picture.save(tmp, format="PNG"))
