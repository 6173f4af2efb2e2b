"""Per-image metrics: hand-computed values on tiny masks and the empty-mask policy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from s2mnet.engine.metrics import (
    EMPTY_POLICY,
    VolumeDice,
    case_metrics,
    cldice,
    image_diagonal,
    summarize,
)


def square(top: int, left: int, side: int = 4, shape: tuple[int, int] = (10, 10)) -> np.ndarray:
    mask = np.zeros(shape, dtype=np.uint8)
    mask[top : top + side, left : left + side] = 1
    return mask


def test_shifted_squares_exact_values():
    # Two 4x4 squares, one row apart: overlap 12 pixels of 16 each.
    pred, truth = square(2, 2), square(3, 2)
    m = case_metrics(pred, truth)
    assert m["dice"] == pytest.approx(2 * 12 / 32)
    assert m["iou"] == pytest.approx(12 / 20)
    assert m["precision"] == pytest.approx(12 / 16)
    assert m["recall"] == pytest.approx(12 / 16)
    # A 1-pixel shift: every boundary pixel is 0 or 1 pixel from the other boundary.
    assert m["hd95"] == pytest.approx(1.0)
    # 6 of the 12 boundary pixels of each square lie 1 pixel off the other boundary (top/bottom rows
    # minus the corners that stay on the sides): mean 0.5 in both directions.
    assert m["assd"] == pytest.approx(0.5)


def test_precision_and_recall_differ_for_nested_masks():
    truth = square(2, 2, side=4)
    pred = np.zeros_like(truth)
    pred[2:4, 2:6] = 1  # upper half of the square
    m = case_metrics(pred, truth, distances=False)
    assert m["precision"] == pytest.approx(1.0)
    assert m["recall"] == pytest.approx(0.5)
    assert m["dice"] == pytest.approx(2 * 8 / 24)
    assert "hd95" not in m and "assd" not in m


def test_identical_masks_are_perfect_and_accept_tensors():
    truth = square(1, 1)
    m = case_metrics(torch.from_numpy(truth)[None], torch.from_numpy(truth))
    assert m == {"dice": 1.0, "iou": 1.0, "precision": 1.0, "recall": 1.0, "hd95": 0.0, "assd": 0.0}


def test_empty_policy_both_empty_is_perfect():
    empty = np.zeros((6, 8), dtype=np.uint8)
    m = case_metrics(empty, empty, tubular=True)
    assert m == {
        "dice": 1.0,
        "iou": 1.0,
        "precision": 1.0,
        "recall": 1.0,
        "hd95": 0.0,
        "assd": 0.0,
        "cldice": 1.0,
    }


@pytest.mark.parametrize("missing", ["prediction", "truth"])
def test_empty_policy_one_empty_is_worst_and_finite(missing):
    mask, empty = square(2, 2, shape=(6, 8)), np.zeros((6, 8), dtype=np.uint8)
    pred, truth = (empty, mask) if missing == "prediction" else (mask, empty)
    m = case_metrics(pred, truth, tubular=True)
    diagonal = math.hypot(6, 8)
    assert m == {
        "dice": 0.0,
        "iou": 0.0,
        "precision": 0.0,
        "recall": 0.0,
        "hd95": diagonal,
        "assd": diagonal,
        "cldice": 0.0,
    }


def test_empty_prediction_never_improves_the_mean():
    truth = square(2, 2)
    poor = np.zeros_like(truth)
    poor[2, 2] = 1  # one correct pixel
    with_poor = summarize([case_metrics(truth, truth), case_metrics(poor, truth)])
    with_empty = summarize([case_metrics(truth, truth), case_metrics(np.zeros_like(truth), truth)])
    for name in ("dice", "iou", "recall", "precision"):
        assert with_empty[name] <= with_poor[name]
    for name in ("hd95", "assd"):
        assert with_empty[name] >= with_poor[name]
    assert "no case is skipped" in EMPTY_POLICY


def test_diagonal_uses_spacing():
    assert image_diagonal((3, 4)) == pytest.approx(5.0)
    assert image_diagonal((3, 4), spacing=(2.0, 0.5)) == pytest.approx(math.hypot(6, 2))


def test_spacing_scales_distances():
    m = case_metrics(square(2, 2), square(3, 2), spacing=(2.0, 1.0))
    assert m["hd95"] == pytest.approx(2.0)  # the shift is along rows, 2 units per row


def test_fov_restricts_every_count():
    truth = square(2, 2)
    pred = truth.copy()
    pred[8:10, 8:10] = 1  # false positives outside the FOV
    fov = np.zeros_like(truth, dtype=bool)
    fov[:7, :7] = True
    assert case_metrics(pred, truth, fov=fov)["dice"] == pytest.approx(1.0)
    assert case_metrics(pred, truth)["dice"] < 1.0
    # Truth only outside the FOV and nothing predicted inside: both empty → perfect.
    outside = np.zeros_like(truth)
    outside[9, 9] = 1
    assert case_metrics(np.zeros_like(truth), outside, fov=fov)["dice"] == 1.0


def test_multiclass_per_class_and_mean():
    truth = np.zeros((10, 10), dtype=np.uint8)
    truth[0:4, 0:4] = 1
    truth[6:10, 6:10] = 2
    pred = truth.copy()
    pred[6:10, 6:10] = 0  # class 2 entirely missed
    m = case_metrics(pred, truth, num_classes=3)
    assert m["per_class"]["1"]["dice"] == 1.0
    assert m["per_class"]["2"]["dice"] == 0.0
    assert m["per_class"]["2"]["hd95"] == pytest.approx(math.hypot(10, 10))
    assert m["dice"] == pytest.approx(0.5)
    assert set(m["per_class"]) == {"1", "2"}


def test_cldice_on_lines():
    truth = np.zeros((9, 12), dtype=bool)
    truth[4, 1:9] = True  # a 1-pixel line of 8 pixels: its own skeleton
    pred = np.zeros_like(truth)
    pred[4, 1:5] = True  # its first half
    # Tprec = 4/4, Tsens = 4/8 → clDice = 2 * 1 * 0.5 / 1.5
    assert cldice(pred, truth) == pytest.approx(2 / 3)
    assert case_metrics(pred, truth, tubular=True)["cldice"] == pytest.approx(2 / 3)


masks = arrays(np.uint8, (7, 9), elements=st.integers(0, 1))


@settings(max_examples=25, deadline=None)
@given(pred=masks, truth=masks)
def test_overlap_scores_match_their_definitions_on_random_masks(pred, truth):
    m = case_metrics(pred, truth)
    both, total = int((pred & truth).sum()), int(pred.sum() + truth.sum())
    expected_dice = 1.0 if total == 0 else 2 * both / total
    assert m["dice"] == pytest.approx(expected_dice)
    assert m["iou"] == pytest.approx(expected_dice / (2 - expected_dice))  # IoU = D / (2 - D)
    assert all(0.0 <= m[name] <= 1.0 for name in ("dice", "iou", "precision", "recall"))
    assert all(0.0 <= m[name] <= image_diagonal((7, 9)) + 1e-9 for name in ("hd95", "assd"))


def test_summarize_mean_and_std_skip_nothing():
    rows = [{"dice": 1.0, "hd95": 0.0}, {"dice": 0.0, "hd95": 10.0}, {"dice": 0.5, "hd95": 5.0}]
    s = summarize(rows)
    assert s["dice"] == pytest.approx(0.5)
    assert s["dice_std"] == pytest.approx(np.std([1.0, 0.0, 0.5]))
    assert s["hd95"] == pytest.approx(5.0)
    assert summarize([]) == {}


def test_volume_dice_sums_counts_over_slices():
    """Volume a: slice 1 has 4 true / 4 predicted pixels, 2 shared; slice 2 is empty in both → 3-D Dice
    = 2·2 / (4 + 4) = 0.5 (the per-slice mean would be 0.75). Volume b: a missed object → 0."""
    square = np.zeros((4, 4), np.uint8)
    square[:2, :2] = 1
    shifted = np.roll(square, 1, axis=1)
    empty = np.zeros((4, 4), np.uint8)
    volumes = VolumeDice()
    volumes.add("a", shifted, square)
    volumes.add("a", empty, empty)
    volumes.add("b", empty, square)
    result = volumes.result()
    assert result["n_volumes"] == 2
    assert [c["dice"] for c in result["cases"]] == [0.5, 0.0]
    assert result["dice"] == pytest.approx(0.25) and result["dice_std"] == pytest.approx(0.25)


def test_volume_dice_per_class_and_per_region():
    truth = np.array([[1, 1, 2, 0]])
    pred = np.array([[1, 0, 2, 2]])
    classes = VolumeDice(num_classes=4)
    classes.add("v", pred, truth)
    per_class = classes.result()["per_class"]
    # class 1: 2·1/(1+2); class 2: 2·1/(2+1); class 3: empty in both → 1
    assert per_class["1"]["dice"] == pytest.approx(2 / 3) and per_class["2"]["dice"] == pytest.approx(2 / 3)
    assert per_class["3"]["dice"] == 1.0
    regions = VolumeDice(regions=["WT", "ET"])
    regions.add("v", np.stack([pred > 0, pred == 2]), np.stack([truth > 0, truth == 2]))
    by_region = regions.result()["per_class"]
    assert by_region["WT"]["dice"] == pytest.approx(2 * 2 / (3 + 3))
    assert by_region["ET"]["dice"] == pytest.approx(2 * 1 / (2 + 1))


def test_volume_dice_counts_inside_the_fov_only():
    truth = np.array([[1, 1]])
    volumes = VolumeDice()
    volumes.add("v", np.array([[1, 0]]), truth, fov=np.array([[1, 0]]))
    assert volumes.result()["dice"] == 1.0


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="must be equal"):
        case_metrics(np.zeros((4, 4)), np.zeros((4, 5)))


@pytest.mark.slow
@pytest.mark.realdata
def test_drive_second_observer_matches_the_published_numbers(real_data):
    """DRIVE test set, 2nd observer against the 1st, inside the FOV: the published sensitivity 0.7760.

    Staal et al. (2004) report the second observer at sensitivity 0.7760, specificity 0.9724, accuracy
    0.9472 (mean over the 20 test images); our recall must reproduce the first to the printed digits.
    The 2nd-observer GIFs are read by palette brightness: their palette is near-black (4, 2, 4) /
    near-white (252, 254, 252).
    """
    from PIL import Image

    from s2mnet.data.io import read_fov, read_mask

    drive = real_data("DRIVE")
    rows = []
    for i in range(1, 21):
        first = read_mask(drive / "masks" / f"{i:02d}_manual1.gif")
        with Image.open(drive / "masks_2nd_observer" / f"{i:02d}_manual2.gif") as second_file:
            second = np.asarray(second_file.convert("L")) > 128
        fov = read_fov(drive / "fov_masks" / f"{i:02d}_test_mask.gif")
        rows.append(case_metrics(second, first, fov=fov, tubular=True, distances=False))
    summary = summarize(rows)
    assert summary["recall"] == pytest.approx(0.7760, abs=5e-5)
    assert summary["dice"] == pytest.approx(0.788, abs=1e-3)
    assert 0.7 < summary["cldice"] < 0.85
