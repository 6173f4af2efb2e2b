"""Numpy-only preprocessing and whole-image inference steps, shared by training and the ONNX predictor.

:func:`prepare_intensities`, :func:`normalize` and :func:`preprocess` are *the* preprocessing of s2mnet
(``s2mnet.data`` re-exports them for training and the torch predictor). The remaining functions
reproduce, in numpy, what :func:`s2mnet.engine.predictor.predict_probs` does with torch and MONAI, so
that the onnxruntime predictor gives the same masks without importing either:

* :func:`resize_bilinear`: Pillow's float ``"F"`` bilinear resize, which antialiases when shrinking
  like ``F.interpolate(mode="bilinear", align_corners=False, antialias=True)`` (same filter; the two
  agree to ~1e-6, float rounding).
* :func:`sliding_window`: MONAI ``sliding_window_inference`` with ``mode="gaussian"``,
  ``sigma_scale=0.125`` and constant zero padding — same window positions, importance map and
  normalisation.
* :func:`dihedral_average`: the 8-way flip/rotation test-time augmentation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image

#: ``(B, C, h, w)`` float32 → ``(B, K, h, w)`` probabilities.
BatchPredictor = Callable[[np.ndarray], np.ndarray]

_LUMA = np.array([0.299, 0.587, 0.114], np.float32)
# Images whose brightest pixel is below this (12-bit data in 16-bit files, very dark 8-bit images) are
# divided by their maximum, so brightness/contrast augmentation acts on the scale it does for 8-bit data.
_DIM_PEAK = 0.25
# MONAI's gaussian blending: sigma = 0.125 × window side, weights clamped below at max(min, 1e-3).
_SIGMA_SCALE = 0.125
_MIN_IMPORTANCE = 1e-3


def prepare_intensities(image: np.ndarray, plan: dict) -> np.ndarray:
    """Channel choice and contrast enhancement: ``(H, W, C)`` [0, 1] → ``(H, W, in_channels)`` [0, 1]."""
    from skimage.exposure import equalize_adapthist

    image = np.asarray(image, np.float32)
    peak = float(image.max())
    if 0 < peak < _DIM_PEAK:  # e.g. 12-bit data in 16-bit files: bring to the range augmentation expects
        image = image / peak
    if plan.get("preprocess") == "green_clahe":
        green = image[..., 1] if image.shape[-1] == 3 else image[..., 0]
        image = equalize_adapthist(green, clip_limit=0.01).astype(np.float32)[..., None]
    channels = int(plan.get("in_channels", image.shape[-1]))
    if image.shape[-1] == channels:
        return image
    if channels == 3 and image.shape[-1] == 1:
        return np.repeat(image, 3, axis=-1)
    if channels == 1 and image.shape[-1] == 3:
        return (image @ _LUMA)[..., None]
    raise ValueError(f"cannot convert a {image.shape[-1]}-channel image to {channels} channels")


def normalize(image: np.ndarray) -> np.ndarray:
    """Per-image, per-channel z-score of an ``(H, W, C)`` array."""
    mean = image.mean(axis=(0, 1), keepdims=True)
    std = image.std(axis=(0, 1), keepdims=True)
    return ((image - mean) / np.maximum(std, 1e-6)).astype(np.float32)


def preprocess(image: np.ndarray, plan: dict) -> np.ndarray:
    """Inference-time preprocessing of a :func:`read_image` array: ``(H, W, in_channels)`` float32."""
    return normalize(prepare_intensities(image, plan))


def pair(size: int | Sequence[int]) -> tuple[int, int]:
    """``352`` or ``[352, 352]`` → ``(352, 352)``."""
    if isinstance(size, int):
        return (size, size)
    height, width = size
    return (int(height), int(width))


def resize_bilinear(batch: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of ``(B, C, H, W)`` to ``size``, antialiased when shrinking (as the torch path).

    Pillow's ``"F"`` (float32) bilinear filter widens its support by the scale factor when shrinking,
    which is the filter ``F.interpolate(..., antialias=True)`` was written to match.
    """
    height, width = size
    if batch.shape[-2:] == (height, width):
        return batch.astype(np.float32, copy=False)
    out = np.empty((*batch.shape[:2], height, width), np.float32)
    for b, c in np.ndindex(*batch.shape[:2]):
        plane = Image.fromarray(np.ascontiguousarray(batch[b, c], np.float32), mode="F")
        out[b, c] = np.asarray(plane.resize((width, height), Image.Resampling.BILINEAR))
    return out


