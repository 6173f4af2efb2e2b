"""SegmentationDataset, preprocessing and the synthetic demo data (s2mnet.data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from s2mnet.data import discover
from s2mnet.data.dataset import SegmentationDataset
from s2mnet.data.io import read_image, read_mask
from s2mnet.data.preprocessing import preprocess
from s2mnet.data.synthetic import make_synthetic_dataset
from s2mnet.errors import DataError

RESIZE_PLAN = {
    "mode": "resize",
    "size": 32,
    "in_channels": 3,
    "num_classes": 1,
    "samples_per_epoch": 10,
    "augment": "full",
    "preprocess": "none",
    "use_fov": False,
}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    return make_synthetic_dataset(tmp_path_factory.mktemp("synth"), n=9, size=48, seed=5)


def test_synthetic_dataset_files_are_deterministic_rgb_and_binary(synthetic, tmp_path):
    names = sorted(p.name for p in (synthetic / "images").iterdir())
    assert names == [f"synth_{i:03d}.png" for i in range(9)]
    image, mask = Image.open(synthetic / "images" / names[0]), Image.open(synthetic / "masks" / names[0])
    assert image.mode == "RGB" and image.size == (48, 48)
    assert set(np.unique(np.asarray(mask))) == {0, 255}
    again = make_synthetic_dataset(tmp_path / "again", n=9, size=48, seed=5)
    for name in names:
        assert (again / "images" / name).read_bytes() == (synthetic / "images" / name).read_bytes()
        assert (again / "masks" / name).read_bytes() == (synthetic / "masks" / name).read_bytes()
    other = make_synthetic_dataset(tmp_path / "other", n=1, size=48, seed=6)
    assert (other / "images" / names[0]).read_bytes() != (synthetic / "images" / names[0]).read_bytes()


def test_synthetic_kinds_differ_in_morphology():
    from s2mnet.data.synthetic import render_sample
    from s2mnet.losses import morphology_descriptors

    masks = [render_sample(np.random.default_rng(1), 96, kind)[1] for kind in ("blobs", "tubes")]
    values = morphology_descriptors(torch.from_numpy(np.stack(masks)[:, None].astype(np.float32)))
    assert values["tubularity"][1] > 3 * values["tubularity"][0]
    assert values["compactness"][0] > 3 * values["compactness"][1]


def test_synthetic_dataset_never_overwrites(synthetic):
    with pytest.raises(DataError, match="images: already exists and is not empty"):
        make_synthetic_dataset(synthetic, n=2, size=48)


def test_resize_mode_items(synthetic):
    cases = discover(synthetic).cases
    train = SegmentationDataset(cases, RESIZE_PLAN, train=True, seed=0)
    train.preload()
    assert len(train) == 10 and len(train._cache) == 9
    item = train[9]  # virtual epoch: index 9 → case 0
    assert item["case_id"] == cases[0].case_id
    assert item["image"].shape == (3, 32, 32) and item["image"].dtype == torch.float32
    assert item["mask"].shape == (1, 32, 32) and item["mask"].dtype == torch.float32
    assert set(item["mask"].unique().tolist()) <= {0.0, 1.0}
    assert item["fov"].dtype == torch.bool and bool(item["fov"].all())
    native = SegmentationDataset(cases, RESIZE_PLAN, train=False)
    assert len(native) == 9 and native[0]["image"].shape == (3, 48, 48)
    np.testing.assert_array_equal(native[0]["mask"][0].numpy(), read_mask(cases[0].masks))
    resized = SegmentationDataset(cases, RESIZE_PLAN, train=False, native=False)
    assert resized[0]["image"].shape == (3, 32, 32)


def test_augmentation_is_deterministic_per_seed_and_epoch(synthetic):
    cases = discover(synthetic).cases
    first, second = (SegmentationDataset(cases, RESIZE_PLAN, train=True, seed=1) for _ in range(2))
    assert torch.equal(first[3]["image"], second[3]["image"]) and torch.equal(
        first[3]["mask"], second[3]["mask"]
    )
    reference = first[3]["image"].clone()
    first.set_epoch(1)
    assert not torch.equal(first[3]["image"], reference)
    other_seed = SegmentationDataset(cases, RESIZE_PLAN, train=True, seed=2)
    assert not torch.equal(other_seed[3]["image"], reference)


def test_patch_mode_with_fov_green_clahe_and_foreground_bias(tmp_path):
    size = 80
    image = np.zeros((size, size, 3), np.uint8)
    image[..., 1] = np.linspace(0, 255, size, dtype=np.uint8)[None]
    mask = np.zeros((size, size), np.uint8)
    mask[60:62, 60:75] = 255  # a small structure in one corner
    fov = np.zeros((size, size), np.uint8)
    fov[5:75, 5:75] = 255
    for folder, array in (("images", image), ("masks", mask), ("fov", fov)):
        (tmp_path / folder).mkdir()
        Image.fromarray(array).save(tmp_path / folder / "eye.png")
    cases = discover(tmp_path).cases
    assert cases[0].fov is not None
    plan = {
        "mode": "patch",
        "patch_size": 24,
        "in_channels": 1,
        "num_classes": 1,
        "samples_per_epoch": 60,
        "preprocess": "green_clahe",
        "use_fov": True,
        "augment": "light",
        "foreground_bias": 2 / 3,
    }
    train = SegmentationDataset(cases, plan, train=True, seed=0)
    items = [train[i] for i in range(60)]
    assert all(it["image"].shape == (1, 24, 24) and it["fov"].shape == (1, 24, 24) for it in items)
    with_foreground = np.mean([bool(it["mask"].any()) for it in items])
    assert with_foreground > 0.5  # ~2/3 biased + a few random hits; uniform sampling gives ~0.15
    whole = SegmentationDataset(cases, plan, train=False)[0]
    assert whole["image"].shape == (1, size, size) and whole["fov"].sum() == 70 * 70
    assert abs(float(whole["image"].mean())) < 1e-4 and abs(float(whole["image"].std()) - 1) < 1e-2


def test_patch_smaller_image_is_padded(synthetic):
    plan = {**RESIZE_PLAN, "mode": "patch", "patch_size": 64, "size": None}
    item = SegmentationDataset(discover(synthetic).cases, plan, train=True)[0]
    assert item["image"].shape == (3, 64, 64) and item["mask"].shape == (1, 64, 64)


def test_multiclass_masks_are_long(tmp_path):
    classes = np.zeros((16, 16), np.uint8)
    classes[:4], classes[4:8] = 1, 2
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    Image.fromarray(np.full((16, 16), 50, np.uint8)).save(tmp_path / "images" / "a.png")
    Image.fromarray(classes).save(tmp_path / "masks" / "a.png")
    index = discover(tmp_path)
    plan = {**RESIZE_PLAN, "num_classes": index.num_classes, "in_channels": 1, "size": 16, "augment": "none"}
    item = SegmentationDataset(index.cases, plan, train=False)[0]
    assert item["mask"].dtype == torch.int64 and set(item["mask"].unique().tolist()) == {0, 1, 2}


def test_preprocess_matches_dataset_and_converts_channels(synthetic):
    case = discover(synthetic).cases[0]
    plan = {**RESIZE_PLAN, "augment": "none"}
    image = read_image(case.image)
    from_dataset = SegmentationDataset([case], plan, train=False)[0]["image"].numpy()
    # The dataset caches images as float16, hence the tolerance.
    np.testing.assert_allclose(preprocess(image, plan).transpose(2, 0, 1), from_dataset, atol=5e-3)
    assert preprocess(image, {**plan, "in_channels": 1}).shape == (48, 48, 1)
    assert preprocess(image, {**plan, "preprocess": "green_clahe", "in_channels": 1}).shape == (48, 48, 1)
    grey = image[..., :1]
    assert preprocess(grey, plan).shape == (48, 48, 3)


def test_dim_16bit_images_are_stretched_before_augmentation():
    from s2mnet.data.preprocessing import prepare_intensities

    twelve_bit = np.array([[0, 1024], [2048, 4095]], np.float32)[..., None] / 65535.0
    stretched = prepare_intensities(twelve_bit, {"in_channels": 1})
    np.testing.assert_allclose(stretched[..., 0], [[0, 1024 / 4095], [2048 / 4095, 1]], rtol=1e-6)


def test_size_mismatch_in_dataset_names_the_mask(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(tmp_path / "images" / "a.png")
    Image.fromarray(np.zeros((10, 12), np.uint8)).save(tmp_path / "masks" / "a.png")
    dataset = SegmentationDataset(discover(tmp_path).cases, {**RESIZE_PLAN, "in_channels": 1}, train=False)
    with pytest.raises(DataError, match=r"masks/a\.png: mask size 12x10 differs from image a\.png"):
        dataset[0]
