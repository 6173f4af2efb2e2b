"""Whole-image inference: shapes in resize and patch mode, activations, TTA, thresholding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from s2mnet.engine.predictor import predict_probs, probs_to_mask


def pointwise(in_channels: int = 3, classes: int = 1) -> nn.Module:
    torch.manual_seed(0)
    return nn.Conv2d(in_channels, classes, kernel_size=1).eval()


def conv3x3(kernel: torch.Tensor) -> nn.Module:
    """One-channel 3×3 convolution with a given kernel and zero padding."""
    model = nn.Conv2d(1, 1, kernel_size=3, padding=1, bias=False)
    with torch.no_grad():
        model.weight.copy_(kernel.view(1, 1, 3, 3))
    return model.eval()


def image(channels: int = 3, height: int = 37, width: int = 50) -> torch.Tensor:
    return torch.rand(channels, height, width, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("classes", [1, 3])
def test_resize_mode_returns_probabilities_at_input_size(classes):
    probs = predict_probs(pointwise(classes=classes), image(), {"mode": "resize", "size": 32})
    assert probs.shape == (classes, 37, 50)
    assert probs.dtype == torch.float32
    assert float(probs.min()) >= 0.0 and float(probs.max()) <= 1.0
    if classes > 1:
        torch.testing.assert_close(probs.sum(0), torch.ones(37, 50))


def test_resize_mode_accepts_rectangular_size_and_numpy():
    probs = predict_probs(pointwise(), image().numpy(), {"mode": "resize", "size": [24, 40]})
    assert probs.shape == (1, 37, 50)


def test_resize_mode_matches_manual_resize():
    model, x = pointwise(), image()
    small = nn.functional.interpolate(
        x[None], size=(32, 32), mode="bilinear", align_corners=False, antialias=True
    )
    expected = nn.functional.interpolate(
        torch.sigmoid(model(small)), size=(37, 50), mode="bilinear", align_corners=False, antialias=True
    )[0]
    with torch.no_grad():
        torch.testing.assert_close(predict_probs(model, x, {"mode": "resize", "size": 32}), expected)


@pytest.mark.parametrize("shape", [(40, 70), (20, 24)])  # larger and smaller than the patch
def test_patch_mode_equals_direct_prediction_for_pointwise_model(shape):
    model, x = pointwise(), image(height=shape[0], width=shape[1])
    probs = predict_probs(model, x, {"mode": "patch", "patch_size": 32, "overlap": 0.25})
    assert probs.shape == (1, *shape)
    with torch.no_grad():
        torch.testing.assert_close(probs, torch.sigmoid(model(x[None]))[0], atol=1e-5, rtol=1e-5)


def test_tta_is_identity_for_a_dihedral_equivariant_model():
    # A 3×3 kernel symmetric under flips and 90° rotations: the network commutes with all 8 transforms,
    # so averaging over them must change nothing, on a non-square image, in both modes.
    kernel = torch.tensor([[0.5, 1.0, 0.5], [1.0, -4.0, 1.0], [0.5, 1.0, 0.5]])
    model, x = conv3x3(kernel), image(channels=1, height=30, width=44)
    for plan in ({"mode": "resize", "size": [30, 44]}, {"mode": "patch", "patch_size": 16}):
        plain = predict_probs(model, x, plan)
        torch.testing.assert_close(predict_probs(model, x, plan, tta=True), plain, atol=1e-5, rtol=1e-5)


def test_tta_output_is_equivariant_for_any_model():
    # With an asymmetric kernel the plain prediction is not rotation-equivariant, but the TTA average is:
    # TTA(rot(x)) == rot(TTA(x)). This fails if any transform is not undone correctly.
    kernel = torch.tensor([[0.0, 2.0, 0.0], [0.0, 0.0, -1.0], [0.0, 0.0, 0.5]])
    model, x = conv3x3(kernel), image(channels=1, height=24, width=24)
    plan = {"mode": "resize", "size": 24}
    rotated = torch.rot90(x, 1, dims=(-2, -1))
    plain_gap = predict_probs(model, rotated, plan) - torch.rot90(
        predict_probs(model, x, plan), 1, dims=(-2, -1)
    )
    assert plain_gap.abs().max() > 1e-2
    torch.testing.assert_close(
        predict_probs(model, rotated, plan, tta=True),
        torch.rot90(predict_probs(model, x, plan, tta=True), 1, dims=(-2, -1)),
        atol=1e-5,
        rtol=1e-5,
    )


def test_model_mode_is_left_unchanged():
    model = pointwise().train()
    predict_probs(model, image(), {"mode": "resize", "size": 16})
    assert model.training


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="resize' or 'patch"):
        predict_probs(pointwise(), image(), {"mode": "tiles"})


def test_probs_to_mask_binary_threshold_and_argmax():
    binary = torch.tensor([[[0.2, 0.5], [0.51, 0.9]]])
    np.testing.assert_array_equal(probs_to_mask(binary), np.array([[0, 0], [1, 1]], dtype=np.uint8))
    multi = torch.tensor([[[0.6, 0.1]], [[0.3, 0.2]], [[0.1, 0.7]]])
    mask = probs_to_mask(multi)
    assert mask.dtype == np.uint8
    np.testing.assert_array_equal(mask, np.array([[0, 2]]))
    with pytest.raises(ValueError, match="threshold"):
        probs_to_mask(binary, 1)
