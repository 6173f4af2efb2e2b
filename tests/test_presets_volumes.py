"""The EndoVis17, BraTS2020 and ACDC presets on tiny synthetic copies of their publishers' layouts."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from s2mnet.data import discover
from s2mnet.data.labels import read_target
from s2mnet.errors import DataError
from s2mnet.planning.presets.registry import (
    check_data,
    get_preset,
    list_presets,
    plan_overrides,
    resolve_split,
)
from s2mnet.reproduce import reproduce

_AFFINE = np.array([[0.0, -1.2, 0.0, 30.0], [1.1, 0.0, 0.0, -20.0], [0.0, 0.0, 5.0, 4.0], [0, 0, 0, 1]])
_W, _H = 48, 40  # EndoVis frames (width × height)


def _png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def endovis17(root: Path, sequences=(1, 2, 3, 4), frames=(0, 1)) -> None:
    """instrument_dataset_<n>/{left,right}_frames/ + ground_truth/<Instrument>_labels/ part maps."""
    rng = np.random.default_rng(0)
    for n in sequences:
        sequence = root / f"instrument_dataset_{n}"
        (sequence / "camera_calibration.txt").parent.mkdir(parents=True, exist_ok=True)
        (sequence / "camera_calibration.txt").write_text("calibration\n")
        for f in frames:
            name = f"frame{f:03d}.png"
            for view in ("left_frames", "right_frames"):
                _png(sequence / view / name, rng.integers(0, 255, (_H, _W, 3), dtype=np.uint8))
            left = np.zeros((_H, _W), np.uint8)  # one instrument: shaft, wrist, clasper bands
            left[4:12, 2:20], left[12:16, 2:20], left[16:20, 2:20] = 10, 20, 30
            right = np.zeros((_H, _W), np.uint8)  # another instrument: shaft and clasper
            right[24:34, 30:44], right[34:38, 30:44] = 10, 30
            other = np.zeros((_H, _W), np.uint8)
            other[36:40, 0:8] = 40  # a non-instrument object: not a part
            _png(sequence / "ground_truth" / "Left_Prograsp_Forceps_labels" / name, left)
            _png(sequence / "ground_truth" / "Maryland_Bipolar_Forceps_labels" / name, right)
            _png(sequence / "ground_truth" / "Other_labels" / name, other)


def _volume(path: Path, data: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, _AFFINE), str(path))


def _tumour(shape=(24, 24, 6)) -> np.ndarray:
    """BraTS label values: oedema 2 around a core 1 around enhancing tumour 4, in slices 2..4."""
    seg = np.zeros(shape, np.uint8)
    seg[4:20, 4:20, 2:5] = 2
    seg[7:17, 7:17, 2:5] = 1
    seg[10:14, 10:14, 2:4] = 4
    return seg


def brats2020(root: Path, patients=(1, 2, 3, 4)) -> None:
    """MICCAI_BraTS2020_TrainingData/BraTS20_Training_<nnn>/<case>_{flair,t1,t1ce,t2,seg}.nii.gz."""
    data = root / "MICCAI_BraTS2020_TrainingData"
    rng = np.random.default_rng(1)
    for p in patients:
        case = f"BraTS20_Training_{p:03d}"
        for modality in ("flair", "t1", "t1ce", "t2"):
            _volume(
                data / case / f"{case}_{modality}.nii.gz", rng.normal(100, 20, (24, 24, 6)).astype(np.int16)
            )
        _volume(data / case / f"{case}_seg.nii.gz", _tumour())
    (data / "name_mapping.csv").write_text("BraTS_2020_subject_ID\n")


def _heart(shape=(20, 24, 5)) -> np.ndarray:
    """ACDC label values: RV 1, myocardium 2 around the LV cavity 3, in slices 1..3."""
    gt = np.zeros(shape, np.uint8)
    gt[3:9, 4:12, 1:4] = 1
    gt[8:18, 10:22, 1:4] = 2
    gt[11:15, 13:19, 1:4] = 3
    return gt


def acdc(root: Path, training=(1, 2, 3), testing=(101, 102)) -> None:
    """{training,testing}/patient<nnn>/patient<nnn>_frame<nn>[_gt].nii.gz, _4d.nii.gz, Info.cfg."""
    rng = np.random.default_rng(2)
    for folder, patients in (("training", training), ("testing", testing)):
        for p in patients:
            case = root / folder / f"patient{p:03d}"
            for frame in (1, 12):
                stem = f"patient{p:03d}_frame{frame:02d}"
                _volume(case / f"{stem}.nii.gz", rng.normal(200, 40, (20, 24, 5)).astype(np.float32))
                _volume(case / f"{stem}_gt.nii.gz", _heart())
            _volume(case / f"patient{p:03d}_4d.nii.gz", rng.normal(200, 40, (20, 24, 5)).astype(np.float32))
            (case / "Info.cfg").write_text("ED: 1\nES: 12\nGroup: NOR\n")


LAYOUTS = {"endovis17-binary": endovis17, "endovis17-parts": endovis17, "brats2020": brats2020, "acdc": acdc}


def _assert_disjoint(split: dict, index) -> None:
    parts = [set(split[p]) for p in ("train", "val", "test")]
    assert all(parts) and not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert set().union(*parts) == {c.case_id for c in index.cases}


def test_every_preset_is_ready():
    assert set(LAYOUTS) <= set(list_presets(ready_only=True))
    assert list_presets(ready_only=True) == list_presets()


@pytest.mark.parametrize("name", ["endovis17-binary", "endovis17-parts"])
def test_endovis17_merges_instruments_and_splits_by_sequence(tmp_path, name):
    endovis17(tmp_path)
    preset = get_preset(name)
    index = check_data(preset, tmp_path)
    assert len(index.cases) == 8 and sum("right_frames" in p.parts for p in index.ignored) == 8
    case = index.case("instrument_dataset_2/frame001")
    assert case.image.parent.name == "left_frames" and len(case.masks) == 3
    plan = plan_overrides(preset, "ci", 4)
    target = read_target(case, plan)
    if preset.label_mode == "binary":  # union of the instruments' parts; Other_labels is background
        assert set(np.unique(target)) == {0, 1} and target.sum() == 16 * 18 + 14 * 14
    else:  # shaft/wrist/clasper merged over the two instruments
        assert [int((target == k).sum()) for k in (1, 2, 3)] == [8 * 18 + 10 * 14, 4 * 18, 4 * 18 + 4 * 14]
        assert plan["regions"] == {"shaft": [10], "wrist": [20], "clasper": [30]}
    split = resolve_split(preset, index)
    _assert_disjoint(split, index)
    assert split["groups"]["test"] == ["instrument_dataset_1", "instrument_dataset_3"]
    assert len(split["groups"]["val"]) == 1 and len(split["groups"]["train"]) == 1
    for part in ("train", "val", "test"):  # no frame of a sequence outside its sequence's part
        assert {i.split("/")[0] for i in split[part]} == set(split["groups"][part])


def test_annotation_subfolders_merge_but_class_folders_still_group(tmp_path):
    frame = np.zeros((_H, _W), np.uint8)
    frame[2:6, 2:6] = 255
    for kind in ("benign", "malignant"):  # the same stem in two class folders: paired within the class
        _png(tmp_path / "c" / "images" / kind / "case1.png", np.full((_H, _W), 90, np.uint8))
        _png(tmp_path / "c" / "masks" / kind / "case1_mask.png", frame)
    index = discover(tmp_path / "c")
    assert {c.case_id: c.masks[0].parent.name for c in index.cases} == {
        "benign/case1": "benign",
        "malignant/case1": "malignant",
    }
    endovis17(tmp_path / "e", sequences=(5,), frames=(7,))
    (case,) = discover(tmp_path / "e").cases
    assert sorted(m.parent.name for m in case.masks)[0] == "Left_Prograsp_Forceps_labels"


def test_endovis17_needs_its_sequence_folders(tmp_path):
    endovis17(tmp_path / "e", sequences=(1,), frames=(0, 1))
    flat = tmp_path / "flat"
    for n, source in enumerate(sorted((tmp_path / "e").rglob("left_frames/*.png"))):
        _png(flat / "images" / f"frame{n:03d}.png", np.asarray(Image.open(source)))
        _png(flat / "masks" / f"frame{n:03d}.png", np.full((_H, _W), 10, np.uint8))
    with pytest.raises(DataError, match=r"frame000.png: no EndoVis17 binary unit in its path"):
        resolve_split(get_preset("endovis17-binary"), check_data(get_preset("endovis17-binary"), flat))


def test_brats2020_stacks_modalities_and_splits_by_patient(tmp_path):
    brats2020(tmp_path)
    preset = get_preset("brats2020")
    index = check_data(preset, tmp_path)
    assert len(index.cases) == 4 * 6
    case = index.case("BraTS20_Training_002/003")
    assert [p.name.split("_")[-1] for p in (case.image, *case.channels)] == [
        "flair.nii.gz",
        "t1.nii.gz",
        "t1ce.nii.gz",
        "t2.nii.gz",
    ]
    plan = plan_overrides(preset, "ci", 8)
    assert plan["label_mode"] == "multilabel" and list(plan["regions"]) == ["ET", "TC", "WT"]
    target = read_target(case, plan)  # (ET, TC, WT) of slice 3: ET ⊂ TC ⊂ WT
    assert target.shape == (3, 24, 24)
    assert [int(t.sum()) for t in target] == [16, 100, 256]
    split = resolve_split(preset, index)
    _assert_disjoint(split, index)
    assert sorted(len(g) for g in split["groups"].values()) == [1, 1, 2]
    for part in ("train", "val", "test"):  # every slice of a volume in its volume's part
        assert {i.split("/")[0] for i in split[part]} == set(split["groups"][part])
        assert len(split[part]) == 6 * len(split["groups"][part])
    assert plan_overrides(preset, "paper", 100)["samples_per_epoch"] == 100  # no ×30 for BraTS


def test_acdc_official_folders_split_by_patient(tmp_path):
    acdc(tmp_path)
    preset = get_preset("acdc")
    index = check_data(preset, tmp_path)
    assert len(index.cases) == 5 * 2 * 5 and len(index.ignored) == 5  # the _4d volumes
    plan = plan_overrides(preset, "ci", 10)
    assert plan["label_mode"] == "multiclass" and list(plan["regions"]) == ["RV", "MYO", "LV"]
    target = read_target(index.case("patient002_frame12/002"), plan)
    assert set(np.unique(target)) == {0, 1, 2, 3}
    split = resolve_split(preset, index)
    _assert_disjoint(split, index)
    assert split["groups"]["test"] == ["patient101", "patient102"] and split["kind"] == "published"
    assert len(split["groups"]["val"]) == 1 and "official" in split["source"]
    train_patients = {i.split("_")[0] for i in split["train"]}
    assert train_patients == set(split["groups"]["train"])  # both frames of a patient together


def test_acdc_without_testing_folder_uses_the_seeded_rule(tmp_path):
    acdc(tmp_path, training=(1, 2, 3, 4), testing=())
    split = resolve_split(get_preset("acdc"), check_data(get_preset("acdc"), tmp_path))
    assert sorted(len(g) for g in split["groups"].values()) == [1, 1, 2] and "seeded" in split["source"]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_one_training_step_per_preset(tmp_path, name):
    LAYOUTS[name](tmp_path / "data")
    row = reproduce(name, tmp_path / "data", tmp_path / "out", [0], scale="ci", device="cpu", quiet=True)
    assert (
        0.0 <= row["ours"]["dice"]["mean"] <= 100.0 and row["paper_s2mnet"] == get_preset(name).paper.s2mnet
    )
    if get_preset(name).label_mode != "binary":
        assert set(row["ours_per_class"]) == set(get_preset(name).classes)
    assert row["dice_unit"] == ("volume" if name in ("brats2020", "acdc") else "image")
    plan = json.loads((tmp_path / "out" / "seed_0" / "plan.json").read_text())
    assert plan["in_channels"] == {"brats2020": 4, "acdc": 1}.get(name, 3)
    assert plan["num_classes"] == {"brats2020": 3, "acdc": 4, "endovis17-parts": 4}.get(name, 1)
