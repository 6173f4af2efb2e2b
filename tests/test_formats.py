"""Dataset formats (docs/data.md, "Formats"): nnU-Net raw datasets, colour palettes, NIfTI volumes."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

from s2mnet.cli import main
from s2mnet.data import discover
from s2mnet.data.formats.nifti import volume_dice, write_label_volume
from s2mnet.data.io import read_image, read_mask
from s2mnet.data.splits import make_splits
from s2mnet.engine.checkpoint import save_weights
from s2mnet.engine.rundir import write_run_config
from s2mnet.errors import DataError, S2MError
from s2mnet.inference.predict import predict_paths
from s2mnet.planning.fingerprint import fingerprint
from s2mnet.planning.planner import make_plan

AFFINE = np.array([[0.0, -1.5, 0, 10], [2.0, 0, 0, -5], [0, 0, 3.0, 7], [0, 0, 0, 1]])


def png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint8)).save(path)
    return path


def label_map(seed: int, size: int = 16) -> np.ndarray:
    """Class map with a class-1 square and a class-2 bar."""
    rng = np.random.default_rng(seed)
    label = np.zeros((size, size), np.uint8)
    top, left = rng.integers(1, size // 2, size=2)
    label[top : top + size // 3, left : left + size // 3] = 1
    label[size - 4 : size - 2, 2:-2] = 2
    return label


def make_nnunet(root: Path, cases: int = 3, ending: str = ".png") -> Path:
    """Two grey channel files per case, labels {background: 0, square: 1, bar: 2}."""
    dataset = {
        "channel_names": {"0": "T1", "1": "T2"},
        "labels": {"background": 0, "square": 1, "bar": 2},
        "numTraining": cases,
        "file_ending": ending,
    }
    root.mkdir(parents=True)
    (root / "dataset.json").write_text(json.dumps(dataset))
    for i in range(cases):
        label = label_map(i)
        png(root / "labelsTr" / f"case_{i:04d}{ending}", label)
        png(root / "imagesTr" / f"case_{i:04d}_0000{ending}", 40 + 100 * (label == 1))
        png(root / "imagesTr" / f"case_{i:04d}_0001{ending}", 40 + 100 * (label == 2))
    for channel in range(2):
        png(root / "imagesTs" / f"case_0100_{channel:04d}{ending}", 40 + 100 * (label_map(5) == channel + 1))
    return root


def test_nnunet_layout_round_trip(tmp_path: Path) -> None:
    index = discover(make_nnunet(tmp_path / "Dataset001_Toy"))
    assert index.layout == "nnunet-raw"
    assert [c.case_id for c in index.cases] == ["case_0000", "case_0001", "case_0002"]
    assert index.classes == ["background", "square", "bar"] and index.num_classes == 3
    case = index.cases[1]
    assert case.image.name == "case_0001_0000.png" and [p.name for p in case.channels] == [
        "case_0001_0001.png"
    ]
    image = read_image(case)
    assert image.shape == (16, 16, 2)
    np.testing.assert_array_equal(read_mask(case, multiclass=True), label_map(1))
    assert (image[..., 0] > 0.5).sum() == (label_map(1) == 1).sum()
    assert [p.name for p in index.ignored] == ["case_0100_0000.png", "case_0100_0001.png"]
    plan = make_plan(fingerprint(index, descriptors=False))
    assert plan["in_channels"] == 2 and plan["num_classes"] == 3
    assert plan["classes"] == ["background", "square", "bar"]


def test_nnunet_missing_channel_and_unknown_label(tmp_path: Path) -> None:
    root = make_nnunet(tmp_path / "a")
    (root / "imagesTr" / "case_0001_0001.png").unlink()
    with pytest.raises(DataError, match=r"case_0001_0001\.png: channel file missing"):
        discover(root)
    root = make_nnunet(tmp_path / "b")
    png(root / "labelsTr" / "case_0002.png", np.full((16, 16), 7))
    index = discover(root)
    with pytest.raises(DataError, match=r"case_0002\.png: values not in the dataset's labels: 7 \(256 px\)"):
        read_mask(index.case("case_0002"), multiclass=True)


PALETTE = {"background": [0, 0, 0], "instrument_shaft": [255, 0, 0], "instrument_wrist": [0, 255, 0]}


def make_palette_dataset(root: Path, cases: int = 6) -> Path:
    colours = np.array(list(PALETTE.values()), np.uint8)
    for i in range(cases):
        label = label_map(i, 32)
        image = np.stack([40 + 150 * (label == 1), 40 + 150 * (label == 2), np.full(label.shape, 60)], -1)
        png(root / "images" / f"{i:02d}.png", image)
        png(root / "masks" / f"{i:02d}.png", colours[label])
    (root / "palette.json").write_text(json.dumps(PALETTE))
    return root


def test_palette_masks_become_class_indices(tmp_path: Path) -> None:
    index = discover(make_palette_dataset(tmp_path / "data"))
    assert index.num_classes == 3 and index.classes == list(PALETTE)
    np.testing.assert_array_equal(read_mask(index.case("03"), multiclass=True), label_map(3, 32))
    mask = np.zeros((32, 32, 3), np.uint8)
    mask[:2, :3] = (0, 0, 255)
    png(tmp_path / "data" / "masks" / "03.png", mask)
    with pytest.raises(DataError, match=r"03\.png: values not in the palette: \[0, 0, 255\] \(6 px\)"):
        read_mask(discover(tmp_path / "data").case("03"), multiclass=True)


def test_bad_palette_file(tmp_path: Path) -> None:
    root = make_palette_dataset(tmp_path / "data", cases=3)
    (root / "palette.json").write_text(json.dumps({"background": [0, 0, 0], "x": [300, 0, 0]}))
    with pytest.raises(DataError, match=r"palette\.json: class 'x' needs an \[r, g, b\] colour"):
        discover(root)


def make_volumes(root: Path, cases: int = 3, shape: tuple = (12, 10, 5)) -> Path:
    """BraTS-like case folders: ``<case>/<case>_{t1,t2,seg}.nii.gz``; label values {0, 1, 2}."""
    rng = np.random.default_rng(0)
    for i in range(cases):
        label = np.zeros(shape, np.uint8)
        label[2:6, 3:7, 1:3] = 1
        label[7:10, 2:5, 2] = 2
        folder = root / f"vol{i}"
        folder.mkdir(parents=True)
        for name, volume in (
            ("t1", 100 + 400 * (label == 1) + rng.normal(0, 5, shape)),
            ("t2", 50 + 300 * (label == 2) + rng.normal(0, 5, shape)),
            ("seg", label),
        ):
            nib.save(
                nib.Nifti1Image(volume.astype(np.float32 if name != "seg" else np.uint8), AFFINE),
                folder / f"vol{i}_{name}.nii.gz",
            )
    return root


def test_nifti_volumes_become_grouped_slices(tmp_path: Path) -> None:
    index = discover(make_volumes(tmp_path / "vols"))
    assert index.layout == "nifti-volumes" and index.num_classes == 3
    assert len(index.cases) == 3 * 5
    case = index.case("vol1/002")
    assert case.group == "vol1" and case.slice.axis == 2 and case.slice.foreground
    assert not index.case("vol1/000").slice.foreground
    label = np.asarray(nib.load(tmp_path / "vols/vol1/vol1_seg.nii.gz").dataobj)
    np.testing.assert_array_equal(read_mask(case, multiclass=True), label[..., 2])
    image = read_image(case)
    assert image.shape == (12, 10, 2) and image.min() >= 0 and image.max() <= 1
    splits = make_splits(index, seed=3)
    owners = {name: {c.split("/")[0] for c in splits[name]} for name in ("train", "val", "test")}
    assert owners["train"].isdisjoint(owners["val"] | owners["test"]) and owners["val"].isdisjoint(
        owners["test"]
    )
    assert sum(len(v) for v in owners.values()) == 3


def test_predict_writes_nifti_with_the_source_affine(tmp_path: Path) -> None:
    from s2mnet.models import create_model

    make_volumes(tmp_path / "vols", cases=1)
    plan = make_plan(fingerprint(discover(tmp_path / "vols"), descriptors=False))
    assert plan["modalities"] == ["t1", "t2"] and plan["in_channels"] == 2 and plan["slice_axis"] == 2
    model = create_model("unet", in_channels=2, num_classes=3, base_width=4)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    plan = {**plan, "size": 16}
    write_run_config(run_dir, {"model": model.config, "plan": plan, "data": str(tmp_path)})
    save_weights(run_dir / "best.safetensors", model.state_dict())
    written = predict_paths(run_dir, tmp_path / "vols/vol0", tmp_path / "out", device="cpu")
    assert [p.name for p in written] == ["vol0.nii.gz"]  # the _t1 and _t2 files of one case
    result = nib.load(written[0])
    np.testing.assert_allclose(result.affine, AFFINE)
    assert result.shape == (12, 10, 5) and set(np.unique(np.asarray(result.dataobj))) <= {0, 1, 2}


def test_label_volume_values_written_back(tmp_path: Path) -> None:
    from s2mnet.data.formats.labels import LabelMap

    source = tmp_path / "src.nii"
    nib.save(nib.Nifti1Image(np.zeros((4, 3, 2), np.float32), AFFINE), source)
    classes = np.zeros((4, 3, 2), np.uint8)
    classes[0, 0, 0], classes[1, 1, 1] = 1, 2
    write_label_volume(classes, source, tmp_path / "out.nii.gz", LabelMap(("bg", "a", "b"), values=(0, 2, 4)))
    data = np.asarray(nib.load(tmp_path / "out.nii.gz").dataobj)
    assert data[0, 0, 0] == 2 and data[1, 1, 1] == 4 and data.sum() == 6


def run_cli(*argv) -> None:
    assert main([str(a) for a in argv]) == 0


def test_multiclass_end_to_end_with_a_palette(tmp_path: Path) -> None:
    torch.manual_seed(0)
    data = make_palette_dataset(tmp_path / "data")
    run = tmp_path / "run"
    tiny = ["--epochs", 1, "--size", 32, "--batch-size", 2, "--samples-per-epoch", 4, "--device", "cpu"]
    small = ["--model", "unet", "--model-arg", "base_width=4"]
    run_cli("train", "--data", data, "--out", run, *small, *tiny, "--quiet", "--no-tensorboard")
    config = json.loads((run / "run.json").read_text())
    assert config["num_classes"] == 3 and config["classes"] == list(PALETTE)
    run_cli("evaluate", "--run", run, "--device", "cpu")
    metrics = json.loads((run / "eval_test" / "metrics.json").read_text())
    assert metrics["num_classes"] == 3 and set(metrics["per_class"]) == {"1", "2"}
    run_cli(
        "predict", "--run", run, "--input", data / "images", "--output", tmp_path / "pred", "--device", "cpu"
    )
    masks = sorted((tmp_path / "pred").glob("*.png"))
    assert len(masks) == 6
    for mask in masks:
        assert np.asarray(Image.open(mask)).shape == (32, 32)
        assert set(np.unique(np.asarray(Image.open(mask)))) <= {0, 1, 2}
    coloured = tmp_path / "coloured"
    run_cli(
        "predict",
        "--run",
        run,
        "--input",
        data / "images",
        "--output",
        coloured,
        "--device",
        "cpu",
        "--colours",
    )
    pixels = np.asarray(Image.open(coloured / "00.png").convert("RGB")).reshape(-1, 3)
    assert {tuple(map(int, c)) for c in np.unique(pixels, axis=0)} <= {tuple(c) for c in PALETTE.values()}


def make_nnunet_volumes(root: Path) -> Path:
    """nnU-Net raw dataset of NIfTI volumes: one channel, labels {background: 0, lesion: 1}."""
    dataset = {
        "channel_names": {"0": "CT"},
        "labels": {"background": 0, "lesion": 1},
        "numTraining": 3,
        "file_ending": ".nii.gz",
    }
    for folder in ("imagesTr", "labelsTr"):
        (root / folder).mkdir(parents=True)
    (root / "dataset.json").write_text(json.dumps(dataset))
    for i in range(3):
        label = np.zeros((8, 9, 4), np.uint8)
        label[2:5, 3:6, 1 + i % 2] = 1
        nib.save(
            nib.Nifti1Image((label.astype(np.int16) * 500 + 20), AFFINE), root / f"imagesTr/c{i}_0000.nii.gz"
        )
        nib.save(nib.Nifti1Image(label, AFFINE), root / f"labelsTr/c{i}.nii.gz")
    return root


def test_nnunet_volumes_are_sliced_and_empty_slices_skipped_in_training(tmp_path: Path) -> None:
    from s2mnet.data.dataset import SegmentationDataset

    index = discover(make_nnunet_volumes(tmp_path / "Dataset002"))
    assert len(index.cases) == 12 and index.num_classes == 1 and index.classes == ["background", "lesion"]
    plan = make_plan(fingerprint(index, descriptors=False))
    assert plan["skip_empty_slices"] is True and plan["slice_axis"] == 2 and plan["in_channels"] == 1
    assert len(SegmentationDataset(index.cases, {**plan, "samples_per_epoch": None}, train=True).cases) == 3
    assert len(SegmentationDataset(index.cases, plan, train=False).cases) == 12
    label = tmp_path / "Dataset002/labelsTr/c1.nii.gz"
    nib.save(nib.Nifti1Image(np.full((8, 9, 4), 3, np.uint8), AFFINE), label)
    with pytest.raises(DataError, match=r"c1\.nii\.gz: values not in the dataset's labels: 3 \(288 px\)"):
        discover(tmp_path / "Dataset002")


def test_nifti_end_to_end_train_and_predict(tmp_path: Path) -> None:
    torch.manual_seed(0)
    data = make_nnunet_volumes(tmp_path / "Dataset002")
    run = tmp_path / "run"
    tiny = ["--epochs", 1, "--size", 16, "--batch-size", 2, "--samples-per-epoch", 2, "--device", "cpu"]
    small = ["--model", "unet", "--model-arg", "base_width=4"]
    run_cli("train", "--data", data, "--out", run, *small, *tiny, "--quiet", "--no-tensorboard")
    splits = json.loads((run / "splits.json").read_text())
    volumes = {name: {c.split("/")[0] for c in splits[name]} for name in ("train", "val", "test")}
    assert volumes["train"].isdisjoint(volumes["val"] | volumes["test"])
    run_cli("evaluate", "--run", run, "--device", "cpu")
    metrics = json.loads((run / "eval_test" / "metrics.json").read_text())
    assert metrics["n_cases"] == 4 * len(volumes["test"])  # per slice, every slice of the test volumes
    per_volume = {case["volume"]: case["dice"] for case in metrics["volumes"]["cases"]}
    assert sorted(per_volume) == sorted(volumes["test"])
    # the 3-D Dice of evaluate equals that of the predicted NIfTI volume against its label volume
    test_volume = sorted(volumes["test"])[0]
    run_cli(
        "predict", "--run", run, "--input", data / f"imagesTr/{test_volume}_0000.nii.gz",
        "--output", tmp_path / "test_pred", "--device", "cpu",
    )  # fmt: skip
    predicted = np.asarray(nib.load(tmp_path / f"test_pred/{test_volume}_0000.nii.gz").dataobj)
    truth = np.asarray(nib.load(data / f"labelsTr/{test_volume}.nii.gz").dataobj)
    assert per_volume[test_volume] == pytest.approx(volume_dice(predicted, truth))
    source = data / "imagesTr/c0_0000.nii.gz"
    run_cli("predict", "--run", run, "--input", source, "--output", tmp_path / "pred", "--device", "cpu")
    result = nib.load(tmp_path / "pred/c0_0000.nii.gz")
    np.testing.assert_allclose(result.affine, AFFINE)
    assert result.shape == (8, 9, 4) and set(np.unique(np.asarray(result.dataobj))) <= {0, 1}


def test_nnunet_two_channel_end_to_end(tmp_path: Path) -> None:
    torch.manual_seed(0)
    data = make_nnunet(tmp_path / "Dataset001_Toy", cases=4)
    run = tmp_path / "run"
    tiny = ["--epochs", 1, "--size", 16, "--batch-size", 2, "--samples-per-epoch", 2, "--device", "cpu"]
    small = ["--model", "unet", "--model-arg", "base_width=4"]
    run_cli("train", "--data", data, "--out", run, *small, *tiny, "--quiet", "--no-tensorboard")
    config = json.loads((run / "run.json").read_text())
    assert config["in_channels"] == 2 and config["classes"] == ["background", "square", "bar"]
    run_cli(
        "predict",
        "--run",
        run,
        "--input",
        data / "imagesTs",
        "--output",
        tmp_path / "pred",
        "--device",
        "cpu",
    )
    # (plus the hidden record .s2m_predict.json of the masks s2m predict wrote, issue 15)
    assert [p.name for p in (tmp_path / "pred").iterdir() if not p.name.startswith(".")] == ["case_0100.png"]
    assert set(np.unique(np.asarray(Image.open(tmp_path / "pred/case_0100.png")))) <= {0, 1, 2}


def test_nifti_label_values_and_unlabelled_volumes(tmp_path: Path) -> None:
    root = make_volumes(tmp_path / "vols", cases=2)
    (root / "unlabelled").mkdir()
    nib.save(nib.Nifti1Image(np.ones((12, 10, 5), np.float32), AFFINE), root / "unlabelled/x9_t1.nii.gz")
    seg = np.zeros((12, 10, 5), np.uint8)
    seg[1, 1, 1], seg[2, 2, 2] = 4, 1
    nib.save(nib.Nifti1Image(seg, AFFINE), root / "vol1/vol1_seg.nii.gz")
    index = discover(root)  # BraTS-like values {0, 1, 2, 4}: stored values are the class indices
    assert index.num_classes == 5 and [p.name for p in index.ignored] == ["x9_t1.nii.gz"]
    seg = seg.astype(np.int16)
    seg[0, 0, 0] = 300
    nib.save(nib.Nifti1Image(seg, AFFINE), root / "vol1/vol1_seg.nii.gz")
    with pytest.raises(DataError, match=r"vol1_seg\.nii\.gz: label values 0\.\.300 are outside 0\.\.255"):
        discover(root)


def test_nifti_predict_is_all_or_nothing(tmp_path: Path) -> None:
    """Two cases, the second's volume truncated: an error naming it, and no volume is left behind."""
    from s2mnet.models import create_model

    make_volumes(tmp_path / "vols", cases=2)
    plan = {**make_plan(fingerprint(discover(tmp_path / "vols"), descriptors=False)), "size": 16}
    model = create_model("unet", in_channels=2, num_classes=3, base_width=4)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    write_run_config(run_dir, {"model": model.config, "plan": plan, "data": str(tmp_path)})
    save_weights(run_dir / "best.safetensors", model.state_dict())
    inputs = sorted((tmp_path / "vols").rglob("*_t*.nii.gz"))
    broken = inputs[-1]
    broken.write_bytes(broken.read_bytes()[:200])  # a truncated gzip stream
    with pytest.raises(S2MError, match=broken.name):
        predict_paths(run_dir, inputs, tmp_path / "out", device="cpu")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
