"""A synthetic demo dataset whose objects differ in morphology, so that MASL's descriptors matter.

Each image holds one dominant object family, cycling through the three shapes the paper's loss tells
apart: compact blobs (ellipses), thin branching tubes (vessel-like trees, 3–5 px wide) and irregular
shapes (thresholded smooth noise). Backgrounds are textured and unevenly lit, with darker distractor
blobs and pixel noise, so a global intensity threshold does not segment them but a small network does:
objects are brighter, slightly tinted and finely textured. Images are RGB PNG, masks {0, 255} PNG,
written atomically; the same seed gives byte-identical files.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage
from skimage import draw, measure

from s2mnet.errors import DataError
from s2mnet.io_utils import atomic_write_with

KINDS = ("blobs", "tubes", "irregular")


def _smooth_noise(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    """Gaussian-filtered white noise rescaled to zero mean, unit standard deviation."""
    field = ndimage.gaussian_filter(rng.standard_normal((size, size)), sigma, mode="wrap")
    return (field - field.mean()) / (field.std() + 1e-8)


def _blobs(rng: np.random.Generator, size: int) -> np.ndarray:
    mask = np.zeros((size, size), bool)
    for _ in range(rng.integers(1, 4)):
        radius_r, radius_c = rng.uniform(0.08, 0.2, size=2) * size
        centre = rng.uniform(0.25, 0.75, size=2) * size
        rows, cols = draw.ellipse(
            *centre, radius_r, radius_c, shape=mask.shape, rotation=rng.uniform(0, np.pi)
        )
        mask[rows, cols] = True
    return mask


def _tubes(rng: np.random.Generator, size: int) -> np.ndarray:
    """A branching random walk (turning back at the borders) dilated to 3–5 px wide vessels."""
    skeleton = np.zeros((size, size), bool)
    stack = [(rng.uniform(0.3, 0.7, size=2) * size, rng.uniform(0, 2 * np.pi), int(size * 0.9))]
    segments = 0
    while stack and segments < 7:
        position, heading, length = stack.pop()
        segments += 1
        for step in range(length):
            heading += rng.normal(0, 0.15)
            new = position + 1.5 * np.array([np.sin(heading), np.cos(heading)])
            if not (3 <= new[0] < size - 3 and 3 <= new[1] < size - 3):
                heading += np.pi / 2 + rng.uniform(0, np.pi / 2)
                continue
            rows, cols = draw.line(*np.round(position).astype(int), *np.round(new).astype(int))
            skeleton[rows, cols] = True
            position = new
            if step > 8 and length > 16 and rng.random() < 0.04:
                turn = rng.choice([-1, 1]) * rng.uniform(0.5, 1.1)
                stack.append((position.copy(), heading + turn, int(length * 0.6)))
    width = int(rng.integers(1, 3))
    return ndimage.binary_dilation(skeleton, structure=draw_disk(width))


def draw_disk(radius: int) -> np.ndarray:
    """Boolean disk structuring element of the given radius."""
    grid = np.arange(-radius, radius + 1)
    return grid[:, None] ** 2 + grid[None, :] ** 2 <= radius**2 + 0.5


def _irregular(rng: np.random.Generator, size: int) -> np.ndarray:
    rows, cols = np.mgrid[:size, :size] / size
    centre = rng.uniform(0.35, 0.65, size=2)
    radius = rng.uniform(0.18, 0.3)
    envelope = 1.0 - np.hypot(rows - centre[0], cols - centre[1]) / radius
    field = envelope + 0.45 * _smooth_noise(rng, size, size / 18)
    labels = measure.label(field > 0.15)
    if labels.max() == 0:
        return _blobs(rng, size)
    largest = np.argmax(np.bincount(labels.ravel())[1:]) + 1
    return ndimage.binary_fill_holes(labels == largest)


def render_sample(rng: np.random.Generator, size: int, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Draw one (image uint8 (size, size, 3), mask bool (size, size)) pair of the given kind."""
    mask = {"blobs": _blobs, "tubes": _tubes, "irregular": _irregular}[kind](rng, size)
    if kind != "blobs" and rng.random() < 0.3:  # occasional second family in the same image
        mask |= _blobs(rng, size)
    illumination = 0.12 * _smooth_noise(rng, size, size / 4)
    texture = 0.05 * _smooth_noise(rng, size, 1.5)
    background = 0.38 + illumination + texture
    distractors = _blobs(rng, size) if rng.random() < 0.6 else np.zeros_like(mask)
    background -= 0.16 * ndimage.gaussian_filter(distractors.astype(float), 1.5)
    object_texture = 0.06 * _smooth_noise(rng, size, 1.0)
    contrast = rng.uniform(0.2, 0.3) + (0.08 if kind == "tubes" else 0.0)  # thin: blur lowers their peak
    soft_mask = ndimage.gaussian_filter(mask.astype(float), 0.7)
    grey = background + soft_mask * (contrast + object_texture)
    tint = np.array([1.0, 0.85, 0.75]) + rng.uniform(-0.05, 0.05, size=3)
    image = grey[..., None] * tint + (1 - tint) * 0.25 * (1 - soft_mask[..., None])
    image += rng.normal(0, 0.04, size=image.shape)
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8), mask


def make_synthetic_dataset(out_dir: str | os.PathLike, n: int = 90, size: int = 112, seed: int = 0) -> Path:
    """Write ``n`` synthetic image/mask pairs to ``out_dir/images`` and ``out_dir/masks``.

    Args:
        out_dir: destination; it must not already contain ``images/`` or ``masks/`` files (never
            overwritten).
        n: number of pairs; the three object kinds cycle (blobs, tubes, irregular).
        size: image side in pixels (square).
        seed: the same seed writes identical files.

    Returns:
        ``out_dir`` as a Path.

    Raises:
        DataError: ``out_dir`` already holds a dataset, or invalid ``n``/``size``.
    """
    out_dir = Path(out_dir)
    if n < 1 or size < 32:
        raise DataError(f"{out_dir}: synthetic dataset needs n ≥ 1 and size ≥ 32 (got n={n}, size={size})")
    for sub in ("images", "masks"):
        folder = out_dir / sub
        if folder.exists() and any(folder.iterdir()):
            raise DataError(f"{folder}: already exists and is not empty; choose another output folder")
    children = np.random.SeedSequence(seed).spawn(n)
    width = max(3, len(str(n - 1)))
    for index, child in enumerate(children):
        rng = np.random.default_rng(child)
        image, mask = render_sample(rng, size, KINDS[index % len(KINDS)])
        name = f"synth_{index:0{width}d}.png"
        atomic_write_with(
            out_dir / "images" / name, lambda p, a=image: Image.fromarray(a, "RGB").save(p, "PNG")
        )
        atomic_write_with(
            out_dir / "masks" / name,
            lambda p, m=mask: Image.fromarray(m.astype(np.uint8) * 255, "L").save(p, "PNG"),
        )
    return out_dir
