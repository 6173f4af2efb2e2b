"""Discovery, reading and fingerprints on the real datasets in ../shared/data (skipped when absent)."""

from __future__ import annotations

import numpy as np
import pytest

from s2mnet.data import discover
from s2mnet.data.io import read_fov, read_image, read_mask
from s2mnet.data.splits import make_splits
from s2mnet.planning.fingerprint import fingerprint
from s2mnet.planning.planner import make_plan

pytestmark = pytest.mark.realdata


def test_drive_pairs_fov_and_official_split(real_data):
    index = discover(real_data("DRIVE"))
    assert len(index.cases) == 40 and index.layout == "images-masks-fov"
    assert all(c.fov is not None for c in index.cases) and len(index.ignored) == 20
    case = index.case("21_training")
    assert (case.masks[0].name, case.fov.name) == ("21_manual1.gif", "21_training_mask.gif")
    assert index.known_split["train"] == [f"{i}_training" for i in range(21, 41)]
    assert index.known_split["test"] == [f"{i:02d}_test" for i in range(1, 21)]
    split = make_splits(index, seed=0)
    assert (len(split["train"]), len(split["val"]), len(split["test"])) == (16, 4, 20)
    image, mask, fov = read_image(case.image), read_mask(case.masks), read_fov(case.fov)
    assert image.shape == (584, 565, 3) and mask.shape == fov.shape == (584, 565)
    assert 0.05 < mask.mean() < 0.2 and 0.6 < fov.mean() < 0.8


def test_busi_unions_empty_normals_and_colour_masks(real_data):
    index = discover(real_data("BUSI-100"))
    assert len(index.cases) == 100 and index.known_split is None
    assert sorted(c.case_id for c in index.cases if len(c.masks) > 1) == ["benign (25)", "benign (4)"]
    double = index.case("benign (4)")  # its second mask is an RGBA PNG
    first, united = read_mask(double.masks[:1]), read_mask(double.masks)
    assert united.sum() > first.sum() > 0 and set(np.unique(united)) == {0, 1}
    normals = [c for c in index.cases if c.case_id.startswith("normal")]
    assert len(normals) == 20 and all(read_mask(c.masks).sum() == 0 for c in normals[:5])  # RGB, all zero
    assert read_image(double.image).shape[:2] == united.shape


@pytest.mark.parametrize("name", ["Kvasir-SEG-5", "HAM10000-5"])
def test_five_pair_sets(real_data, name):
    index = discover(real_data(name))
    assert len(index.cases) == 5
    for case in index.cases:
        mask = read_mask(case.masks)  # Kvasir: JPEG grey levels thresholded at 128
        assert set(np.unique(mask)) == {0, 1} and 0.02 < mask.mean() < 0.6
        assert read_image(case.image).shape[:2] == mask.shape


@pytest.mark.slow
def test_fingerprints_and_plans_of_drive_and_busi(real_data):
    drive = fingerprint(discover(real_data("DRIVE")))
    plan = make_plan(drive, "cpu", {})
    assert drive["descriptors"]["tubularity"]["median"] > 0.3 and drive["fov_share"] == 1.0
    assert (plan["mode"], plan["patch_size"], plan["preprocess"], plan["use_fov"], plan["in_channels"]) == (
        "patch",
        128,
        "green_clahe",
        True,
        1,
    )
    busi = fingerprint(discover(real_data("BUSI-100")))
    plan = make_plan(busi, "cpu", {})
    assert busi["empty_mask_share"] == 0.2 and busi["multi_mask_cases"] == 2
    assert (
        busi["descriptors"]["tubularity"]["median"] < 0.05
        and busi["descriptors"]["compactness"]["median"] > 0.4
    )
    assert busi["channels"] == {"grey stored as colour": 98, "colour": 2}
    assert (plan["mode"], plan["size"], plan["in_channels"]) == ("resize", 160, 1)
    assert make_plan(busi, "cuda", {})["size"] == 352
