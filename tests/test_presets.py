"""Dataset presets and ``s2m reproduce`` (s2mnet.planning.presets, s2mnet.reproduce) on tiny synthetic
copies of each publisher's layout (names, folders, formats and mask encodings as distributed) and on the
real data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from s2mnet.cli import main
from s2mnet.data.io import read_mask
from s2mnet.errors import DataError, RunError, S2MError
from s2mnet.planning.presets.registry import (
    check_data,
    get_preset,
    list_presets,
    plan_overrides,
    resolve_split,
)
from s2mnet.reproduce import format_row_markdown, parse_seeds, reproduce

H, W = 36, 44


def _picture(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((H, W, 3)) * 120 + 60).astype(np.uint8)


def _shape(seed: int) -> np.ndarray:
    """A blob (and a thin line, so every case has some foreground) as {0, 1}."""
    yy, xx = np.mgrid[:H, :W]
    cy, cx = 10 + seed % 12, 12 + (3 * seed) % 18
    mask = ((yy - cy) ** 2 + (xx - cx) ** 2 < 40).astype(np.uint8)
    mask[H - 6, 4:-4] = 1
    return mask


def image(path: Path, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_picture(seed)).save(path)


def mask(path: Path, seed: int = 0, encoding: str = "255") -> None:
    """Write a mask in one of the encodings publishers use."""
    path.parent.mkdir(parents=True, exist_ok=True)
    binary = _shape(seed)
    if encoding == "255":
        picture = Image.fromarray(binary * 255)
    elif encoding == "01":
        picture = Image.fromarray(binary)
    elif encoding == "mode1":
        picture = Image.fromarray(binary.astype(bool))
    elif encoding == "palette":
        picture = Image.fromarray(binary, "L").convert("P")
        picture.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    elif encoding == "empty-rgb":  # BUSI's normal class: an all-black RGB mask
        picture = Image.fromarray(np.zeros((H, W, 3), np.uint8))
    elif encoding == "rgb":
        picture = Image.fromarray(np.repeat(binary[..., None] * 255, 3, axis=2))
    elif encoding == "instances":  # GlaS: one label per gland
        labels = binary.copy()
        labels[H - 6] *= 2
        labels[: H // 3] *= 3
        picture = Image.fromarray(labels)
    else:
        raise AssertionError(encoding)
    picture.save(path)


# ------------------------------------------------------------------------------ publisher layouts
def kvasir(root: Path) -> None:
    for i, name in enumerate(("cju0qkwl35piu0993l0dewei2", "cju0qoxqj9q6s0835b43399p4", "cju1amqw6p8pw0993")):
        image(root / "Kvasir-SEG" / "images" / f"{name}.jpg", i)
        mask(root / "Kvasir-SEG" / "masks" / f"{name}.jpg", i)
    (root / "Kvasir-SEG" / "kavsir_bboxes.json").write_text("{}")


def cvc_clinicdb(root: Path) -> None:
    for n in (1, 2, 3, 10):
        image(root / "CVC-ClinicDB" / "Original" / f"{n}.tif", n)
        mask(root / "CVC-ClinicDB" / "Ground Truth" / f"{n}.tif", n)


def cvc_colondb(root: Path) -> None:
    for n in (1, 2, 3, 4):
        image(root / "CVC-ColonDB" / "images" / f"{n}.png", n)
        mask(root / "CVC-ColonDB" / "masks" / f"{n}.png", n, "01")


def etis(root: Path) -> None:
    for n in (1, 2, 3, 196):
        image(root / "ETIS-LaribPolypDB" / "ETIS-LaribPolypDB" / f"{n}.tif", n)
        mask(root / "ETIS-LaribPolypDB" / "Ground Truth" / f"p{n}.tif", n, "mode1")


def isic2018(root: Path) -> None:
    number = 0
    for part in ("Training", "Validation", "Test"):
        for _ in range(2 if part == "Training" else 1):
            name = f"ISIC_{number:07d}"
            image(root / f"ISIC2018_Task1-2_{part}_Input" / f"{name}.jpg", number)
            mask(root / f"ISIC2018_Task1_{part}_GroundTruth" / f"{name}_segmentation.png", number)
            number += 1
        (root / f"ISIC2018_Task1-2_{part}_Input" / "LICENSE.txt").write_text("CC-BY-NC")


def ph2(root: Path) -> None:
    folder = root / "PH2Dataset" / "PH2 Dataset images"
    for i, case in enumerate(("IMD002", "IMD003", "IMD004", "IMD437")):
        image(folder / case / f"{case}_Dermoscopic_Image" / f"{case}.bmp", i)
        mask(folder / case / f"{case}_lesion" / f"{case}_lesion.bmp", i)
        mask(folder / case / f"{case}_roi" / f"{case}_R1_Label4.bmp", i + 1)
    (root / "PH2Dataset" / "PH2_dataset.txt").write_text("|| Name || Histological Diagnosis ||")


def glas(root: Path) -> None:
    folder = root / "Warwick QU Dataset (Released 2016_07_08)"
    for i, name in enumerate(("train_1", "train_2", "train_85", "testA_1", "testB_20")):
        image(folder / f"{name}.bmp", i)
        mask(folder / f"{name}_anno.bmp", i, "instances")
    (folder / "Grade.csv").write_text("name,patient ID,GlaS,grade (Sirinukunwattana et al. 2015)\n")


def busi(root: Path) -> None:
    folder = root / "Dataset_BUSI_with_GT"
    for i, (cls, n) in enumerate((("benign", 3), ("benign", 4), ("malignant", 1), ("normal", 1))):
        image(folder / cls / f"{cls} ({n}).png", i)
        mask(folder / cls / f"{cls} ({n})_mask.png", i, "mode1" if cls != "normal" else "empty-rgb")
    mask(folder / "benign" / "benign (4)_mask_1.png", 7, "mode1")


def stare(root: Path) -> None:
    for i, name in enumerate(("im0001", "im0002", "im0044", "im0077")):
        image(root / "stare-images" / f"{name}.ppm", i)
        mask(root / "labels-ah" / f"{name}.ah.ppm", i, "rgb")
        mask(root / "labels-vk" / f"{name}.vk.ppm", i + 1, "rgb")


def drive(root: Path) -> None:
    for i, (number, split) in enumerate(
        (("21", "training"), ("22", "training"), ("23", "training"), ("01", "test"), ("02", "test"))
    ):
        folder = root / "DRIVE" / split
        image(folder / "images" / f"{number}_{split}.tif", i)
        mask(folder / "1st_manual" / f"{number}_manual1.gif", i)
        fov = np.zeros((H, W), np.uint8)
        fov[2:-2, 2:-2] = 255
        (folder / "mask").mkdir(parents=True, exist_ok=True)
        Image.fromarray(fov).save(folder / "mask" / f"{number}_{split}_mask.gif")
        if split == "test":
            mask(folder / "2nd_manual" / f"{number}_manual2.gif", i + 1)


def chase(root: Path) -> None:
    for i, eye in enumerate(("01L", "01R", "02L", "11L", "14R")):
        image(root / "CHASEDB1" / f"Image_{eye}.jpg", i)
        mask(root / "CHASEDB1" / f"Image_{eye}_1stHO.png", i)
        mask(root / "CHASEDB1" / f"Image_{eye}_2ndHO.png", i + 1)


LAYOUTS = {
    "kvasir": (kvasir, 3),
    "cvc-clinicdb": (cvc_clinicdb, 4),
    "cvc-colondb": (cvc_colondb, 4),
    "etis": (etis, 4),
    "isic2018": (isic2018, 4),
    "ph2": (ph2, 4),
    "glas": (glas, 5),
    "busi": (busi, 4),
    "stare": (stare, 4),
    "drive": (drive, 5),
    "chase": (chase, 5),
}


#: one pair per layout: case id → its (first) mask file
EXAMPLE_PAIRS = {
    "kvasir": ("cju1amqw6p8pw0993", "cju1amqw6p8pw0993.jpg"),
    "cvc-clinicdb": ("10", "10.tif"),
    "cvc-colondb": ("4", "4.png"),
    "etis": ("196", "p196.tif"),
    "isic2018": ("ISIC_0000003", "ISIC_0000003_segmentation.png"),
    "ph2": ("IMD437", "IMD437_lesion.bmp"),
    "glas": ("testA_1", "testA_1_anno.bmp"),
    "busi": ("benign (4)", "benign (4)_mask.png"),
    "stare": ("im0044", "im0044.ah.ppm"),
    "drive": ("01_test", "01_manual1.gif"),
    "chase": ("Image_14R", "Image_14R_1stHO.png"),
}


def test_every_ready_preset_has_a_layout_test():
    volumes_and_video = {"endovis17-binary", "endovis17-parts", "brats2020", "acdc"}  # test_presets_volumes
    assert set(list_presets(ready_only=True)) == set(LAYOUTS) | volumes_and_video


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_publisher_layout_pairs_and_splits(tmp_path, name):
    build, count = LAYOUTS[name]
    build(tmp_path)
    preset = get_preset(name)
    index = check_data(preset, tmp_path)
    assert len(index.cases) == count
    case_id, mask_name = EXAMPLE_PAIRS[name]
    assert index.case(case_id).masks[0].name == mask_name
    for case in index.cases:
        if preset.labels:  # GlaS instance maps: the label mode's region (any label) is the foreground
            labels = read_mask(case.masks, multiclass=True)
            assert labels.max() >= 2 and 0.02 < np.mean(labels > 0) < 0.5
        else:
            assert set(np.unique(read_mask(case.masks))) <= {0, 1}
    split = resolve_split(preset, index)
    parts = [set(split[p]) for p in ("train", "val", "test")]
    assert (
        all(parts[0:1])
        and parts[2]
        and not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    )
    assert set().union(*parts) == {c.case_id for c in index.cases}
    assert resolve_split(preset, index) == split  # deterministic
    assert preset.label_mode == "binary" and plan_overrides(preset, "ci", 3)["epochs"] == 1


def test_layout_details(tmp_path):
    drive(tmp_path / "d")
    index = check_data(get_preset("drive"), tmp_path / "d")
    assert all(c.fov is not None for c in index.cases) and len(index.ignored) == 2  # 2nd_manual
    split = resolve_split(get_preset("drive"), index)
    assert split["test"] == ["01_test", "02_test"] and split["kind"] == "lists" and split["missing"] == 35
    busi(tmp_path / "b")
    index = check_data(get_preset("busi"), tmp_path / "b")
    assert len(index.case("benign (4)").masks) == 2 and read_mask(index.case("normal (1)").masks).sum() == 0
    chase(tmp_path / "c")
    index = check_data(get_preset("chase"), tmp_path / "c")
    assert resolve_split(get_preset("chase"), index)["test"] == ["Image_11L", "Image_14R"]
    assert len(index.ignored) == 5  # second observer
    glas(tmp_path / "g")
    split = resolve_split(get_preset("glas"), check_data(get_preset("glas"), tmp_path / "g"))
    assert split["test"] == ["testA_1", "testB_20"]
    isic2018(tmp_path / "i")
    split = resolve_split(get_preset("isic2018"), check_data(get_preset("isic2018"), tmp_path / "i"))
    assert (split["train"], split["val"], split["test"]) == (
        ["ISIC_0000000", "ISIC_0000001"],
        ["ISIC_0000002"],
        ["ISIC_0000003"],
    )
    ph2(tmp_path / "p")
    index = check_data(get_preset("ph2"), tmp_path / "p")
    assert all(c.masks[0].parent.name.endswith("_lesion") for c in index.cases) and len(index.ignored) == 4


def test_shipped_split_files():
    drive_spec = get_preset("drive").split_spec()
    assert len(drive_spec["train"]) == len(drive_spec["test"]) == 20 and drive_spec["test"][0] == "01_test"
    glas_spec = get_preset("glas").split_spec()
    assert (len(glas_spec["train"]), len(glas_spec["test"])) == (85, 80)
    for name in list_presets():
        spec = get_preset(name).split_spec()
        assert spec["kind"] in ("lists", "published", "seeded") and spec["source"]
    assert "PraNet" in get_preset("kvasir").split_spec()["source"]


def test_seeded_split_is_stable_for_a_subset(tmp_path):
    for n in range(1, 21):
        image(tmp_path / "images" / f"benign ({n}).png", n)
        mask(tmp_path / "masks" / f"benign ({n})_mask.png", n)
    preset = get_preset("busi")
    split = resolve_split(preset, check_data(preset, tmp_path))
    assert (len(split["train"]), len(split["val"]), len(split["test"])) == (16, 2, 2)
    for n in range(11, 21):
        if f"benign ({n})" not in split["test"]:
            (tmp_path / "images" / f"benign ({n}).png").unlink()
            (tmp_path / "masks" / f"benign ({n})_mask.png").unlink()
    smaller = resolve_split(preset, check_data(preset, tmp_path))
    assert set(smaller["test"]) & set(split["test"])  # hash order: kept cases keep their rank


def test_paper_numbers_and_best_baseline():
    assert get_preset("cvc-colondb").paper.best_baseline() == ("PraNet", 92.78)  # beats S2M-Net's 90.69
    assert get_preset("ph2").paper.best_baseline() == ("TransUNet", 93.56)
    assert get_preset("DRIVE").paper.s2mnet == 84.06 and get_preset("CHASE-DB1").name == "chase"


def test_errors_are_one_line(tmp_path):
    kvasir(tmp_path)
    with pytest.raises(
        DataError, match=r"does not look like DRIVE: 3 of 3 image names .* are not like 21_training"
    ):
        check_data(get_preset("drive"), tmp_path)
    with pytest.raises(S2MError, match="unknown dataset preset 'lidc'"):
        get_preset("lidc")
    with pytest.raises(
        DataError, match=r"does not look like BraTS2020 .* not like BraTS20_Training_001_flair"
    ):
        check_data(get_preset("brats2020"), tmp_path)
    with pytest.raises(S2MError, match="unknown scale"):
        plan_overrides(get_preset("drive"), "huge", 10)
    with pytest.raises(S2MError, match="each once"):
        parse_seeds("1,1")


def test_plans_follow_the_paper_protocol():
    drive_plan = plan_overrides(get_preset("drive"), "paper", 16)
    assert (drive_plan["mode"], drive_plan["patch_size"], drive_plan["preprocess"]) == (
        "patch",
        256,
        "green_clahe",
    )
    kvasir_plan = plan_overrides(get_preset("kvasir"), "paper", 800)
    assert (kvasir_plan["size"], kvasir_plan["epochs"], kvasir_plan["samples_per_epoch"]) == (352, 150, 24000)
    assert plan_overrides(get_preset("busi"), "cpu-small", 80)["size"] == 96


# ------------------------------------------------------------------------------ one training step each
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_one_training_step_per_preset(tmp_path, name):
    LAYOUTS[name][0](tmp_path / "data")
    row = reproduce(name, tmp_path / "data", tmp_path / "out", [0], scale="ci", device="cpu", quiet=True)
    assert 0.0 <= row["ours"]["dice"]["mean"] <= 100.0 and row["ours"]["dice"]["std"] is None
    assert row["paper_s2mnet"] == get_preset(name).paper.s2mnet
    assert (tmp_path / "out" / "row.md").read_text().startswith("| dataset |")


def test_reproduce_resumes_and_refuses_another_setup(tmp_path, capsys):
    cvc_colondb(tmp_path / "data")
    out = tmp_path / "out"
    first = reproduce("cvc-colondb", tmp_path / "data", out, [0], scale="ci", device="cpu", quiet=True)
    stamp = (out / "seed_0" / "run.json").stat().st_mtime_ns
    status = main(
        [
            "reproduce",
            "cvc-colondb",
            "--data",
            str(tmp_path / "data"),
            "--out",
            str(out),
            "--seeds",
            "0,1",
            "--scale",
            "ci",
            "--device",
            "cpu",
            "--quiet",
        ]
    )
    assert status == 0 and (out / "seed_0" / "run.json").stat().st_mtime_ns == stamp  # seed 0 skipped
    row = json.loads((out / "row.json").read_text())
    results = json.loads((out / "results.json").read_text())
    assert row["seeds"] == [0, 1] and set(results["seeds"]) == {"0", "1"}
    assert row["ours"]["dice"]["std"] is not None
    assert results["seeds"]["0"]["dice"] * 100 == pytest.approx(first["ours"]["dice"]["mean"])
    assert "CVC-ColonDB" in capsys.readouterr().out
    with pytest.raises(RunError, match="another scale"):
        reproduce("cvc-colondb", tmp_path / "data", out, [0], scale="cpu-small", device="cpu", quiet=True)
    assert "92.78 (PraNet)" in format_row_markdown(row)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("a user's file")
    with pytest.raises(RunError, match="not an s2m reproduce folder"):
        reproduce("cvc-colondb", tmp_path / "data", tmp_path / "mine", [0], scale="ci", quiet=True)


def test_cli_reports_a_wrong_folder(tmp_path, capsys):
    busi(tmp_path)
    status = main(
        ["reproduce", "drive", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--scale", "ci"]
    )
    assert status == 2 and "does not look like DRIVE" in capsys.readouterr().err


# ------------------------------------------------------------------------------ real data
@pytest.mark.realdata
def test_real_drive_and_busi_are_accepted_in_their_copies(real_data):
    drive_index = check_data(get_preset("drive"), real_data("DRIVE"))
    split = resolve_split(get_preset("drive"), drive_index)
    assert (len(split["train"]), len(split["val"]), len(split["test"])) == (16, 4, 20)
    busi_index = check_data(get_preset("busi"), real_data("BUSI-100"))
    split = resolve_split(get_preset("busi"), busi_index)
    assert (len(split["train"]), len(split["val"]), len(split["test"])) == (80, 10, 10)
    assert len(check_data(get_preset("kvasir"), real_data("Kvasir-SEG-5")).cases) == 5
    ham = check_data(get_preset("isic2018"), real_data("HAM10000-5"))  # ISIC images without split folders
    assert "seeded" in resolve_split(get_preset("isic2018"), ham)["source"]


@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.parametrize(("name", "folder"), [("drive", "DRIVE"), ("busi", "BUSI-100")])
def test_real_reproduce_ci(real_data, tmp_path, name, folder):
    row = reproduce(name, real_data(folder), tmp_path, [0], scale="ci", device="cpu", quiet=True)
    assert row["n_test"] == (20 if name == "drive" else 10) and row["ours"]["dice"]["mean"] is not None
