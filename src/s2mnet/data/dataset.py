"""Training/evaluation datasets and the intensity preprocessing shared with inference.

Preprocessing (:func:`preprocess`, applied identically at training and inference):

1. ``prepare_intensities``: dim images (maximum < 0.25, e.g. 12-bit data in 16-bit files) are divided by
   their maximum; channel choice and contrast — ``"green_clahe"`` keeps the green channel of
   a colour fundus image and applies CLAHE (method.md §4; scikit-image ``equalize_adapthist``,
   clip limit 0.01); then the image is brought to ``plan["in_channels"]`` (grey repeated to RGB, or RGB
   averaged to grey).
2. ``normalize``: per-image, per-channel z-score (mean 0, std 1), so 8- and 16-bit data look alike.

Augmentation (training only, albumentations; method.md §4): random resized crop (scale 0.5–1, resize
mode), flips, rotation (±180° affine with scale 0.9–1.1 on ``augment="full"``, 90° steps on
``"light"``), coarse dropout (full only), colour jitter / brightness-contrast. ``"light"`` is the CPU
default: fewer and cheaper transforms so that small models converge within a CPU budget.

Patch mode draws native-resolution patches; with probability ``plan["foreground_bias"]`` (default 2/3)
the patch is centred on a random foreground pixel (thin vessels are a few % of the pixels).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import albumentations as A
import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from s2mnet.data.io import read_fov, read_image
from s2mnet.data.labels import label_mode, read_label_map, target_array
from s2mnet.data.preprocessing import normalize, prepare_intensities, preprocess
from s2mnet.data.types import Case
from s2mnet.errors import DataError

# The preprocessing is numpy-only and lives in s2mnet.deploy (the onnxruntime predictor shares it).
__all__ = ["SegmentationDataset", "normalize", "prepare_intensities", "preprocess"]

# Resize-mode training crops cover ≥ 50 % of the area, i.e. ≥ 0.71 of a side: cached copies keep
# 1.5 × the training size on their short side so crops are never upsampled much.
_CACHE_SIDE_FACTOR = 1.5
_DEFAULT_FOREGROUND_BIAS = 2 / 3


def _train_transforms(plan: dict, channels: int) -> list:
    augment = plan.get("augment", "light")
    if augment == "none":
        return []
    colour = (
        A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02, p=0.5)
        if channels == 3 and augment == "full"
        else A.RandomBrightnessContrast(brightness_limit=0.15, contrast_limit=0.15, p=0.5)
    )
    flips = [A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5)]
    if augment == "full":
        return [
            *flips,
            A.Affine(rotate=(-180, 180), scale=(0.9, 1.1), translate_percent=(-0.06, 0.06), p=0.5),
            A.CoarseDropout(
                num_holes_range=(1, 4), hole_height_range=(0.05, 0.12), hole_width_range=(0.05, 0.12), p=0.3
            ),
            colour,
        ]
    return [*flips, A.RandomRotate90(p=0.5), colour]


class SegmentationDataset(Dataset):
    """Cases → tensors for training or evaluation, following a plan from :func:`make_plan`.

    Items: ``{"image": (C, H, W) float32, "mask": (1, H, W) float32 {0, 1} (binary) or int64 class
    indices, or (C, H, W) float32 {0, 1} regions (multi-label, :mod:`s2mnet.data.labels`), "fov":
    (1, H, W) bool (all True without a FOV mask), "case_id": str}``.

    Training: ``len`` is ``plan["samples_per_epoch"]`` (virtual epoch; case = index mod n) or the number
    of cases; items are augmented crops of ``plan["size"]`` (resize mode) or patches of
    ``plan["patch_size"]`` (patch mode). Evaluation: ``native=True`` (default) gives whole images at
    their own resolution (batch size 1; the engine resizes or slides a window); ``native=False`` in
    resize mode gives images resized to ``plan["size"]`` (batchable).

    Decoded images are cached in memory (float16); :meth:`preload` fills the cache up front so that
    non-persistent DataLoader workers inherit it instead of decoding again every epoch. Augmentation is
    deterministic given ``seed``, the epoch (:meth:`set_epoch`) and the item index.
    """

    def __init__(
        self, cases: Sequence[Case], plan: dict, train: bool, seed: int = 0, native: bool = True
    ) -> None:
        if not cases:
            raise ValueError("SegmentationDataset needs at least one case")
        if train and plan.get("skip_empty_slices", True):  # NIfTI slices without foreground (docs/data.md)
            cases = [c for c in cases if c.slice is None or c.slice.foreground] or list(cases)
        self.cases = list(cases)
        self.plan = plan
        self.train = train
        self.seed = seed
        self.native = native
        self.epoch = 0
        self.label_mode = label_mode(plan)
        self.mode = plan.get("mode", "resize")
        self.size = int(plan.get("size") or 0) or None
        self.patch_size = int(plan.get("patch_size") or 0) or None
        self._cache: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        channels = int(plan.get("in_channels", 3))
        targets = {"fov": "mask"}
        steps = list(_train_transforms(plan, channels)) if train else []
        if self.mode == "resize" and self.size:
            if train:
                steps.insert(0, A.RandomResizedCrop(size=(self.size, self.size), scale=(0.5, 1.0)))
            elif not native:
                steps.insert(0, A.Resize(self.size, self.size))
        self.transform = A.Compose(steps, additional_targets=targets, seed=seed) if steps else None

    def __len__(self) -> int:
        if self.train and self.plan.get("samples_per_epoch"):
            return int(self.plan["samples_per_epoch"])
        return len(self.cases)

    def preload(self) -> None:
        """Decode every case into the cache now (DataLoader workers forked later share it)."""
        for position in range(len(self.cases)):
            self._load(position)

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation stream of this epoch (call at the start of each training epoch)."""
        self.epoch = int(epoch)

    def _load(self, position: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if position in self._cache:
            image, mask, fov = self._cache[position]
            return image.astype(np.float32), mask, fov
        case = self.cases[position]
        image = prepare_intensities(read_image(case), self.plan)
        mask = read_label_map(case, self.plan)  # regions are applied after augmentation
        if image.shape[:2] != mask.shape:
            raise DataError(
                f"{case.masks[0]}: mask size {mask.shape[1]}x{mask.shape[0]} differs from image "
                f"{case.image.name} ({image.shape[1]}x{image.shape[0]})"
            )
        if case.fov is not None and self.plan.get("use_fov", False):
            fov = read_fov(case.fov)
            if fov.shape != mask.shape:
                raise DataError(
                    f"{case.fov}: field-of-view size {fov.shape[1]}x{fov.shape[0]} differs from image "
                    f"{case.image.name} ({image.shape[1]}x{image.shape[0]})"
                )
        else:
            fov = np.ones(mask.shape, bool)
        if self.mode == "resize" and self.size and not (self.native and not self.train):
            image, mask, fov = _shrink(image, mask, fov, math.ceil(_CACHE_SIDE_FACTOR * self.size))
        self._cache[position] = (image.astype(np.float16), mask, fov)
        return self._cache[position][0].astype(np.float32), mask, fov

    def __getitem__(self, index: int) -> dict:
        position = index % len(self.cases)
        image, mask, fov = self._load(position)
        rng = np.random.default_rng([self.seed, self.epoch, index])
        if self.train and self.mode == "patch" and self.patch_size:
            bias = self.plan.get("foreground_bias")
            bias = _DEFAULT_FOREGROUND_BIAS if bias is None else float(bias)
            image, mask, fov = _sample_patch(image, mask, fov, self.patch_size, rng, bias)
        if self.transform is not None:
            self.transform.set_random_seed(int(rng.integers(2**31)))
            out = self.transform(image=image, mask=mask, fov=fov.astype(np.uint8))
            image, mask, fov = out["image"], out["mask"], out["fov"].astype(bool)
        image = normalize(image)
        mask_tensor = torch.from_numpy(np.ascontiguousarray(target_array(mask, self.plan)))
        if self.label_mode == "multilabel":
            mask_tensor = mask_tensor.float()  # (C, H, W) regions
        else:
            mask_tensor = mask_tensor.unsqueeze(0)
            mask_tensor = mask_tensor.long() if self.label_mode == "multiclass" else mask_tensor.float()
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
            "mask": mask_tensor,
            "fov": torch.from_numpy(np.ascontiguousarray(fov)).unsqueeze(0),
            "case_id": self.cases[position].case_id,
        }


