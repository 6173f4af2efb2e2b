"""``s2m nnunet convert``: any dataset ``s2m`` reads → an nnU-Net v2 raw dataset with the same split.

The folder is read by :func:`s2mnet.data.discover.discover` (every layout ``s2m`` accepts: image/mask
folders, DRIVE-style names, case folders, colour palettes, nnU-Net raw datasets, NIfTI volumes sliced to
2-D), split by :func:`s2mnet.data.splits.make_splits` with ``s2m train``'s default seed (42) or a split
file (``--splits``), and written as ``$nnUNet_raw/DatasetXXX_Name/``:

* ``imagesTr/<case>_0000.png`` (+ ``_0001``… per channel) and ``labelsTr/<case>.png`` for the ``train``
  and ``val`` cases; ``imagesTs/`` and ``labelsTs/`` for the ``test`` cases (nnU-Net never trains on them;
  ``labelsTs`` is for ``nnUNetv2_evaluate_folder``).
* Images: an 8-bit colour image is one RGB PNG (nnU-Net's natural-image convention, channels
  ``R, G, B``); everything else is one grey PNG per channel, 8-bit when the source is 8-bit, else 16-bit
  (intensities scaled to the full 16-bit range, as ``s2m`` scales them to [0, 1]).
* Labels: ``uint8`` class indices (binary masks decoded by ``s2m``'s rules → 0/1; multi-class maps →
  0..K-1), named in ``dataset.json`` (``--class-names`` or the dataset's own names).
* ``splits_final.json``: one fold, ``s2m``'s ``train`` and ``val``; ``nnUNetv2_plan_and_preprocess``
  copies it next to the plans, so nnU-Net's fold 0 is ``s2m``'s split. With the folds of ``s2m train
  --folds K`` (``--splits RUN`` or ``RUN/splits.json``, :func:`cv_splits`) it holds those K folds, and
  the run's held-out test split goes to ``imagesTs/``.
* ``s2m_cases.json``: for each nnU-Net case id, the ``s2m`` case id, split and source files (image,
  masks, field of view — nnU-Net has no field-of-view notion; evaluations that need it can use this).

Case ids are the ``s2m`` case ids with characters outside ``[A-Za-z0-9_-]`` replaced by ``_``.

All or nothing: the dataset is written into a hidden sibling folder (``.s2m-convert.DatasetXXX_Name.<pid>``)
and moved into place after its last file; an error (an unreadable case, a mask whose size differs from its
image's), Ctrl-C or SIGTERM removes it, and one left by a killed conversion is removed by the next. The
dataset folder is never inside the data folder, nor the data folder inside it.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from s2mnet.engine.outputs import check_separate
from s2mnet.errors import DataError, NNUNetSetupError
from s2mnet.nnunet.plans import env_folder, read_json, write_json

if TYPE_CHECKING:
    from s2mnet.data.types import Case, DatasetIndex

DEFAULT_SEED = 42  # s2m train's default, so both tools split the same way
MARKER_FILE = "s2m_cases.json"
#: Hidden sibling folders a conversion is written into before it is moved into place.
STAGING_PREFIX = ".s2m-convert."
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def dataset_name(dataset_id: int, name: str) -> str:
    """``Dataset{id:03d}_{name}`` with ``name`` made safe for nnU-Net.

    Raises:
        NNUNetSetupError: an id outside 1..999 or an empty name.
    """
    if not 1 <= int(dataset_id) <= 999:
        raise NNUNetSetupError(f"dataset id must be in 1..999 (nnU-Net's three digits), got {dataset_id}")
    safe = _UNSAFE.sub("", name.replace(" ", "_"))
    if not safe:
        raise NNUNetSetupError(f"dataset name {name!r} has no usable characters (use letters and digits)")
    return f"Dataset{int(dataset_id):03d}_{safe}"


def nnunet_ids(case_ids: list[str]) -> dict[str, str]:
    """``{s2m case id: nnU-Net case id}``, unique, safe for nnU-Net file names."""
    result: dict[str, str] = {}
    used: set[str] = set()
    for case_id in case_ids:
        base = _UNSAFE.sub("_", case_id).strip("_") or "case"
        candidate, number = base, 1
        while candidate in used:
            number += 1
            candidate = f"{base}_{number}"
        used.add(candidate)
        result[case_id] = candidate
    return result


def _channel_images(case: Case) -> tuple[np.ndarray, bool]:
    """The case's image ``(H, W, C)`` as stored integers, and whether it is an 8-bit colour image."""
    from s2mnet.data.io import read_case_image, read_case_raw

    if case.slice is None and not case.channels:
        raw = read_case_raw(case)
        if raw.dtype in (np.uint8, np.bool_):
            raw = raw.astype(np.uint8)
            if raw.ndim == 2:
                raw = raw[..., None]
            if raw.shape[-1] == 2:
                raw = raw[..., :1]
            elif raw.shape[-1] == 4:
                raw = raw[..., :3]
            colour = raw.shape[-1] == 3 and not bool(np.all(raw == raw[..., :1]))
            return (raw if colour or raw.shape[-1] == 1 else raw[..., :1]), colour
    image = read_case_image(case)  # float32 in [0, 1]
    return np.round(np.clip(image, 0.0, 1.0) * 65535.0).astype(np.uint16), False


