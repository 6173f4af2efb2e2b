"""Dataset fingerprint and the plan derived from it (s2mnet.planning.fingerprint)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from s2mnet.data import discover
from s2mnet.errors import DataError, S2MError
from s2mnet.planning.fingerprint import fingerprint
from s2mnet.planning.planner import format_fingerprint, make_plan


def write_pair(root: Path, name: str, image: np.ndarray, mask: np.ndarray, fov: np.ndarray | None = None):
    for folder, array in (("images", image), ("masks", mask), ("fov", fov)):
        if array is not None:
            (root / folder).mkdir(parents=True, exist_ok=True)
            Image.fromarray(array).save(root / folder / f"{name}.png")


def vessel_mask(size: int, seed: int) -> np.ndarray:
    """A grid of 2-px lines: thin, tubular structures."""
    mask = np.zeros((size, size), np.uint8)
    offset = 7 + seed
    mask[offset::40, :] = 255
    mask[offset + 1 :: 40, :] = 255
    mask[:, offset::53] = 255
    mask[:, offset + 1 :: 53] = 255
    return mask


def fake_fp(
    tubularity: float, short_side: int, channels=None, fov_share=0.0, cases=40, num_classes=1
) -> dict:
    stats = {"median": short_side, "q25": short_side, "q75": short_side, "mean": short_side}
    return {
        "cases": cases,
        "num_classes": num_classes,
        "channels": channels or {"colour": cases},
        "short_side": stats,
        "fov_share": fov_share,
        "descriptors": {"tubularity": {"median": tubularity}},
    }


def test_fingerprint_of_thin_structures_on_large_fundus_like_images(tmp_path):
    image = np.zeros((520, 520, 3), np.uint8)
    image[..., 1] = np.arange(520)[:, None] // 3
    fov = np.full((520, 520), 255, np.uint8)
    for i in range(3):
        write_pair(tmp_path, f"f{i}", image, vessel_mask(520, i), fov)
    fp = fingerprint(discover(tmp_path))
    json.dumps(fp)  # JSON-serialisable, stored in the run
    assert fp["cases"] == 3 and fp["fov_share"] == 1.0 and fp["empty_mask_share"] == 0.0
    assert fp["channels"] == {"colour": 3} and fp["bit_depth"] == {"8-bit": 3}
    assert fp["descriptors"]["tubularity"]["median"] > 0.3
    plan = make_plan(fp, "cpu", {})
    assert (plan["mode"], plan["patch_size"], plan["inference"]) == ("patch", 128, "sliding_window")
    assert (plan["preprocess"], plan["use_fov"], plan["in_channels"]) == ("green_clahe", True, 1)
    assert make_plan(fp, "cuda", {})["patch_size"] == 256
    text = format_fingerprint(fp, plan)
    assert "tubularity" in text and "green_clahe" in text and "sliding_window" in text


def test_fingerprint_counts_empty_masks_and_foreground(tmp_path):
    image = np.full((40, 50), 100, np.uint8)
    blob = np.zeros((40, 50), np.uint8)
    blob[10:30, 10:30] = 255  # 400 / 2000 = 0.2 of the pixels
    write_pair(tmp_path, "a", image, blob)
    write_pair(tmp_path, "b", image, np.zeros((40, 50), np.uint8))
    fp = fingerprint(discover(tmp_path))
    assert fp["empty_mask_share"] == 0.5
    assert fp["foreground_fraction"]["median"] == pytest.approx(0.2)
    assert fp["channels"] == {"grey": 2}
    assert fp["descriptors"]["compactness"]["median"] > 0.7  # a square
    plan = make_plan(fp, "cpu", {})
    assert (plan["mode"], plan["in_channels"], plan["size"]) == ("resize", 1, 64)  # capped, at least 64


def test_image_mask_size_mismatch_names_the_file(tmp_path):
    write_pair(tmp_path, "a", np.zeros((20, 20), np.uint8), np.zeros((20, 21), np.uint8))
    with pytest.raises(DataError, match=r"a\.png: mask size 21x20 differs from image a\.png \(20x20\)"):
        fingerprint(discover(tmp_path))


def test_plan_rules_for_compact_objects():
    fp = fake_fp(tubularity=0.01, short_side=500)
    cpu, gpu = make_plan(fp, "cpu", {}), make_plan(fp, "cuda", {})
    assert (cpu["mode"], cpu["size"], cpu["augment"], cpu["in_channels"]) == ("resize", 160, "light", 3)
    assert (gpu["mode"], gpu["size"], gpu["augment"], gpu["batch_size"], gpu["epochs"]) == (
        "resize",
        352,
        "full",
        8,
        150,
    )
    assert gpu["samples_per_epoch"] == 30 * 28  # paper: small sets expanded ×30 (28 = 70 % of 40)
    assert set(cpu["reasons"]) >= {"mode", "size", "preprocess", "batch_size", "epochs", "samples_per_epoch"}


def test_thin_structures_on_small_images_are_resized():
    plan = make_plan(fake_fp(tubularity=0.6, short_side=300, fov_share=1.0), "cpu", {})
    assert plan["mode"] == "resize" and plan["preprocess"] == "green_clahe" and plan["use_fov"]


def test_overrides_win_and_are_marked():
    fp = fake_fp(tubularity=0.01, short_side=500)
    plan = make_plan(fp, "cpu", {"size": 96, "epochs": 3, "batch_size": None})
    assert plan["size"] == 96 and plan["reasons"]["size"] == "set by flag"
    assert plan["epochs"] == 3 and plan["batch_size"] == 8 and plan["reasons"]["batch_size"] == "CPU budget"
    patch = make_plan(fp, "cpu", {"mode": "patch"})
    assert (patch["mode"], patch["patch_size"], patch["inference"]) == ("patch", 128, "sliding_window")
    assert patch["overlap"] == 0.5
    assert make_plan(fp, "cpu", {"mode": "patch", "overlap": 0.0})["overlap"] == 0.0  # 0 is a value
    grey = make_plan(fp, "cpu", {"preprocess": "green_clahe"})
    assert grey["in_channels"] == 1
    fundus = fake_fp(tubularity=0.6, short_side=565, fov_share=1.0)
    assert make_plan(fundus, "cpu", {})["in_channels"] == 1
    assert make_plan(fundus, "cpu", {"preprocess": "none"})["in_channels"] == 3
    multiclass = make_plan(fake_fp(0.0, 400, num_classes=4), "cpu", {})
    assert multiclass["num_classes"] == 4


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"colour": 1}, "unknown plan setting 'colour'"),
        ({"mode": "tiles"}, "mode must be"),
        ({"size": -3}, "size must be a positive integer"),
        ({"augment": "heavy"}, "augmentation must be"),
    ],
)
def test_bad_overrides(overrides, message):
    with pytest.raises(S2MError, match=message):
        make_plan(fake_fp(0.0, 400), "cpu", overrides)
