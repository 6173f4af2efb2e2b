"""NIfTI volumes (nibabel): 2-D training slices, per-volume intensity normalisation, NIfTI predictions.

Choices (docs/data.md, "Formats"):

- **Slicing.** A volume is cut into 2-D slices along one axis, by default the last one (``axis=-1``, the
  axial axis of volumes stored as (x, y, z), e.g. BraTS' 240×240×155 → 155 slices of 240×240). Each
  slice is a :class:`~s2mnet.data.types.Case` with ``slice=VolumeSlice(axis, index, foreground)``
  and ``group`` = the volume id, so every split keeps all slices of a volume together (no leakage).
  Several modalities of a case are separate files of equal shape, stacked as channels (sorted by their
  suffix: ``_flair``, ``_t1``, ``_t1ce``, ``_t2``; nnU-Net ``_0000``, ``_0001``).
- **Intensities.** Per volume and modality: the 0.5th and 99.5th percentiles of the non-zero voxels
  (all voxels when none is zero) are mapped to 0 and 1 and values are clipped, so every slice of a
  volume shares one scale; the shared preprocessing then z-scores each slice (``preprocess``).
- **Labels.** Label volumes hold integer values. With nnU-Net's ``dataset.json`` class ``i`` is the
  ``i``-th label value (:class:`LabelMap`); a plain folder of volumes keeps the stored values as class
  indices, as 2-D class maps do (values 0..255; ``{0, v}`` is binary; BraTS' {0, 1, 2, 4} gives five
  classes, class 3 empty, unless regions are named — :mod:`s2mnet.data.labels`).
- **Empty slices.** A slice whose label is all background has ``foreground=False``; training skips such
  slices unless the plan says ``skip_empty_slices: false`` (validation and evaluation keep every slice).
- **Evaluation** is per slice (each slice is a case of ``s2m evaluate``), plus the 3-D Dice of every
  volume (``metrics.json["volumes"]``, :class:`s2mnet.engine.metrics.VolumeDice`); :func:`volume_dice`
  gives the 3-D Dice of two whole volumes.
- **Prediction** (``s2m predict`` on ``.nii``/``.nii.gz``) segments every slice and writes the label
  volume with the source's affine, header and shape, values mapped back to the stored label values.
"""

from __future__ import annotations

import gzip
import os
from collections import defaultdict
from functools import lru_cache
from pathlib import Path

import numpy as np

from s2mnet.data.formats.labels import LabelMap
from s2mnet.data.naming import natural_key
from s2mnet.data.types import Case, DatasetIndex, VolumeSlice
from s2mnet.errors import DataError

VOLUME_EXTENSIONS = (".nii.gz", ".nii")
LABEL_SUFFIXES = ("seg", "gt", "label", "labels", "mask", "segmentation")
_LOW_PERCENTILE, _HIGH_PERCENTILE = 0.5, 99.5
_CACHE_VOLUMES = 8


def is_volume_file(path: str | os.PathLike) -> bool:
    """True for ``.nii`` / ``.nii.gz`` files (hidden files excluded)."""
    name = Path(path).name
    return name.lower().endswith(VOLUME_EXTENSIONS) and not name.startswith(".")


def volume_stem(path: str | os.PathLike) -> str:
    """``case_001_t1.nii.gz`` → ``case_001_t1``."""
    name = Path(path).name
    for extension in VOLUME_EXTENSIONS:
        if name.lower().endswith(extension):
            return name[: -len(extension)]
    return Path(name).stem


def _load(path: Path):
    import nibabel as nib

    try:
        image = nib.load(str(path))
    except FileNotFoundError as error:
        raise DataError(f"{path}: file not found") from error
    except Exception as error:  # nibabel raises many types for broken files
        raise DataError(f"{path}: cannot read the NIfTI file ({str(error).splitlines()[0][:160]})") from error
    shape = tuple(int(s) for s in image.shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) != 3:
        raise DataError(f"{path}: expected a 3-D volume, found shape {image.shape}")
    return image, shape


def volume_shape(path: str | os.PathLike) -> tuple[int, int, int]:
    """The 3-D shape of a volume from its header (trailing singleton dimensions dropped)."""
    return _load(Path(path))[1]


