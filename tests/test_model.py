"""S2M-Net, variants, registry and U-Net: any-size forward, parameter counts, config round trip."""

from __future__ import annotations

import json

import pytest
import torch

from s2mnet.errors import S2MError
from s2mnet.models import S2MNet, UNet, create_model, list_models
from s2mnet.models.attention import AttentionMixer
from s2mnet.models.blocks import BFD, MRFSE
from s2mnet.models.sstm import SSTM

TINY = {"widths": [8, 8, 8, 8, 16], "stem_width": 8, "k": 8, "bottleneck": 4}


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_default_parameter_count_is_4_70_million_within_2_percent() -> None:
    model = S2MNet()
    total = n_params(model)
    assert abs(total - 4.70e6) / 4.70e6 < 0.02
    breakdown = model.parameter_breakdown()
    assert breakdown["total"] == total
    assert sum(v for k, v in breakdown.items() if k != "total") == total
    assert breakdown["head"] == 24 * 32 * 9 + 32 + 32 * 16 * 9 + 16 + 16 + 1  # as the authors' head
    # SSTM at stage 5 (C=128): filter 544·C + gate C²+C + bottleneck 2·16·C+16+C + fusion 2C²+C + LN 2C
    c = 128
    assert breakdown["stage5.mixer"] == 544 * c + c * c + c + 2 * 16 * c + 16 + c + 2 * c * c + c + 2 * c


def test_parameter_count_is_independent_of_input_size() -> None:
    model = create_model("s2mnet", **TINY).eval()
    before = n_params(model)
    with torch.no_grad():
        for size in [(17, 23), (64, 48)]:
            model(torch.randn(1, 3, *size))
    assert n_params(model) == before


@pytest.mark.parametrize(("num_classes", "size"), [(1, (33, 47)), (4, (33, 47)), (1, (19, 64)), (4, (2, 3))])
def test_any_size_forward_returns_logits_of_input_size(num_classes: int, size: tuple[int, int]) -> None:
    model = create_model("s2mnet", in_channels=1, num_classes=num_classes, **TINY).eval()
    with torch.no_grad():
        logits = model(torch.randn(2, 1, *size))
    assert logits.shape == (2, num_classes, *size)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("name", [n for n in list_models() if n not in ("unet", "monai_unet")])
def test_every_registered_variant_builds_runs_and_trains(name: str) -> None:
    torch.manual_seed(0)
    overrides = {k: v for k, v in TINY.items() if not (name in ("s2mnet_k16", "s2mnet_k64") and k == "k")}
    model = create_model(name, num_classes=2, **overrides)
    x = torch.randn(2, 3, 21, 19)
    logits = model(x)
    assert logits.shape == (2, 2, 21, 19)
    logits.square().mean().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_unet_is_the_classic_31m_design_and_size_agnostic() -> None:
    assert 30.5e6 < n_params(UNet()) < 31.5e6  # 64…1024, the paper's "U-Net 31.0M"
    small = create_model("unet", in_channels=1, num_classes=3, base_width=4).eval()
    with torch.no_grad():
        assert small(torch.randn(1, 1, 33, 47)).shape == (1, 3, 33, 47)


def test_config_is_json_and_rebuilds_the_same_architecture() -> None:
    for name, overrides in [
        ("s2mnet_attention", TINY),
        ("s2mnet", {**TINY, "k": 24}),
        ("unet", {"base_width": 4}),
    ]:
        model = create_model(name, in_channels=2, num_classes=3, **overrides)
        config = json.loads(json.dumps(model.config))
        assert config["name"] == name and config["in_channels"] == 2 and config["num_classes"] == 3
        rebuilt = create_model(**config)
        assert rebuilt.config == model.config
        assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {
            k: v.shape for k, v in model.state_dict().items()
        }
    direct = S2MNet(num_classes=2, mixer="none", widths=(8, 8, 8, 8, 8))
    assert n_params(create_model(**direct.config)) == n_params(direct)


def test_registry_names_and_errors() -> None:
    assert {
        "s2mnet",
        "s2mnet_attention",
        "s2mnet_none",
        "s2mnet_k16",
        "s2mnet_k64",
        "s2mnet_spectral",
        "s2mnet_spatial",
        "s2mnet_hard",
        "s2mnet_nobfd",
        "s2mnet_nomrfse",
        "s2mnet_official",
        "unet",
    } <= set(list_models())
    with pytest.raises(S2MError, match="unknown model 'resnet'"):
        create_model("resnet")
    with pytest.raises(S2MError, match="does not take \\['kk'\\]"):
        create_model("s2mnet", kk=3)
    with pytest.raises(ValueError, match="mixer must be one of"):
        create_model("s2mnet", mixer="mamba")
    with pytest.raises(ValueError, match="routing must be one of"):
        create_model("s2mnet", routing="learned")


