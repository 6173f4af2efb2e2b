"""Pairing rules of s2mnet.data.discover on tiny layouts of public datasets, and bad folders."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from s2mnet.data import discover
from s2mnet.data.io import read_image, read_mask
from s2mnet.errors import DataError

SIZE = (12, 10)


def image(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*SIZE, 3), 90, np.uint8)).save(path)
    return path


def mask(path: Path, value: int = 255) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.zeros(SIZE, np.uint8)
    array[2:6, 2:6] = value
    Image.fromarray(array).save(path)
    return path


def pairs(root: Path) -> dict[str, tuple[str, list[str], str | None]]:
    """{case_id: (image path, [mask paths], fov path)} relative to root, for compact assertions."""
    index = discover(root)

    def rel(p):
        return p.relative_to(root).as_posix() if p else None

    return {c.case_id: (rel(c.image), [rel(m) for m in c.masks], rel(c.fov)) for c in index.cases}


def test_identical_stems_in_images_and_masks(tmp_path):
    image(tmp_path / "images" / "a.jpg")
    mask(tmp_path / "masks" / "a.jpg")
    image(tmp_path / "images" / "b.jpg")
    mask(tmp_path / "masks" / "b.png")
    index = discover(tmp_path)
    assert index.layout == "images-masks" and index.num_classes == 1 and index.known_split is None
    assert pairs(tmp_path) == {
        "a": ("images/a.jpg", ["masks/a.jpg"], None),
        "b": ("images/b.jpg", ["masks/b.png"], None),
    }


@pytest.mark.parametrize(
    "suffix", ["_mask", "_lesion", "_segmentation", "_Segmentation", "_1stHO", "_gt", "_label"]
)
def test_mask_suffixes(tmp_path, suffix):
    image(tmp_path / "images" / "case7.png")
    mask(tmp_path / "masks" / f"case7{suffix}.png")
    assert pairs(tmp_path) == {"case7": ("images/case7.png", [f"masks/case7{suffix}.png"], None)}


def test_busi_double_masks_are_united(tmp_path):
    for name in ("benign (4)", "benign (10)", "normal (1)"):
        image(tmp_path / "images" / f"{name}.png")
        mask(tmp_path / "masks" / f"{name}_mask.png")
    mask(tmp_path / "masks" / "benign (4)_mask_1.png")
    found = pairs(tmp_path)
    assert list(found) == ["benign (4)", "benign (10)", "normal (1)"]  # natural order
    assert found["benign (4)"][1] == ["masks/benign (4)_mask.png", "masks/benign (4)_mask_1.png"]


def test_busi_kaggle_class_folders_mixed(tmp_path):
    for cls in ("benign", "malignant"):
        image(tmp_path / "Dataset_BUSI_with_GT" / cls / f"{cls} (1).png")
        mask(tmp_path / "Dataset_BUSI_with_GT" / cls / f"{cls} (1)_mask.png")
    mask(tmp_path / "Dataset_BUSI_with_GT" / "benign" / "benign (1)_mask_1.png")
    index = discover(tmp_path)
    assert index.layout == "mixed"
    assert [len(c.masks) for c in index.cases] == [2, 1]


def test_drive_flat_layout_with_fov_and_second_observer(tmp_path):
    for number, split in (("21", "training"), ("22", "training"), ("01", "test"), ("02", "test")):
        image(tmp_path / "images" / f"{number}_{split}.tif")
        mask(tmp_path / "masks" / f"{number}_manual1.gif")
        mask(tmp_path / "fov_masks" / f"{number}_{split}_mask.gif")
    mask(tmp_path / "masks_2nd_observer" / "01_manual2.gif")
    index = discover(tmp_path)
    assert index.layout == "images-masks-fov"
    assert pairs(tmp_path)["21_training"] == (
        "images/21_training.tif",
        ["masks/21_manual1.gif"],
        "fov_masks/21_training_mask.gif",
    )
    assert [p.name for p in index.ignored] == ["01_manual2.gif"]
    assert index.known_split == {
        "train": ["21_training", "22_training"],
        "val": [],
        "test": ["01_test", "02_test"],
        "source": "file names",
    }


def test_drive_as_distributed(tmp_path):
    for number, split, folder in (("21", "training", "training"), ("01", "test", "test")):
        image(tmp_path / "DRIVE" / folder / "images" / f"{number}_{split}.tif")
        mask(tmp_path / "DRIVE" / folder / "1st_manual" / f"{number}_manual1.gif")
        mask(tmp_path / "DRIVE" / folder / "mask" / f"{number}_{split}_mask.gif")
    mask(tmp_path / "DRIVE" / "test" / "2nd_manual" / "01_manual2.gif")
    found = pairs(tmp_path)
    assert found["01_test"] == (
        "DRIVE/test/images/01_test.tif",
        ["DRIVE/test/1st_manual/01_manual1.gif"],
        "DRIVE/test/mask/01_test_mask.gif",
    )
    index = discover(tmp_path)
    assert index.known_split["train"] == ["21_training"] and index.known_split["test"] == ["01_test"]
    assert index.known_split["source"] == "folder names"


def test_drive_without_test_annotations_skips_the_unlabelled_split(tmp_path):
    for number in ("21", "22"):
        image(tmp_path / "training" / "images" / f"{number}_training.tif")
        mask(tmp_path / "training" / "1st_manual" / f"{number}_manual1.gif")
        mask(tmp_path / "training" / "mask" / f"{number}_training_mask.gif")
    image(tmp_path / "test" / "images" / "01_test.tif")
    mask(tmp_path / "test" / "mask" / "01_test_mask.gif")  # FOV, not a vessel annotation
    index = discover(tmp_path)
    assert [c.case_id for c in index.cases] == ["21_training", "22_training"]
    assert sorted(p.name for p in index.ignored) == ["01_test.tif", "01_test_mask.gif"]
    assert index.known_split is None and any("unlabelled" in note for note in index.notes)


def test_hrf_manual1_and_mask_folders(tmp_path):
    image(tmp_path / "images" / "01_dr.JPG")
    mask(tmp_path / "manual1" / "01_dr.tif")
    mask(tmp_path / "mask" / "01_dr_mask.tif")
    assert pairs(tmp_path) == {"01_dr": ("images/01_dr.JPG", ["manual1/01_dr.tif"], "mask/01_dr_mask.tif")}


def test_isic_as_distributed(tmp_path):
    image(tmp_path / "ISIC2018_Task1-2_Training_Input" / "ISIC_0000000.jpg")
    (tmp_path / "ISIC2018_Task1-2_Training_Input" / "LICENSE.txt").write_text("CC")
    mask(tmp_path / "ISIC2018_Task1_Training_GroundTruth" / "ISIC_0000000_segmentation.png")
    image(tmp_path / "ISIC2018_Task1-2_Validation_Input" / "ISIC_0000001.jpg")
    mask(tmp_path / "ISIC2018_Task1_Validation_GroundTruth" / "ISIC_0000001_segmentation.png")
    index = discover(tmp_path)
    assert [c.case_id for c in index.cases] == ["ISIC_0000000", "ISIC_0000001"]
    assert index.known_split["train"] == ["ISIC_0000000"] and index.known_split["val"] == ["ISIC_0000001"]


def test_isic_2016_2017_data_folders_and_superpixels(tmp_path):
    image(tmp_path / "ISIC-2017_Training_Data" / "ISIC_0000000.jpg")
    image(tmp_path / "ISIC-2017_Training_Data" / "ISIC_0000000_superpixels.png")
    mask(tmp_path / "ISIC-2017_Training_Part1_GroundTruth" / "ISIC_0000000_segmentation.png")
    index = discover(tmp_path)
    assert [c.case_id for c in index.cases] == ["ISIC_0000000"]
    assert [p.name for p in index.ignored] == ["ISIC_0000000_superpixels.png"]


def test_ph2_case_folders_with_role_subfolders(tmp_path):
    for case in ("IMD002", "IMD003"):
        folder = tmp_path / "PH2Dataset" / "PH2 Dataset images" / case
        image(folder / f"{case}_Dermoscopic_Image" / f"{case}.bmp")
        mask(folder / f"{case}_lesion" / f"{case}_lesion.bmp")
        mask(folder / f"{case}_roi" / f"{case}_R1_Label4.bmp")
    index = discover(tmp_path)
    assert [c.case_id for c in index.cases] == ["IMD002", "IMD003"]
    assert index.cases[0].masks[0].name == "IMD002_lesion.bmp" and index.cases[0].fov is None
    assert len(index.ignored) == 2  # colour-region files in *_roi/ match no image: reported, not fatal


def test_chase_flat_folder_ignores_second_observer(tmp_path):
    for eye in ("01L", "01R"):
        image(tmp_path / "CHASEDB1" / f"Image_{eye}.jpg")
        mask(tmp_path / "CHASEDB1" / f"Image_{eye}_1stHO.png")
        mask(tmp_path / "CHASEDB1" / f"Image_{eye}_2ndHO.png")
    index = discover(tmp_path)
    assert pairs(tmp_path)["Image_01L"] == ("CHASEDB1/Image_01L.jpg", ["CHASEDB1/Image_01L_1stHO.png"], None)
    assert len(index.ignored) == 2


def test_stare_ppm_with_observer_folders(tmp_path):
    image(tmp_path / "stare-images" / "im0001.ppm")
    mask(tmp_path / "labels-ah" / "im0001.ah.ppm")
    mask(tmp_path / "labels-vk" / "im0001.vk.ppm")
    assert pairs(tmp_path) == {"im0001": ("stare-images/im0001.ppm", ["labels-ah/im0001.ah.ppm"], None)}


def test_stare_as_distributed_gzipped_ppm(tmp_path):
    for folder, name, array in (
        ("stare-images", "im0001.ppm", np.full((*SIZE, 3), 90, np.uint8)),
        ("labels-ah", "im0001.ah.ppm", np.eye(*SIZE, dtype=np.uint8) * 255),
    ):
        buffer = io.BytesIO()
        Image.fromarray(array).convert("RGB").save(buffer, "PPM")
        (tmp_path / folder).mkdir()
        (tmp_path / folder / f"{name}.gz").write_bytes(gzip.compress(buffer.getvalue()))
    index = discover(tmp_path)
    assert [c.case_id for c in index.cases] == ["im0001"]
    assert read_image(index.cases[0].image).shape == (*SIZE, 3)
    np.testing.assert_array_equal(read_mask(index.cases[0].masks), np.eye(*SIZE, dtype=np.uint8))


def test_cvc_clinicdb_original_and_ground_truth_tiffs(tmp_path):
    for number in (1, 2, 10):
        image(tmp_path / "CVC-ClinicDB" / "Original" / f"{number}.tif")
        mask(tmp_path / "CVC-ClinicDB" / "Ground Truth" / f"{number}.tif")
    assert list(pairs(tmp_path)) == ["1", "2", "10"]


@pytest.mark.parametrize(
    ("images", "masks"),
    [
        ("image", "mask"),
        ("img", "label"),
        ("Images", "Masks"),
        ("imgs", "annotations"),
        ("inputs", "targets"),
    ],
)
def test_common_folder_names(tmp_path, images, masks):
    image(tmp_path / images / "p1.png")
    mask(tmp_path / masks / "p1.png")
    assert pairs(tmp_path) == {"p1": (f"{images}/p1.png", [f"{masks}/p1.png"], None)}


def test_case_folders(tmp_path):
    for case in ("case_001", "case_002"):
        image(tmp_path / case / "image.png")
        mask(tmp_path / case / "mask.png")
    index = discover(tmp_path)
    assert index.layout == "case-folders"
    assert pairs(tmp_path) == {
        "case_001": ("case_001/image.png", ["case_001/mask.png"], None),
        "case_002": ("case_002/image.png", ["case_002/mask.png"], None),
    }


def test_split_folders_with_repeated_names(tmp_path):
    for split in ("train", "val", "test"):
        image(tmp_path / split / "images" / "1.png")
        mask(tmp_path / split / "masks" / "1.png")
    index = discover(tmp_path)
    assert sorted(c.case_id for c in index.cases) == ["test/1", "train/1", "val/1"]
    assert index.known_split["val"] == ["val/1"]


def test_zero_padded_numbers_and_case_insensitive_names(tmp_path):
    image(tmp_path / "images" / "001.png")
    mask(tmp_path / "masks" / "1.png")
    image(tmp_path / "images" / "Scan_B.png")
    mask(tmp_path / "masks" / "scan_b_mask.png")
    assert set(pairs(tmp_path)) == {"001", "Scan_B"}


def test_prefixed_names(tmp_path):
    image(tmp_path / "images" / "img_001.png")
    mask(tmp_path / "masks" / "mask_001.png")
    image(tmp_path / "images" / "002.png")
    mask(tmp_path / "masks" / "gt_002.png")
    image(tmp_path / "images" / "seg_003.png")  # a prefix word in both names: the full stems match
    mask(tmp_path / "masks" / "seg_003.png")
    image(tmp_path / "mixed" / "scan.png")
    mask(tmp_path / "mixed" / "label_scan.png")
    image(tmp_path / "mixed" / "seg_004.png")  # a prefix word without an unprefixed twin: an image
    mask(tmp_path / "mixed" / "seg_004_mask.png")
    assert {k: v[1] for k, v in pairs(tmp_path).items()} == {
        "img_001": ["masks/mask_001.png"],
        "002": ["masks/gt_002.png"],
        "seg_003": ["masks/seg_003.png"],
        "scan": ["mixed/label_scan.png"],
        "seg_004": ["mixed/seg_004_mask.png"],
    }


def test_kvasir_distributed_ignores_other_files(tmp_path):
    image(tmp_path / "Kvasir-SEG" / "images" / "cju0.jpg")
    mask(tmp_path / "Kvasir-SEG" / "masks" / "cju0.jpg")
    (tmp_path / "Kvasir-SEG" / "kavsir_bboxes.json").write_text("{}")
    (tmp_path / "Kvasir-SEG" / "images" / ".DS_Store").write_text("")
    assert list(pairs(tmp_path)) == ["cju0"]


def test_multiclass_maps_are_detected(tmp_path):
    classes = np.zeros(SIZE, np.uint8)
    classes[:3], classes[3:6] = 1, 2
    (tmp_path / "masks").mkdir()
    for name in ("a", "b"):
        image(tmp_path / "images" / f"{name}.png")
        Image.fromarray(classes).save(tmp_path / "masks" / f"{name}.png")
    assert discover(tmp_path).num_classes == 3


# ------------------------------------------------------------------------------------------ bad folders
def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(DataError, match=r"nowhere.*not found"):
        discover(tmp_path / "nowhere")
    (tmp_path / "empty" / "images").mkdir(parents=True)
    with pytest.raises(DataError, match=r"empty.*no image files"):
        discover(tmp_path / "empty")


def test_images_without_any_mask(tmp_path):
    image(tmp_path / "images" / "a.png")
    with pytest.raises(DataError, match="no masks found"):
        discover(tmp_path)


def test_unmatched_image_is_listed(tmp_path):
    image(tmp_path / "images" / "a.png")
    image(tmp_path / "images" / "lonely.png")
    mask(tmp_path / "masks" / "a.png")
    with pytest.raises(DataError, match=r"1 images have no mask: images/lonely\.png"):
        discover(tmp_path)


def test_unmatched_mask_is_listed(tmp_path):
    image(tmp_path / "images" / "a.png")
    mask(tmp_path / "masks" / "a.png")
    mask(tmp_path / "masks" / "orphan_mask.png")
    with pytest.raises(DataError, match=r"1 masks match no image: masks/orphan_mask\.png"):
        discover(tmp_path)


def test_two_images_with_one_name_are_ambiguous(tmp_path):
    image(tmp_path / "images" / "a.png")
    image(tmp_path / "images" / "a.jpg")
    mask(tmp_path / "masks" / "a.png")
    with pytest.raises(DataError, match=r"ambiguous.*a\.jpg.*a\.png"):
        discover(tmp_path)


def test_mask_matching_two_images_is_ambiguous(tmp_path):
    image(tmp_path / "images" / "21_training.png")
    image(tmp_path / "images" / "21_test.png")
    mask(tmp_path / "masks" / "21_manual1.png")
    with pytest.raises(
        DataError, match=r"21_manual1\.png: ambiguous pairing.*21_test\.png.*21_training\.png"
    ):
        discover(tmp_path)


def test_only_masks(tmp_path):
    mask(tmp_path / "masks" / "a_mask.png")
    with pytest.raises(DataError, match=r"no images found, only masks: masks/a_mask\.png"):
        discover(tmp_path)


def test_etis_original_release_p_prefixed_ground_truth(tmp_path):
    for number in (1, 2, 10):
        image(tmp_path / "ETIS-LaribPolypDB" / "ETIS-LaribPolypDB" / f"{number}.tif")
        mask(tmp_path / "ETIS-LaribPolypDB" / "Ground Truth" / f"p{number}.tif")
    assert pairs(tmp_path)["10"] == (
        "ETIS-LaribPolypDB/ETIS-LaribPolypDB/10.tif",
        ["ETIS-LaribPolypDB/Ground Truth/p10.tif"],
        None,
    )


def test_ground_truth_folder_inside_the_image_folder(tmp_path):
    for number in (1, 2):
        image(tmp_path / f"{number}.png")
        mask(tmp_path / "GroundTruth" / f"{number}.png")
    assert list(pairs(tmp_path)) == ["1", "2"]


def test_glas_mixed_folder_and_camel_case_split_words(tmp_path):
    folder = tmp_path / "Warwick QU Dataset (Released 2016_07_08)"
    for name in ("train_1", "train_2", "testA_1", "testB_1"):
        image(folder / f"{name}.bmp")
        mask(folder / f"{name}_anno.bmp", value=1)
    (folder / "Grade.csv").write_text("name,grade\n")
    index = discover(tmp_path)
    assert index.known_split["train"] == ["train_1", "train_2"]
    assert index.known_split["test"] == ["testA_1", "testB_1"] and index.known_split["source"] == "file names"