def _label(case: Case, multiclass: bool, num_labels: int) -> np.ndarray:
    from s2mnet.data.io import read_case_mask

    label = read_case_mask(case, multiclass=multiclass).astype(np.uint8)
    if int(label.max(initial=0)) >= num_labels:
        raise DataError(
            f"{case.masks[0]}: label value {int(label.max())} but the dataset has {num_labels} classes "
            f"(0..{num_labels - 1})"
        )
    return label


def _write_png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    if array.dtype == np.uint16:
        Image.fromarray(array, mode="I;16").save(path)
    else:
        Image.fromarray(array).save(path)


def class_names(index: DatasetIndex, given: list[str] | None) -> list[str]:
    """Background first, then one name per foreground class.

    Raises:
        NNUNetSetupError: a wrong number of names, or names that repeat.
    """
    foreground = max(int(index.num_classes), 1)
    foreground = 1 if foreground == 1 else foreground - 1
    if given:
        names = ["background", *given] if given[0] != "background" else list(given)
    elif index.classes:
        names = list(index.classes)
    else:
        names = (
            ["background", "foreground"]
            if foreground == 1
            else ["background", *(f"class_{k}" for k in range(1, foreground + 1))]
        )
    if len(names) != foreground + 1:
        raise NNUNetSetupError(
            f"--class-names: the dataset has {foreground} foreground class(es), got names {names[1:]}"
        )
    if len(set(names)) != len(names):
        raise NNUNetSetupError(f"--class-names: names must differ, got {names}")
    return names


def _channel_names(index: DatasetIndex, channels: int, rgb: bool) -> dict[str, str]:
    if rgb:
        return {"0": "R", "1": "G", "2": "B"}
    if channels == 1:
        return {"0": "image"}
    from s2mnet.data.formats.nifti import case_modalities

    modalities = case_modalities(index.cases[0]) if index.cases else None
    if modalities and len(modalities) == channels:
        return {str(k): str(m) for k, m in enumerate(modalities)}
    return {str(k): f"channel_{k}" for k in range(channels)}


def _prepare_folder(folder: Path, overwrite: bool) -> None:
    """Refuse to touch a folder ``s2m`` did not write (ours is replaced at the end when ``overwrite``)."""
    siblings = [p for p in folder.parent.glob(folder.name.split("_")[0] + "_*") if p != folder]
    if siblings:
        raise NNUNetSetupError(
            f"{siblings[0]}: nnU-Net dataset id {folder.name[7:10]} is already used by another dataset; "
            "choose another --dataset-id"
        )
    if not folder.exists():
        return
    if not overwrite:
        raise NNUNetSetupError(f"{folder}: already exists; pass --overwrite to write it again")
    if not (folder / MARKER_FILE).is_file():
        raise NNUNetSetupError(
            f"{folder}: exists and was not written by `s2m nnunet convert` ({MARKER_FILE} missing); "
            "not overwriting it"
        )


def _publish(staging: Path, folder: Path) -> None:
    """Move the finished staging folder onto ``folder`` (an earlier conversion there is replaced)."""
    if folder.exists():
        old = folder.with_name(f"{STAGING_PREFIX}{folder.name}.old-{os.getpid()}")
        os.replace(folder, old)
        os.replace(staging, folder)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, folder)


def _splits(index: DatasetIndex, seed: int, splits_file: str | os.PathLike | None) -> dict:
    from s2mnet.data.splits import load_splits, make_splits

    if splits_file is not None:
        folds = cv_splits(splits_file, index)
        return folds if folds is not None else load_splits(splits_file, index, seed)
    return make_splits(index, seed=seed)


