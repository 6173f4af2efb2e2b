"""Morphology descriptors (docs/method.md §3): acceptance shapes, hand-computed perimeters, ranges."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from monai.losses.cldice import soft_skel
from skimage.draw import disk, polygon

from s2mnet.losses import LossInputError, morphology_descriptors, soft_compactness
from s2mnet.losses.descriptors import binary_skeleton, boundary_band, soft_perimeter

SIZE = 128


def _disk(radius: int = 30) -> np.ndarray:
    mask = np.zeros((SIZE, SIZE), np.float32)
    rows, cols = disk((SIZE // 2, SIZE // 2), radius, shape=mask.shape)
    mask[rows, cols] = 1
    return mask


def _line(width: int, length: int = 100) -> np.ndarray:
    mask = np.zeros((SIZE, SIZE), np.float32)
    top = SIZE // 2 - width // 2
    mask[top : top + width, 14 : 14 + length] = 1
    return mask


def _star(points: int = 8, outer: float = 45, inner: float = 20) -> np.ndarray:
    angles = np.arange(2 * points) * np.pi / points
    radii = np.where(np.arange(2 * points) % 2 == 0, outer, inner)
    mask = np.zeros((SIZE, SIZE), np.float32)
    rows, cols = polygon(SIZE / 2 + radii * np.sin(angles), SIZE / 2 + radii * np.cos(angles), mask.shape)
    mask[rows, cols] = 1
    return mask


SHAPES = {"disk": _disk(), "line1": _line(1), "line3": _line(3), "star": _star()}


@pytest.fixture(scope="module")
def descriptors() -> dict[str, dict[str, float]]:
    batch = torch.from_numpy(np.stack(list(SHAPES.values())))[:, None]
    values = morphology_descriptors(batch)
    return {name: {key: float(values[key][i]) for key in values} for i, name in enumerate(SHAPES)}


def test_disk_is_compact_and_not_tubular(descriptors):
    assert descriptors["disk"]["compactness"] >= 0.8
    assert descriptors["disk"]["tubularity"] <= 0.1


def test_one_pixel_line_is_tubular_and_not_compact(descriptors):
    assert descriptors["line1"]["tubularity"] >= 0.8
    assert descriptors["line1"]["compactness"] <= 0.2


def test_three_pixel_line_is_tubular(descriptors):
    assert descriptors["line3"]["tubularity"] >= 0.25


def test_star_is_more_irregular_than_disk(descriptors):
    assert descriptors["star"]["irregularity"] >= 1.5 * descriptors["disk"]["irregularity"]


def test_scale_is_the_foreground_fraction(descriptors):
    for name, mask in SHAPES.items():
        assert descriptors[name]["scale"] == pytest.approx(mask.mean(), abs=1e-6)


def test_all_descriptors_in_unit_interval(descriptors):
    for values in descriptors.values():
        assert all(0.0 <= v <= 1.0 for v in values.values())


def test_descriptors_are_per_sample():
    batch = torch.from_numpy(np.stack(list(SHAPES.values())))[:, None]
    together = morphology_descriptors(batch)
    for index in range(batch.shape[0]):
        alone = morphology_descriptors(batch[index : index + 1])
        for key, values in together.items():
            assert float(alone[key][0]) == pytest.approx(float(values[index]), abs=1e-6)


def test_empty_mask_gives_zeros_not_nan():
    values = morphology_descriptors(torch.zeros(2, 16, 16))
    for tensor in values.values():
        assert tensor.shape == (2,)
        assert torch.equal(tensor, torch.zeros(2))


def test_full_mask_is_a_square():
    values = morphology_descriptors(torch.ones(1, 1, 20, 20))
    # Zero padding closes the shape at the image border: a 20×20 square, P = 4·19 + 4·√2 (see below).
    perimeter = 4 * 19 + 4 * math.sqrt(0.5)
    assert float(values["compactness"][0]) == pytest.approx(4 * math.pi * 400 / (perimeter**2 + 1), rel=1e-5)
    assert float(values["scale"][0]) == 1.0


def test_soft_perimeter_of_a_square_by_hand():
    # 4×4 square: each side has 3 cells with two adjacent ones (|g| = 1), the 4 corner cells one (|g| = √½).
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 2:6, 2:6] = 1
    assert float(soft_perimeter(mask)[0]) == pytest.approx(12 + 4 * math.sqrt(0.5), abs=1e-4)


def test_soft_perimeter_diagonal_steps_cost_sqrt2():
    # A 45° staircase edge: per step two cells with |g| = √½, i.e. √2 per diagonal step (exact).
    mask = torch.tril(torch.ones(40, 40))[None, None]
    horizontal_and_vertical_sides = 2 * 39 + 2 * math.sqrt(0.5)  # plus the two outer corners
    perimeter = float(soft_perimeter(mask)[0])
    assert perimeter == pytest.approx(
        horizontal_and_vertical_sides + 39 * math.sqrt(2) + 2 * math.sqrt(0.5), rel=0.02
    )


def test_soft_compactness_is_differentiable_and_matches_descriptor():
    mask = torch.from_numpy(_disk(10)[None, None].copy())
    prob = mask.clone().requires_grad_(True)
    compactness = soft_compactness(prob)
    compactness.sum().backward()
    assert torch.isfinite(prob.grad).all() and prob.grad.abs().sum() > 0
    assert float(compactness.detach()[0]) == pytest.approx(
        float(morphology_descriptors(mask)["compactness"][0])
    )


def test_boundary_band_of_a_pixel_is_its_5x5_neighbourhood():
    mask = torch.zeros(1, 1, 9, 9)
    mask[..., 4, 4] = 1
    expected = torch.zeros(1, 1, 9, 9)
    expected[..., 2:7, 2:7] = 1
    assert torch.equal(boundary_band(mask), expected)


def test_binary_skeleton_equals_monai_soft_skeleton():
    generator = torch.Generator().manual_seed(0)
    random_masks = (torch.rand(4, 1, 40, 40, generator=generator) > 0.4).float()
    shapes = torch.from_numpy(np.stack(list(SHAPES.values())))[:, None]
    for masks in (random_masks, shapes):
        for iterations in (0, 3, 10):
            assert torch.equal(binary_skeleton(masks, iterations).float(), soft_skel(masks, iterations))


def test_boundary_band_equals_square_dilation_minus_erosion():
    masks = (torch.rand(3, 1, 30, 30, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    dilated = torch.nn.functional.max_pool2d(masks, 5, stride=1, padding=2)
    eroded = -torch.nn.functional.max_pool2d(-masks, 5, stride=1, padding=2)
    assert torch.equal(boundary_band(masks), dilated - eroded)


def test_accepts_bhw_and_int_masks():
    mask = torch.from_numpy(_disk(10)).to(torch.uint8)[None]
    values = morphology_descriptors(mask)
    assert values["compactness"].shape == (1,)
    assert float(values["compactness"][0]) >= 0.8


def test_rejects_multichannel_masks():
    with pytest.raises(
        LossInputError, match=r"mask: expected shape \(B, 1, H, W\) or \(B, H, W\), got \(1, 2, 8, 8\)"
    ):
        morphology_descriptors(torch.zeros(1, 2, 8, 8))


@settings(max_examples=30, deadline=None, derandomize=True)
@given(
    st.integers(min_value=0, max_value=2**31 - 1),
    st.integers(min_value=1, max_value=24),
    st.integers(min_value=1, max_value=24),
    st.floats(min_value=0.0, max_value=1.0),
)
def test_descriptors_in_range_for_random_masks(seed, height, width, density):
    generator = torch.Generator().manual_seed(seed)
    mask = (torch.rand(3, 1, height, width, generator=generator) < density).float()
    values = morphology_descriptors(mask)
    for tensor in values.values():
        assert tensor.shape == (3,)
        assert torch.isfinite(tensor).all()
        assert (tensor >= 0).all() and (tensor <= 1).all()
    assert torch.allclose(values["scale"], mask.mean(dim=(1, 2, 3)))
