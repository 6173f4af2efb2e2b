"""The speed rewrites of issue 29 (docs/speed.md, "Round two") compute what the plain modules compute.

* :class:`~s2mnet.models.depthwise.DepthwiseConv2d` (MRF-SE's depthwise branches, always on): the same
  outputs, input gradients and weight gradients as ``nn.Conv2d`` (float64, tight), in train and eval mode,
  channels-last and NCHW; the same parameters and ``state_dict`` keys; a short seeded training run ends at
  the same weights; one thread stays bitwise deterministic.
* The inference path (``optimize_for_inference`` after ``load_model`` in ``s2m predict`` / ``evaluate``,
  BatchNorm folded for ``s2m export``): the same outputs as the plain eval model.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from s2mnet.models import S2MNet, create_model, optimize_for_inference
from s2mnet.models import depthwise as depthwise_module
from s2mnet.models.blocks import MRFSE
from s2mnet.models.depthwise import (
    DepthwiseConv2d,
    as_plain_conv2d,
    block_centres,
    depthwise_weight_grad,
)

TINY = {"widths": [8, 8, 8, 8, 16], "stem_width": 8, "k": 8, "bottleneck": 4}
CL = torch.channels_last


def plain_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` with every :class:`DepthwiseConv2d` replaced by the ``nn.Conv2d`` it stands
    for (same weights, same names)."""
    return as_plain_conv2d(copy.deepcopy(model))