def _data(path: Path, dtype: type | None) -> np.ndarray:
    """The voxels as ``dtype`` (scaled by the header), or as stored when ``dtype`` is None."""
    image, shape = _load(path)
    try:
        data = np.asanyarray(image.dataobj) if dtype is None else image.get_fdata(dtype=dtype)
        return np.asarray(data).reshape(shape)
    except Exception as error:
        raise DataError(
            f"{path}: cannot decode the volume ({str(error).splitlines()[0][:160]}); truncated?"
        ) from error


def normalise_volume(volume: np.ndarray) -> np.ndarray:
    """Per-volume robust scaling to [0, 1] (module docstring, "Intensities")."""
    region = volume[volume != 0]
    if region.size == 0:
        return np.zeros(volume.shape, np.float32)
    low, high = np.percentile(region, [_LOW_PERCENTILE, _HIGH_PERCENTILE])
    if high <= low:
        high = low + 1.0
    return np.clip((volume - low) / (high - low), 0.0, 1.0).astype(np.float32)


@lru_cache(maxsize=_CACHE_VOLUMES)
def _image_volume(path: str, stamp: int) -> np.ndarray:
    return normalise_volume(_data(Path(path), np.float32))


@lru_cache(maxsize=_CACHE_VOLUMES)
def _label_volume(path: str, stamp: int) -> np.ndarray:
    data = _data(Path(path), None)  # stored integer type: a 240×240×155 uint8 label stays 9 MB
    if np.issubdtype(data.dtype, np.floating):
        if not np.all(data == np.round(data)):
            raise DataError(f"{path}: label volume holds non-integer values")
        data = data.astype(np.int32)
    return data


