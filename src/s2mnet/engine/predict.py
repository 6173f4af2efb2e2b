"""``s2m predict``: masks for new images with a trained run, at each image's original size.

Every output is ``OUTPUT/<image stem>.png``: {0, 255} for binary runs, class indices 0..K-1 for
multi-class runs (8-bit grey PNG). Before any work is done, all outputs are checked: an existing file is
refused unless ``overwrite`` is set (nothing the user had is replaced silently), an output that would
replace one of the input images is always refused, and two inputs with the same stem (``a.jpg`` and
``a.png``) are refused because their masks would collide.

No field-of-view mask is available for new images, so a fundus run's masks are not restricted to a FOV
here (``s2m evaluate`` restricts its metrics to the dataset's FOV masks).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from s2mnet.data.io import is_image_file, read_image
from s2mnet.engine.checkpoint import load_model
from s2mnet.engine.evaluate import predict_mask, run_plan
from s2mnet.errors import DataError, S2MError
from s2mnet.io_utils import atomic_write_with


def predict_paths(
    run_dir: str | Path,
    input_path: str | Path,
    output_dir: str | Path,
    tta: bool = False,
    overwrite: bool = False,
    device: str | torch.device | None = None,
    which: str = "best",
    progress: bool | None = None,
) -> list[Path]:
    """Segment one image or every image of a folder and save the masks as PNG.

    Args:
        run_dir: a folder written by ``s2m train``.
        input_path: an image file, or a folder whose image files (not its sub-folders) are segmented.
        output_dir: where the masks go (created if needed).
        tta: 8-way dihedral test-time augmentation.
        overwrite: allow replacing existing mask files of the same names.
        device: ``None`` → CUDA when available, else CPU.
        which: ``"best"`` or ``"last"`` checkpoint.
        progress: show a progress bar; ``None`` → when standard error is a terminal.

    Returns:
        The written mask paths, in input order (sorted by file name for a folder).

    Raises:
        RunError: missing or incomplete run. DataError: missing input, no images, unreadable image
            (naming the file). S2MError: an output that exists (without ``overwrite``), that would
            replace an input, or two inputs mapping to the same output name.
    """
    inputs = _input_images(Path(input_path))
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise S2MError(f"{output_dir}: exists and is not a folder; choose another output folder")
    outputs = _output_paths(inputs, output_dir, overwrite)

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model, config = load_model(run_dir, which=which, device=device)
    plan = run_plan(Path(run_dir), config)
    binary = int(plan.get("num_classes", config.get("num_classes", 1))) == 1

    pairs = list(zip(inputs, outputs, strict=True))
    if progress or (progress is None and sys.stderr.isatty()):
        from tqdm import tqdm

        pairs = tqdm(pairs, desc="predict", unit="image")
    written = []
    for source, target in pairs:
        mask = predict_mask(model, read_image(source), plan, tta=tta, device=device)
        picture = Image.fromarray((mask * 255 if binary else mask).astype(np.uint8))  # 2-D uint8 → grey "L"
        atomic_write_with(target, lambda tmp, picture=picture: picture.save(tmp, format="PNG"))
        written.append(target)
    return written


def _input_images(input_path: Path) -> list[Path]:
    if not input_path.exists():
        raise DataError(f"{input_path}: input not found")
    if input_path.is_file():
        if not is_image_file(input_path):
            raise DataError(f"{input_path}: not a supported image file")
        return [input_path]
    images = sorted(path for path in input_path.iterdir() if path.is_file() and is_image_file(path))
    if not images:
        raise DataError(f"{input_path}: no image files in this folder")
    return images


def _output_paths(inputs: list[Path], output_dir: Path, overwrite: bool) -> list[Path]:
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