@pytest.mark.parametrize("width", [3, 5, 7, 9, 11])
def test_block_centres_cover_every_column_of_the_kernel(width: int) -> None:
    covered = {centre + offset for centre in block_centres(width) for offset in (-1, 0, 1)}
    assert set(range(-(width // 2), width // 2 + 1)) <= covered
    assert len(block_centres(width)) == -(-width // 3)


@pytest.mark.parametrize("kernel", [(5, 5), (7, 7), (3, 7), (9, 9), (1, 5)])
def test_depthwise_weight_gradient_from_blocks_equals_the_plain_one(kernel: tuple[int, int]) -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 6, 11, 9, dtype=torch.float64, generator=generator).contiguous(memory_format=CL)
    grad = torch.randn(2, 6, 11, 9, dtype=torch.float64, generator=generator).contiguous(memory_format=CL)
    weight = torch.randn(6, 1, *kernel, dtype=torch.float64, generator=generator)
    padding = [kernel[0] // 2, kernel[1] // 2]
    expected = torch.ops.aten.convolution_backward(
        grad, x, weight, None, [1, 1], padding, [1, 1], False, [0, 0], 6, [False, True, False]
    )[1]
    torch.testing.assert_close(depthwise_weight_grad(grad, x, kernel), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("memory_format", [CL, torch.contiguous_format])
@pytest.mark.parametrize("kernel_size", [3, 5, 7])
def test_depthwise_conv_matches_conv2d_outputs_and_gradients(kernel_size: int, memory_format) -> None:
    torch.manual_seed(0)
    fast = DepthwiseConv2d(12, kernel_size).double()
    plain = plain_copy(nn.Sequential(fast))[0]
    x = torch.randn(3, 12, 13, 10, dtype=torch.float64).contiguous(memory_format=memory_format)
    x_fast, x_plain = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_fast, out_plain = fast(x_fast), plain(x_plain)
    torch.testing.assert_close(out_fast, out_plain, rtol=0, atol=0)  # the same forward kernel
    grad = torch.randn_like(out_plain)
    out_fast.backward(grad)
    out_plain.backward(grad)
    torch.testing.assert_close(x_fast.grad, x_plain.grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(fast.weight.grad, plain.weight.grad, rtol=1e-12, atol=1e-12)


def test_mrfse_uses_the_fast_depthwise_convolution_with_conv2d_state_dict_keys() -> None:
    block = MRFSE(8)
    assert [type(branch[0]) for branch in block.branches] == [DepthwiseConv2d] * 3
    assert all(isinstance(branch[0], nn.Conv2d) for branch in block.branches)
    assert list(block.state_dict()) == list(plain_copy(block).state_dict())
    assert "branches.2.0.weight" in block.state_dict() and block.branches[2][0].weight.shape == (48, 1, 7, 7)


def test_paper_model_keeps_its_parameter_count_and_state_dict_keys() -> None:
    model = S2MNet()
    plain = plain_copy(model)
    assert sum(p.numel() for p in model.parameters()) == 4_745_872  # docs/model.md
    assert sum(p.numel() for p in plain.parameters()) == 4_745_872
    assert list(model.state_dict()) == list(plain.state_dict())
    plain.load_state_dict(model.state_dict(), strict=True)  # checkpoints load either way


@pytest.mark.parametrize("memory_format", [CL, torch.contiguous_format])
@pytest.mark.parametrize("train", [True, False])
def test_s2mnet_outputs_and_gradients_match_plain_modules(train: bool, memory_format, monkeypatch) -> None:
    calls = []
    original = depthwise_module.depthwise_weight_grad
    monkeypatch.setattr(
        depthwise_module, "depthwise_weight_grad", lambda *args: calls.append(1) or original(*args)
    )
    torch.manual_seed(1)
    model = create_model("s2mnet", **TINY).double().to(memory_format=memory_format).train(train)
    plain = plain_copy(model)
    x = torch.randn(2, 3, 36, 28, dtype=torch.float64).contiguous(memory_format=memory_format)
    torch.manual_seed(2)  # the same dropout masks for both
    out_fast = model(x)
    torch.manual_seed(2)
    out_plain = plain(x)
    torch.testing.assert_close(out_fast, out_plain, rtol=1e-10, atol=1e-10)
    out_fast.square().mean().backward()
    out_plain.square().mean().backward()
    for (name, p_fast), p_plain in zip(model.named_parameters(), plain.parameters(), strict=True):
        if p_plain.grad is None:  # e.g. spectral-filter values outside the band at this size
            assert p_fast.grad is None or not p_fast.grad.any(), name
            continue
        torch.testing.assert_close(p_fast.grad, p_plain.grad, rtol=1e-8, atol=1e-10, msg=name)
    # the block gradient ran for the 5×5 and 7×7 branches of all five MRF-SE blocks, and only in channels-last
    assert len(calls) == (10 if memory_format == CL else 0)


def _train(model: nn.Module, steps: int = 3) -> dict[str, torch.Tensor]:
    """A few seeded AdamW steps of ``model`` (channels-last) on tiny random data.

    float64: AdamW's first steps move every weight by about ±lr whatever its gradient's size, so a float32
    rounding difference on a near-zero gradient would show as an lr-sized weight difference.
    """
    generator = torch.Generator().manual_seed(7)
    images = torch.randn(steps, 2, 3, 32, 32, generator=generator, dtype=torch.float64)
    masks = (torch.rand(steps, 2, 1, 32, 32, generator=generator) > 0.7).double()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    torch.manual_seed(3)
    model.train()
    for image, mask in zip(images, masks, strict=True):
        logits = model(image.contiguous(memory_format=CL))
        loss = nn.functional.binary_cross_entropy_with_logits(logits, mask)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


def test_seeded_training_run_reaches_the_same_weights_and_stays_bitwise_deterministic() -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # how the claims lab trains; resume is bitwise at one thread
    try:
        torch.manual_seed(0)
        start = create_model("s2mnet", **TINY).double().to(memory_format=CL)
        fast_weights = _train(copy.deepcopy(start))
        fast_again = _train(copy.deepcopy(start))
        plain_weights = _train(plain_copy(start))
    finally:
        torch.set_num_threads(threads)
    assert fast_weights.keys() == plain_weights.keys()
    for name, value in plain_weights.items():
        assert torch.equal(fast_weights[name], fast_again[name]), name
        torch.testing.assert_close(fast_weights[name], value, rtol=1e-7, atol=1e-9, msg=name)


def _trained_like(model: nn.Module) -> nn.Module:
    """``model`` with non-trivial BatchNorm statistics and affine parameters (eval mode), as if trained."""
    generator = torch.Generator().manual_seed(5)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            shape = module.running_mean.shape
            module.running_mean.copy_(0.1 * torch.randn(shape, generator=generator))
            module.running_var.copy_(0.5 + torch.rand(shape, generator=generator))
            module.weight.data.copy_(1 + 0.2 * torch.randn(shape, generator=generator))
            module.bias.data.copy_(0.1 * torch.randn(shape, generator=generator))
    return model.eval()


def test_inference_model_of_predict_and_evaluate_is_folded_and_gives_the_same_outputs(tmp_path) -> None:
    from s2mnet.engine.checkpoint import load_model, save_weights
    from s2mnet.engine.predictor import predict_probs
    from s2mnet.engine.rundir import write_run_config

    torch.manual_seed(0)
    model = _trained_like(create_model("s2mnet", **TINY))
    save_weights(tmp_path / "best.safetensors", model.state_dict())
    write_run_config(tmp_path, {"model": model.config})
    plain, _ = load_model(tmp_path)
    fast = optimize_for_inference(plain)  # what s2m predict / evaluate run (inference/predict.py)
    assert any(isinstance(m, nn.BatchNorm2d) for m in plain.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.modules())
    image = torch.rand(3, 45, 38)
    for plan in ({"mode": "resize", "size": 40}, {"mode": "patch", "patch_size": 32, "overlap": 0.25}):
        expected = predict_probs(plain, image, plan)
        torch.testing.assert_close(predict_probs(fast, image, plan), expected, rtol=1e-4, atol=1e-5)


def test_export_folds_batchnorm_without_changing_the_function() -> None:
    from s2mnet.deploy.export import prepare_for_export

    torch.manual_seed(0)
    model = _trained_like(create_model("s2mnet", **TINY))
    exportable = prepare_for_export(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in exportable.modules())
    x = torch.randn(2, 3, 40, 36)
    with torch.no_grad():
        torch.testing.assert_close(exportable(x), model(x), rtol=1e-4, atol=1e-5)