def logits_to_probs(logits: np.ndarray) -> np.ndarray:
    """Sigmoid for one channel, softmax over channels otherwise (as ``engine.inference``)."""
    logits = logits.astype(np.float32, copy=False)
    if logits.shape[1] == 1:
        return 1.0 / (1.0 + np.exp(-logits))
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def probs_to_mask(probs: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """``(K, H, W)`` probabilities → ``(H, W)`` uint8: ``p > threshold`` for one channel, else argmax."""
    mask = probs[0] > threshold if probs.shape[0] == 1 else probs.argmax(axis=0)
    return mask.astype(np.uint8)


def dihedral_average(predictor: BatchPredictor) -> BatchPredictor:
    """Average ``predictor`` over the 8 flips × 90° rotations of its input, each mapped back."""

    def predict(batch: np.ndarray) -> np.ndarray:
        total = None
        for flip in (False, True):
            flipped = batch[..., ::-1] if flip else batch
            for turns in range(4):
                out = predictor(np.ascontiguousarray(np.rot90(flipped, turns, axes=(-2, -1))))
                out = np.rot90(out, -turns, axes=(-2, -1))
                out = out[..., ::-1] if flip else out
                total = out if total is None else total + out
        return total / 8

    return predict


def predict_whole_image(image: np.ndarray, plan: dict, predictor: BatchPredictor) -> np.ndarray:
    """Probabilities ``(K, H, W)`` of one preprocessed ``(C, H, W)`` image, following the run's plan.

    ``plan["mode"] == "resize"``: resize to ``plan["size"]``, predict, resize back;
    ``"patch"``: :func:`sliding_window` with ``plan["patch_size"]`` and ``plan.get("overlap", 0.5)``.
    """
    x = np.asarray(image, np.float32)[None]
    height, width = x.shape[-2:]
    mode = plan.get("mode", "resize")
    if mode == "resize":
        return resize_bilinear(predictor(resize_bilinear(x, pair(plan["size"]))), (height, width))[0]
    if mode == "patch":
        batch = int(plan.get("sw_batch_size") or plan.get("batch_size") or 4)
        overlap = float(plan.get("overlap", 0.5))
        return sliding_window(x, pair(plan["patch_size"]), batch, predictor, overlap)[0]
    raise ValueError(f"plan mode must be 'resize' or 'patch', got {mode!r}")


def gaussian_importance(window: tuple[int, int]) -> np.ndarray:
    """MONAI's ``compute_importance_map(window, mode="gaussian", sigma_scale=0.125)``, float32."""
    axes = []
    for side in window:
        offsets = np.arange(-(side - 1) / 2.0, (side - 1) / 2.0 + 1, dtype=np.float32)
        axes.append(np.exp(offsets**2 / np.float32(-2 * (side * _SIGMA_SCALE) ** 2)).astype(np.float32))
    importance = axes[0][:, None] * axes[1][None, :]
    return np.maximum(importance, max(float(importance.min()), _MIN_IMPORTANCE)).astype(np.float32)


def window_starts(size: int, window: int, overlap: float) -> list[int]:
    """Window start positions along one axis of length ``size ≥ window`` (MONAI ``dense_patch_slices``)."""
    step = window if window == size else max(int(window * (1 - overlap)), 1)
    count = next(i for i in range(math.ceil(size / step)) if i * step + window >= size) + 1
    return [i * step - max(i * step + window - size, 0) for i in range(count)]


def sliding_window(
    batch: np.ndarray,
    window: tuple[int, int],
    windows_per_call: int,
    predictor: BatchPredictor,
    overlap: float,
) -> np.ndarray:
    """Gaussian-blended sliding-window inference of ``(B, C, H, W)`` → ``(B, K, H, W)`` probabilities.

    Inputs smaller than the window are zero-padded symmetrically and the result is cropped back, as
    MONAI does; ``windows_per_call`` windows go through ``predictor`` at a time.
    """
    height, width = batch.shape[-2:]
    missing = [max(side - extent, 0) for extent, side in zip((height, width), window, strict=True)]
    pads = [(gap // 2, gap - gap // 2) for gap in missing]
    padded = np.pad(batch, ((0, 0), (0, 0), *pads)).astype(np.float32, copy=False)
    size = padded.shape[-2:]
    corners = [
        (top, left)
        for top in window_starts(size[0], window[0], overlap)
        for left in window_starts(size[1], window[1], overlap)
    ]
    importance = gaussian_importance(window)
    total = count = None
    for image in range(padded.shape[0]):
        for first in range(0, len(corners), windows_per_call):
            chunk = corners[first : first + windows_per_call]
            crops = np.stack([padded[image, :, t : t + window[0], lft : lft + window[1]] for t, lft in chunk])
            probs = predictor(crops) * importance
            if total is None:
                total = np.zeros((padded.shape[0], probs.shape[1], *size), np.float32)
                count = np.zeros(size, np.float32)
                for t, lft in corners:
                    count[t : t + window[0], lft : lft + window[1]] += importance
            for (t, lft), prob in zip(chunk, probs, strict=True):
                total[image, :, t : t + window[0], lft : lft + window[1]] += prob
    total /= count
    return total[..., pads[0][0] : pads[0][0] + height, pads[1][0] : pads[1][0] + width]