def cv_splits(path: str | os.PathLike, index: DatasetIndex) -> dict | None:
    """The folds of ``s2m train --folds K`` (its run folder, or a list-shaped ``splits.json``), or ``None``
    for a ``{"train", "val", "test"}`` split file.

    Returns:
        ``{"train": every case of the folds, "val": [], "test": the held-out test ids (from the run's
        ``cv.json``), "folds": [{"train", "val"}, ...], "source", "seed"}``.

    Raises:
        DataError: a malformed list, or ids that are not cases of ``index``.
    """
    from s2mnet.data.folds import folds_from_list
    from s2mnet.engine.rundir import CV_MANIFEST, SPLITS_JSON, is_cv_run, read_cv_manifest

    path = Path(path)
    run = path if path.is_dir() else path.parent
    file = path / SPLITS_JSON if path.is_dir() else path
    data = read_json(file)
    if not isinstance(data, list):
        return None
    folds = folds_from_list(data, str(file))
    manifest = read_cv_manifest(run) if is_cv_run(run) and (run / SPLITS_JSON) == file else {}
    known = {case.case_id for case in index.cases}
    test = [i for i in manifest.get("test", []) if i in known]
    pool = sorted({i for fold in folds for i in fold["train"] + fold["val"]})
    unknown = [i for i in pool if i not in known]
    if unknown:
        raise DataError(f"{file}: {len(unknown)} case(s) not in the dataset, e.g. {unknown[0]!r}")
    source = manifest.get("source") or f"{len(folds)} folds from {file}"
    origin = f" ({run / CV_MANIFEST})" if manifest else ""
    return {"train": pool, "val": [], "test": test, "folds": folds, "source": source + origin, "seed": None}