def _shrink(image: np.ndarray, mask: np.ndarray, fov: np.ndarray, side: int) -> tuple:
    """Downscale (never upscale) so that the short side is ``side``: area for images, nearest for masks."""
    height, width = mask.shape
    scale = side / min(height, width)
    if scale >= 1:
        return image, mask, fov
    new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = cv2.resize(image, new_size, interpolation=cv2.INTER_AREA)
    if small.ndim == 2:
        small = small[..., None]
    mask = cv2.resize(mask, new_size, interpolation=cv2.INTER_NEAREST)
    fov = cv2.resize(fov.astype(np.uint8), new_size, interpolation=cv2.INTER_NEAREST).astype(bool)
    return small, mask, fov


def _sample_patch(
    image: np.ndarray, mask: np.ndarray, fov: np.ndarray, size: int, rng: np.random.Generator, bias: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A ``size``² native-resolution patch, centred on foreground with probability ``bias``; zero-padded."""
    height, width = mask.shape
    pad_h, pad_w = max(0, size - height), max(0, size - width)
    if pad_h or pad_w:
        pads = ((pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2))
        image = np.pad(image, (*pads, (0, 0)))
        mask = np.pad(mask, pads)
        fov = np.pad(fov, pads)
        height, width = mask.shape
    foreground = np.flatnonzero(mask)
    if foreground.size and rng.random() < bias:
        row, col = np.unravel_index(foreground[rng.integers(foreground.size)], mask.shape)
        top = int(np.clip(row - size // 2, 0, height - size))
        left = int(np.clip(col - size // 2, 0, width - size))
    else:
        top = int(rng.integers(height - size + 1))
        left = int(rng.integers(width - size + 1))
    window = (slice(top, top + size), slice(left, left + size))
    return image[window], mask[window], fov[window]