def test_attention_variant_matches_sstm_parameters_within_10_percent_per_stage() -> None:
    sstm_model, attention_model = S2MNet(), S2MNet(mixer="attention")
    for sstm_stage, attention_stage in zip(sstm_model.encoder, attention_model.encoder, strict=True):
        sstm, attention = sstm_stage[2], attention_stage[2]
        assert isinstance(sstm, SSTM) and isinstance(attention, AttentionMixer)
        assert abs(n_params(attention) - n_params(sstm)) / n_params(sstm) < 0.10
    assert abs(n_params(attention_model) - n_params(sstm_model)) / n_params(sstm_model) < 0.01


def test_attention_mixer_attends_globally_through_fused_sdpa() -> None:
    torch.manual_seed(0)
    mixer = AttentionMixer(8, heads=2, mlp_hidden=16).eval()
    x = torch.randn(1, 8, 9, 9, requires_grad=True)
    mixer(x)[0, 0, 4, 4].backward()
    assert x.grad[0, :, 0, 0].abs().sum() > 0


def test_spectral_impl_switch_keeps_weights_and_output() -> None:
    torch.manual_seed(0)
    model = create_model("s2mnet", **TINY).eval()
    x = torch.randn(1, 3, 40, 28)
    with torch.no_grad():
        y_fft = model(x)
        model.set_spectral_impl("matmul")
        y_matmul = model(x)
    assert model.config["spectral_impl"] == "matmul"
    torch.testing.assert_close(y_fft, y_matmul, rtol=0, atol=1e-4)


def test_hard_routing_passes_gradient_to_the_boundary_branch() -> None:
    torch.manual_seed(0)
    model = create_model("s2mnet_hard", **TINY)
    model(torch.randn(2, 3, 32, 32)).mean().backward()
    boundary_conv = model.decoder[0].boundary[0]
    assert boundary_conv.weight.grad is not None and boundary_conv.weight.grad.abs().sum() > 0


@pytest.mark.slow
def test_torch_compile_matches_eager() -> None:
    # Inductor compiles this in ~85 s on a shared 2-core CPU (measured; docs/model.md), too slow for the
    # suite; aot_eager still checks that Dynamo captures the whole model (FFT included) in one graph.
    torch.manual_seed(0)
    model = create_model("s2mnet", **TINY).eval()
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True, dynamic=False)
    x = torch.randn(1, 3, 40, 36)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), rtol=0, atol=1e-5)


def test_optimize_for_inference_folds_bn_and_rewrites_blocks_without_changing_the_output() -> None:
    from s2mnet.models.fusion import (
        ConvAct,
        InferenceBFD,
        InferenceMRFSE,
        InferenceSSTM,
        optimize_for_inference,
    )

    torch.manual_seed(0)
    model = create_model("s2mnet", num_classes=2, **TINY)
    model(torch.randn(2, 3, 24, 24))  # non-trivial BN statistics
    model.eval()
    keys = list(model.state_dict())
    fast = optimize_for_inference(model)
    assert list(model.state_dict()) == keys  # the original (and its checkpoint keys) is untouched
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    kinds = {type(m) for m in fast.modules()}
    assert torch.nn.BatchNorm2d not in kinds
    assert {ConvAct, InferenceBFD, InferenceMRFSE, InferenceSSTM} <= kinds and not {MRFSE, BFD, SSTM} & kinds
    x = torch.randn(2, 3, 37, 29)  # batch 2: the SE scale is folded into the projection per sample
    with torch.no_grad():
        expected = model(x)
        for layout in (torch.channels_last, torch.contiguous_format):
            got = fast(x.contiguous(memory_format=layout))
            torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)
    # With autograd on, the rewritten blocks fall back to the original composition of ops.
    torch.testing.assert_close(fast(x).detach(), expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("routing", ["hard", "none"])
def test_inference_bfd_matches_the_block_for_every_routing(routing: str) -> None:
    from s2mnet.models.fusion import InferenceBFD, optimize_for_inference

    torch.manual_seed(0)
    block = BFD(12, 8, 8, routing)
    block(torch.randn(2, 12, 5, 6), torch.randn(2, 8, 11, 13))  # non-trivial BN statistics
    block.eval()
    fast = optimize_for_inference(block)
    assert isinstance(fast, InferenceBFD)
    deep, skip = torch.randn(2, 12, 5, 6), torch.randn(2, 8, 11, 13)
    with torch.no_grad():
        expected = block(deep, skip)
        layout = torch.channels_last
        got = fast(deep.contiguous(memory_format=layout), skip.contiguous(memory_format=layout))
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)