def convert_dataset(
    data: str | os.PathLike,
    dataset_id: int,
    out: str | os.PathLike | None = None,
    name: str | None = None,
    seed: int = DEFAULT_SEED,
    splits_file: str | os.PathLike | None = None,
    names: list[str] | None = None,
    overwrite: bool = False,
    progress: Any = None,
) -> dict:
    """Write ``data`` as the nnU-Net raw dataset ``DatasetXXX_Name`` (module docstring).

    Args:
        data: a dataset folder ``s2m`` can read.
        dataset_id: nnU-Net dataset id (1..999).
        out: the ``nnUNet_raw`` folder (default: the environment variable).
        name: dataset name (default: the folder's name).
        seed: split seed (``s2m train --seed``; default 42 as ``s2m train``).
        splits_file: an ``s2m`` split file (``splits.json`` of a run, or a user file) instead of the seed.
        names: foreground class names for ``dataset.json`` (default: the dataset's, else ``foreground``).
        overwrite: replace a dataset folder written by an earlier conversion.
        progress: optional ``callable(done, total)``.

    Returns:
        ``{"folder", "dataset", "train", "val", "test", "channels", "labels", "split_source"}``.

    Raises:
        DataError: unreadable data (from the readers).
        NNUNetSetupError: ``nnUNet_raw`` not set, the id taken by another dataset, an existing folder.
    """
    from s2mnet.data.discover import discover

    root = env_folder("nnUNet_raw", hint=" or pass --out") if out is None else Path(out).expanduser()
    source = Path(data).expanduser()
    full_name = dataset_name(dataset_id, name or source.resolve().name)
    folder = root / full_name
    check_separate(folder, source, "--out", "--data")
    index = discover(source)
    if not index.cases:
        raise DataError(f"{source}: no cases found")
    if root.is_dir():
        _prepare_folder(folder, overwrite)
    splits = _splits(index, seed, splits_file)
    labels = class_names(index, names)
    ids = nnunet_ids([c.case_id for c in index.cases])
    part_of = {case_id: part for part in ("train", "val", "test") for case_id in splits.get(part, [])}
    # a case in no part (a split file naming a subset) is not converted
    cases = [c for c in index.cases if c.case_id in part_of]
    if not any(part_of[c.case_id] in ("train", "val") for c in cases):
        raise DataError(f"{source}: the split has no training cases")

    first, _ = _channel_images(cases[0])
    channels = first.shape[-1]
    rgb_any, all_8bit = False, True
    for case in cases:  # channel counts must agree; grey images in a colour dataset become grey RGB
        image, colour = _channel_images(case)
        rgb_any |= colour
        all_8bit &= image.dtype == np.uint8
        if image.shape[-1] != channels and {image.shape[-1], channels} != {1, 3}:
            raise DataError(
                f"{case.image}: {image.shape[-1]} channels, but {cases[0].image.name} has {channels}"
            )
        channels = max(channels, image.shape[-1])
    single_rgb = rgb_any and channels == 3 and all_8bit

    root.mkdir(parents=True, exist_ok=True)  # --out may be new; $nnUNet_raw exists (checked above)
    for stale in root.glob(f"{STAGING_PREFIX}{full_name}.*"):  # left by a killed conversion
        shutil.rmtree(stale, ignore_errors=True)
    staging = root / f"{STAGING_PREFIX}{full_name}.{os.getpid()}"
    staging.mkdir()
    try:  # all or nothing: written into the staging folder, moved into place at the end
        records, dataset_json, counts = _write_cases(
            staging, index, cases, part_of, ids, splits, labels, channels, single_rgb, progress
        )
        dataset_json["name"] = full_name.split("_", 1)[1]
        dataset_json["description"] = f"converted by `s2m nnunet convert` from {source.resolve()}"
        dataset_json["s2m_split"]["seed"] = splits.get("seed", seed)
        write_json(staging / "dataset.json", dataset_json)
        if "folds" in splits:  # s2m train --folds K: nnU-Net's folds are s2m's
            folds = [
                {part: [ids[c] for c in fold[part]] for part in ("train", "val")} for fold in splits["folds"]
            ]
        else:
            folds = [{"train": counts["train"], "val": counts["val"]}]
        write_json(staging / "splits_final.json", folds)
        write_json(staging / MARKER_FILE, records)
        _publish(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {
        "folder": folder,
        "dataset": full_name,
        "train": len(counts["train"]),
        "val": len(counts["val"]),
        "test": len(counts["test"]),
        "channels": dataset_json["channel_names"],
        "labels": dataset_json["labels"],
        "split_source": dataset_json["s2m_split"]["source"],
        "folds": len(folds),
    }


def _write_cases(
    folder: Path,
    index: DatasetIndex,
    cases: list[Case],
    part_of: dict[str, str],
    ids: dict[str, str],
    splits: dict,
    labels: list[str],
    channels: int,
    single_rgb: bool,
    progress: Any,
) -> tuple[dict[str, dict], dict, dict[str, list[str]]]:
    """Write every case's images and label into ``folder``; returns the records, dataset.json and parts.

    Raises:
        DataError: an unreadable case, or a label whose size differs from its image's (naming both).
    """
    multiclass = len(labels) > 2
    records: dict[str, dict] = {}
    for done, case in enumerate(cases, start=1):
        part = part_of[case.case_id]
        case_name = ids[case.case_id]
        suffix = "Ts" if part == "test" else "Tr"
        image, _ = _channel_images(case)
        label = _label(case, multiclass, len(labels))
        if label.shape[:2] != image.shape[:2]:
            raise DataError(
                f"{case.masks[0]}: the mask is {label.shape[1]}x{label.shape[0]} pixels but its image "
                f"{case.image.name} is {image.shape[1]}x{image.shape[0]}; nothing was converted"
            )
        if image.shape[-1] != channels:
            image = np.repeat(image, channels, axis=-1)
        if single_rgb:
            _write_png(folder / f"images{suffix}" / f"{case_name}_0000.png", image)
        else:
            for k in range(channels):
                _write_png(folder / f"images{suffix}" / f"{case_name}_{k:04d}.png", image[..., k])
        _write_png(folder / f"labels{suffix}" / f"{case_name}.png", label)
        records[case_name] = {
            "s2m_case": case.case_id,
            "split": part,
            "image": str(case.image),
            "masks": [str(m) for m in case.masks],
            "fov": str(case.fov) if case.fov is not None else None,
        }
        if progress is not None:
            progress(done, len(cases))

    counts = {part: [ids[c] for c in splits.get(part, []) if c in ids] for part in ("train", "val", "test")}
    dataset_json = {
        "name": "",
        "description": "",
        "channel_names": _channel_names(index, channels, single_rgb),
        "labels": {label: value for value, label in enumerate(labels)},
        "numTraining": len(counts["train"]) + len(counts["val"]),
        "file_ending": ".png",
        "s2m_split": {"source": str(splits.get("source", ""))},
    }
    return records, dataset_json, counts


def read_case_records(folder: str | os.PathLike) -> dict[str, dict]:
    """``s2m_cases.json`` of a converted dataset (``{nnU-Net case id: {s2m_case, split, image, ...}}``)."""
    return read_json(Path(folder) / MARKER_FILE)