def _stamp(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError as error:
        raise DataError(f"{path}: file not found") from error


def read_image_slice(path: str | os.PathLike, axis: int, index: int) -> np.ndarray:
    """One normalised slice ``(H, W)`` float32 in [0, 1] of an image volume (volumes are cached)."""
    path = Path(path)
    return np.ascontiguousarray(np.take(_image_volume(str(path), _stamp(path)), index, axis=axis))


def read_label_slice(path: str | os.PathLike, axis: int, index: int) -> np.ndarray:
    """One slice ``(H, W)`` of a label volume, as stored (an integer type)."""
    path = Path(path)
    return np.ascontiguousarray(np.take(_label_volume(str(path), _stamp(path)), index, axis=axis))


def read_label_volume(path: str | os.PathLike) -> np.ndarray:
    """A whole label volume as stored (an integer type; scaled float labels → int32)."""
    path = Path(path)
    return _label_volume(str(path), _stamp(path))


def slice_cases(
    volume_id: str,
    images: list[Path],
    label: Path,
    labels: LabelMap | None,
    axis: int = -1,
) -> list[Case]:
    """The 2-D cases of one labelled volume (one per slice along ``axis``), ``group`` = ``volume_id``.

    Args:
        volume_id: the case name of the volume (slice ids are ``<volume_id>/<index:03d>``).
        images: one file per modality, stacked as channels in this order.
        label: the label volume.
        labels: class values (every value of ``label`` must be one of them), or ``None``: the stored
            values are the classes (0..255).
        axis: slicing axis (negative counts from the end).

    Raises:
        DataError: unreadable volumes, shapes that differ, or label values not in ``labels``.
    """

    shape = volume_shape(label)
    for image in images:
        if volume_shape(image) != shape:
            raise DataError(
                f"{image}: volume shape {volume_shape(image)} differs from its label {label.name} {shape}"
            )
    axis = range(3)[axis]
    stored = read_label_volume(label)
    if labels is not None:
        stored = labels.encode(stored.reshape(1, -1), label).reshape(stored.shape)  # 2-D: no colour axis
    elif stored.min(initial=0) < 0 or stored.max(initial=0) > 255:
        raise DataError(f"{label}: label values {int(stored.min())}..{int(stored.max())} are outside 0..255")
    foreground = stored.any(axis=tuple(a for a in range(3) if a != axis))
    return [
        Case(
            f"{volume_id}/{index:03d}",
            images[0],
            (label,),
            channels=tuple(images[1:]),
            slice=VolumeSlice(axis, index, bool(foreground[index])),
            group=volume_id,
            labels=labels,
        )
        for index in range(shape[axis])
    ]


def _label_key(path: Path, label_folders: set[Path]) -> str | None:
    """The case key of a label volume (stem minus ``_seg``/``_gt``/...), or None for an image volume."""
    stem = volume_stem(path)
    head, _, tail = stem.rpartition("_")
    if head and tail.lower() in LABEL_SUFFIXES:
        return head
    if path.parent in label_folders:
        return stem
    return None


def discover_volumes(root: Path, axis: int = -1) -> DatasetIndex | None:
    """Pair image and label volumes of a folder of NIfTI files (``None``: 2-D images or no volume there).

    Rules: a label volume is named ``<key>_seg`` (or ``_gt``, ``_label(s)``, ``_mask``,
    ``_segmentation``) or lies in a label folder (``labels``, ``masks``, ``gt``, ``segmentations``, ...
    next to an image folder); its images are the volumes named ``<key>`` or ``<key>_<modality>``
    (the longest matching key wins). Every case must have the same modalities. Image volumes without a
    label (unlabelled test sets, ACDC's ``_4d`` files) are reported in ``ignored``. Split words in folder
    names (``training``/``validation``/``test``) give a published split, as for 2-D data.

    Raises:
        DataError: labels without images, missing modality files, shape or label-value problems.
    """
    from s2mnet.data.naming import folder_role, is_image_file, split_of

    volumes = []
    for folder, dirs, names in os.walk(root):
        if any(is_image_file(n) for n in names):
            return None  # 2-D images: the generic pairing of discover()
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        volumes.extend(Path(folder) / n for n in sorted(names) if is_volume_file(n))
    if not volumes:
        return None
    label_folders = {
        p.parent for p in volumes if folder_role(p.parent.name)[0] == "mask" and p.parent != root
    }
    keyed = {p: _label_key(p, label_folders) for p in volumes}
    label_of = {key: p for p, key in keyed.items() if key is not None}
    if not label_of:
        raise DataError(
            f"{root}: NIfTI volumes but no label volumes (name them <case>_seg.nii.gz or put them in labels/)"
        )
    members: dict[str, dict[str, Path]] = defaultdict(dict)
    ignored = []
    for path, key in keyed.items():
        if key is not None:
            continue
        stem = volume_stem(path)
        matches = [k for k in label_of if stem == k or stem.startswith(k + "_")]
        if not matches:
            ignored.append(path)
            continue
        key = max(matches, key=len)
        members[key][stem[len(key) + 1 :]] = path
    missing = [label_of[k] for k in label_of if k not in members]
    if missing:
        raise DataError(f"{missing[0]}: label volume without an image volume ({len(missing)} such labels)")
    modalities = sorted({m for found in members.values() for m in found}, key=natural_key)
    for key, found in members.items():
        lacking = [m for m in modalities if m not in found]
        if lacking:
            example = next(iter(found.values()))
            raise DataError(
                f"{example.parent / (key + '_' + lacking[0])}.nii.gz: modality file missing for case {key}"
            )
    cases, splits, found_values = [], {}, {0}
    for key in sorted(members, key=natural_key):
        images = [members[key][m] for m in modalities]
        cases.extend(slice_cases(key, images, label_of[key], None, axis))
        found_values.update(int(v) for v in np.unique(read_label_volume(label_of[key])))  # cached
        relative = images[0].relative_to(root).parts[:-1]
        splits[key] = next((s for s in map(split_of, relative) if s), None)
    values = sorted(found_values)
    num_classes = 1 if len(values) <= 2 else max(values) + 1
    notes = [
        f"{len(members)} labelled volumes sliced along axis {range(3)[axis]}: {len(cases)} slices "
        f"({sum(c.slice.foreground for c in cases)} with foreground)",
        f"modalities stacked as channels: {', '.join(m or '(one file)' for m in modalities)}",
        f"label values {values}: "
        + ("binary" if num_classes == 1 else f"{num_classes} classes (values as indices)"),
    ]
    if ignored:
        notes.append(f"{len(ignored)} image volumes without a label ignored")
    return DatasetIndex(root, cases, "nifti-volumes", num_classes, known_split(cases, splits), ignored, notes)


def case_modalities(case: Case) -> list[str] | None:
    """Modality suffixes of a slice case's files (``<volume>_<suffix>``: ``flair``, ``0000``…), or None."""
    if case.slice is None or case.group is None:
        return None
    return [volume_stem(p)[len(case.group) + 1 :] for p in (case.image, *case.channels)]


def group_modalities(volumes: list[Path], modalities: list[str]) -> list[tuple[str, list[Path]]]:
    """Predict inputs as ``[(case, [file per modality])]`` by the run's modality suffixes."""
    by_stem = {volume_stem(p): p for p in volumes}
    first = modalities[0]
    keys = sorted(stem[: -len(first) - 1] for stem in by_stem if stem.endswith(f"_{first}"))
    if not keys:
        raise DataError(f"{volumes[0].parent}: no <case>_{first}.nii.gz volume (modalities {modalities})")
    result = []
    for key in keys:
        files = [by_stem.get(f"{key}_{m}") for m in modalities]
        if None in files:
            missing = modalities[files.index(None)]
            raise DataError(
                f"{by_stem[f'{key}_{first}'].parent / f'{key}_{missing}.nii.gz'}: modality file missing"
            )
        result.append((key, files))
    return result


def known_split(cases: list[Case], split_of: dict[str, str | None]) -> dict | None:
    """A published split of slice cases from their volumes' split words (``None`` unless ≥ 2 splits)."""
    if not all(split_of.values()) or len(set(split_of.values())) < 2:
        return None
    result: dict = {name: [] for name in ("train", "val", "test")}
    for case in cases:
        result[split_of[case.group]].append(case.case_id)
    return {**result, "source": "folder names"}


def volume_dice(pred: np.ndarray, truth: np.ndarray, num_classes: int = 1) -> float:
    """3-D Dice of a predicted class volume (mean over foreground classes; both empty: 1)."""
    classes = [1] if num_classes == 1 else range(1, num_classes)
    scores = []
    for c in classes:
        p, t = pred == c, truth == c
        total = int(p.sum() + t.sum())
        scores.append(1.0 if total == 0 else 2.0 * int((p & t).sum()) / total)
    return float(np.mean(scores))


def write_label_volume(
    classes: np.ndarray, source: str | os.PathLike, target: str | os.PathLike, labels: LabelMap | None = None
) -> None:
    """Write a class volume as NIfTI with ``source``'s affine and header (values mapped back by ``labels``).

    The output is gzip-compressed when ``target`` ends in ``.gz``; the write is atomic.
    """
    import nibabel as nib

    from s2mnet.io_utils import atomic_write_bytes

    image = _load(Path(source))[0]
    values = labels.decode(classes) if labels is not None else np.asarray(classes, np.int64)
    dtype = np.uint8 if values.max(initial=0) <= 255 and values.min(initial=0) >= 0 else np.int16
    data = values.astype(dtype).reshape(image.shape)
    header = image.header.copy()
    header.set_data_dtype(dtype)
    output = nib.Nifti1Image(data, image.affine, header)
    output.header.set_slope_inter(1, 0)
    payload = output.to_bytes()
    atomic_write_bytes(target, gzip.compress(payload) if str(target).lower().endswith(".gz") else payload)


def write_probability_volume(probs: np.ndarray, source: str | os.PathLike, target: str | os.PathLike) -> None:
    """Write ``(X, Y, Z, C)`` float32 probabilities as a 4-D NIfTI with ``source``'s affine (atomic, gzip)."""
    import nibabel as nib

    from s2mnet.io_utils import atomic_write_bytes

    image = _load(Path(source))[0]
    data = np.asarray(probs, np.float32).reshape(*image.shape[:3], -1)
    output = nib.Nifti1Image(data, image.affine)
    output.header.set_xyzt_units(*image.header.get_xyzt_units())
    payload = output.to_bytes()
    atomic_write_bytes(target, gzip.compress(payload) if str(target).lower().endswith(".gz") else payload)
