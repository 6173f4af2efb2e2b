"""nnU-Net raw datasets (v2 layout), read as they are distributed.

Layout (https://github.com/MIC-DKFZ/nnUNet/blob/master/documentation/dataset_format.md)::

    Dataset001_Name/
        dataset.json     {"channel_names": {"0": "T2", ...}, "labels": {"background": 0, "tumour": 1},
                          "numTraining": 32, "file_ending": ".png"}
        imagesTr/case_0001_0000.png   one file per channel: _0000, _0001, ... stacked as channels
        labelsTr/case_0001.png        integer label values from dataset.json
        imagesTs/                     optional, unlabelled: reported as ignored

``file_ending`` ``.png``, ``.tif``/``.tiff``, ``.bmp``, ``.jpg`` gives 2-D cases; ``.nii``/``.nii.gz``
gives volumes sliced into 2-D cases (:mod:`s2mnet.data.formats.nifti`; axis: ``"s2m_slice_axis"`` in
``dataset.json``, default the last). Class names are the keys of ``labels`` ordered by value (the
background, value 0, is class 0); a single channel file per case that is an RGB PNG gives three channels
(nnU-Net's natural-image convention). Region-based labels (a list of values per name, as nnU-Net's BraTS
conversion) are refused. Any missing channel file or label, or a label value that is not in
``dataset.json``, is a one-line :class:`DataError` naming the file.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

from s2mnet.data.formats.labels import LabelMap
from s2mnet.errors import DataError
from s2mnet.io_utils import read_json

DATASET_JSON = "dataset.json"
_CHANNEL = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


def is_nnunet_raw(root: Path) -> bool:
    """True when ``root`` has ``dataset.json`` and ``imagesTr/`` (an nnU-Net raw dataset)."""
    return (root / DATASET_JSON).is_file() and (root / "imagesTr").is_dir()


def read_dataset_json(root: Path) -> dict:
    """``dataset.json`` with its required keys checked (``channel_names``, ``labels``, ``file_ending``)."""
    path = root / DATASET_JSON
    data = read_json(path, DataError)
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object")
    channels = data.get("channel_names", data.get("modality"))
    missing = [
        k
        for k, v in (
            ("channel_names", channels),
            ("labels", data.get("labels")),
            ("file_ending", data.get("file_ending")),
        )
        if not v
    ]
    if missing:
        raise DataError(f"{path}: missing {', '.join(missing)} (nnU-Net v2 dataset.json)")
    return {**data, "channel_names": channels}


def label_map(data: dict, path: Path) -> LabelMap:
    """Class names/values from ``labels`` ({name: value}; the v1 form {"0": "background"} is accepted)."""
    labels = data["labels"]
    if all(isinstance(v, str) for v in labels.values()) and all(str(k).isdigit() for k in labels):
        labels = {name: int(value) for value, name in labels.items()}  # nnU-Net v1: value → name
    if any(isinstance(v, list) for v in labels.values()):
        raise DataError(
            f"{path}: region-based labels (lists of values) are not supported; use one value per class"
        )
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in labels.values()):
        raise DataError(f"{path}: label values must be integers, found {labels}")
    ordered = sorted(labels.items(), key=lambda item: item[1])
    if ordered[0][1] != 0 or len(ordered) < 2:
        raise DataError(
            f"{path}: labels need the background at value 0 and at least one class "
            '(e.g. {"background": 0, "tumour": 1})'
        )
    if len({v for _, v in ordered}) < len(ordered):
        raise DataError(f"{path}: two labels share one value")
    return LabelMap(tuple(name for name, _ in ordered), values=tuple(value for _, value in ordered))


def _channel_files(folder: Path, ending: str) -> dict[str, dict[int, Path]]:
    """``{case: {channel: path}}`` of the files ``<case>_<XXXX><ending>`` in ``folder``."""
    found: dict[str, dict[int, Path]] = defaultdict(dict)
    if not folder.is_dir():
        return found
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.name.endswith(ending):
            continue
        match = _CHANNEL.match(path.name[: -len(ending)])
        if match is None:
            raise DataError(
                f"{path}: image names in {folder.name}/ must be <case>_<XXXX>{ending} (channel number)"
            )
        found[match["case"]][int(match["channel"])] = path
    return found


def discover_nnunet(root: Path):
    """A :class:`~s2mnet.data.types.DatasetIndex` of an nnU-Net raw dataset (module docstring).

    Raises:
        DataError: bad ``dataset.json``, missing channel or label files, labels without images.
    """
    from s2mnet.data.formats.nifti import slice_cases
    from s2mnet.data.types import Case, DatasetIndex

    data = read_dataset_json(root)
    json_path = root / DATASET_JSON
    ending = str(data["file_ending"])
    labels = label_map(data, json_path)
    n_channels = len(data["channel_names"])
    cases_files = _channel_files(root / "imagesTr", ending)
    if not cases_files:
        raise DataError(f"{root / 'imagesTr'}: no files ending in {ending} (dataset.json file_ending)")
    volumes = ending.lower() in (".nii", ".nii.gz")
    # One file per case with several channel names: nnU-Net's natural images (an RGB PNG holds R, G, B).
    single_file = not volumes and all(set(c) == {0} for c in cases_files.values())
    expected = [0] if single_file else list(range(n_channels))
    axis = int(data.get("s2m_slice_axis", -1))
    cases, ignored = [], []
    for name in sorted(cases_files, key=_natural):
        files = cases_files[name]
        for channel in expected:
            if channel not in files:
                raise DataError(
                    f"{root / 'imagesTr' / f'{name}_{channel:04d}{ending}'}: channel file missing "
                    f"(dataset.json lists {n_channels} channels)"
                )
        label = root / "labelsTr" / f"{name}{ending}"
        if not label.is_file():
            raise DataError(f"{label}: label file missing for case {name}")
        images = [files[c] for c in expected]
        if volumes:
            cases.extend(slice_cases(name, images, label, labels, axis))
        else:
            cases.append(Case(name, images[0], (label,), channels=tuple(images[1:]), labels=labels))
    known = {f"{name}{ending}" for name in cases_files}
    orphans = [p for p in sorted((root / "labelsTr").glob(f"*{ending}")) if p.name not in known]
    if orphans:
        raise DataError(f"{orphans[0]}: label without images in imagesTr/ ({len(orphans)} such labels)")
    for files in _channel_files(root / "imagesTs", ending).values():
        ignored.extend(files.values())
    notes = [
        f"nnU-Net raw dataset {root.name}: {len(cases_files)} training cases, {n_channels} channel(s) "
        f"({', '.join(map(str, data['channel_names'].values()))}), classes {', '.join(labels.names)}"
    ]
    if volumes:
        notes.append(
            f"volumes sliced along axis {range(3)[axis]}: {len(cases)} slices "
            f"({sum(c.slice.foreground for c in cases)} with foreground)"
        )
    if data.get("numTraining") not in (None, len(cases_files)):
        notes.append(f"dataset.json says numTraining {data['numTraining']}, found {len(cases_files)} cases")
    if ignored:
        notes.append(f"{len(ignored)} files in imagesTs/ (unlabelled) ignored")
    return DatasetIndex(
        root,
        cases,
        "nnunet-raw",
        labels.num_classes,
        None,
        ignored,
        notes,
        classes=list(labels.names),
        labels=labels,
    )


def _natural(text: str) -> list:
    return [int(t) if t.isdigit() else t.casefold() for t in re.split(r"(\d+)", text)]


def group_channel_files(paths: list[Path], channels: int, stem=None) -> list[tuple[str, list[Path]]]:
    """``s2m predict`` inputs as cases of ``channels`` files: ``[(case name, [channel 0, 1, ...])]``.

    With one channel (or three, an RGB file) every file is a case named by its stem; otherwise the files
    are grouped by nnU-Net's ``<case>_<XXXX>`` names.

    Raises:
        DataError: a file without a channel number, or a missing channel file (named).
    """
    from s2mnet.data.naming import file_stem

    stem = stem or file_stem
    if channels in (1, 3):
        return [(stem(p), [p]) for p in paths]
    groups: dict[str, dict[int, Path]] = defaultdict(dict)
    for path in paths:
        match = _CHANNEL.match(stem(path))
        if match is None:
            raise DataError(f"{path}: this run takes {channels} channels; name the files <case>_0000…")
        groups[match["case"]][int(match["channel"])] = path
    result = []
    for name, files in sorted(groups.items()):
        first = next(iter(files.values()))
        for channel in range(channels):
            if channel not in files:
                missing = first.name.replace(f"{name}_{stem(first)[-4:]}", f"{name}_{channel:04d}", 1)
                raise DataError(f"{first.parent / missing}: channel file missing")
        result.append((name, [files[c] for c in range(channels)]))
    return result


def read_channel_files(files: list[Path]):
    """One image from its channel files, stacked: ``(H, W, C)`` float32 in [0, 1] (:func:`read_image`)."""
    from s2mnet.data.io import read_image
    from s2mnet.data.types import Case

    return read_image(
        files[0] if len(files) == 1 else Case(files[0].name, files[0], (), channels=tuple(files[1:]))
    )
