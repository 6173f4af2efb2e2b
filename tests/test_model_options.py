"""Model options of the ablation arms: plain decoder, complex SSTM filter, per-stage K (kfull), MONAI peer."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import torch
from torch import nn

from s2mnet.models import S2MNet, create_model
from s2mnet.models.blocks import BFD, PlainDecoder
from s2mnet.models.peers import MONAI_UNET, MonaiUNet
from s2mnet.models.s2mnet import full_spectrum_k
from s2mnet.models.spectral import band_filter, band_values_used, symmetric_filter_index
from s2mnet.models.sstm import SpectralBranch

TINY = {"widths": [8, 8, 8, 8, 16], "stem_width": 8, "k": 8, "bottleneck": 4}
WIDTHS = (24, 32, 64, 80, 128)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """One intra-op thread: several times faster than two spinning ones on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def all_get_gradients(model: nn.Module, x: torch.Tensor) -> bool:
    model(x).square().mean().backward()
    return all(p.grad is not None for p in model.parameters())


def test_defaults_are_unchanged() -> None:
    model = S2MNet()
    assert n_params(model) == 4_745_872  # docs/choices.md
    assert all(isinstance(stage, BFD) for stage in model.decoder)
    assert all(m.weight_imag is None for m in model.modules() if isinstance(m, SpectralBranch))
    assert model.config["k"] == 32 and model.config["decoder"] == "bfd"
    assert model.config["spectral_filter"] == "real"


# --- plain decoder (the authors' "w/o BFD") ---------------------------------------------------------


def test_plain_decoder_block_is_up_concat_two_convs() -> None:
    block = PlainDecoder(16, 8, 8).eval()
    # conv3×3 (16+8 → 8, no bias) + BN (2·8) + conv3×3 (8 → 8) + BN
    assert n_params(block) == 24 * 8 * 9 + 16 + 8 * 8 * 9 + 16
    deep, skip = torch.randn(2, 16, 5, 6), torch.randn(2, 8, 9, 11)
    up = nn.functional.interpolate(deep, size=(9, 11), mode="bilinear", align_corners=False)
    with torch.no_grad():
        assert torch.equal(block(deep, skip), block.region(torch.cat([up, skip], dim=1)))
        assert block(deep, skip).shape == (2, 8, 9, 11)


def test_plain_decoder_model_by_hand() -> None:
    plain = create_model("s2mnet_plaindec")
    assert all(isinstance(stage, PlainDecoder) for stage in plain.decoder)

    def bfd_extra(ch: int) -> int:  # boundary head, refine conv-BN, fusion 1×1 conv-BN
        return (ch * (ch // 2) * 9 + ch // 2) + (ch // 2 + 1) + (9 * ch * ch + 2 * ch) + (ch * ch + 2 * ch)

    assert n_params(S2MNet()) - n_params(plain) == sum(bfd_extra(c) for c in WIDTHS[3::-1])
    tiny = create_model("s2mnet_plaindec", num_classes=2, **TINY)
    assert tiny(torch.randn(2, 3, 21, 19)).shape == (2, 2, 21, 19)
    assert all_get_gradients(tiny, torch.randn(2, 3, 21, 19))
    with pytest.raises(ValueError, match="decoder must be one of"):
        S2MNet(decoder="unet")


# --- complex SSTM filter ------------------------------------------------------------------------------


def reference_band_filter(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``Re(ifft2(ifftshift(pad(crop(fftshift(fft2(x))) · w))))`` written out (module docstring)."""
    height, width = x.shape[-2:]
    k = weight.shape[-1]
    keff = min(k, height, width)
    spectrum = torch.fft.fftshift(torch.fft.fft2(x, norm="ortho"), dim=(-2, -1))
    top, left, start = height // 2 - keff // 2, width // 2 - keff // 2, k // 2 - keff // 2
    out = torch.zeros_like(spectrum)
    crop = (..., slice(top, top + keff), slice(left, left + keff))
    out[crop] = spectrum[crop] * weight[:, start : start + keff, start : start + keff]
    return torch.fft.ifft2(torch.fft.ifftshift(out, dim=(-2, -1)), norm="ortho").real


@pytest.mark.parametrize(("k", "size"), [(8, (16, 12)), (8, (8, 8)), (7, (9, 10)), (8, (5, 7)), (6, (6, 9))])
def test_complex_filter_matches_the_formula_in_both_implementations(k: int, size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    branch = SpectralBranch(3, k, kind="complex").double()
    with torch.no_grad():
        branch.weight.normal_()
        branch.weight_imag.normal_()
    x = torch.randn(2, 3, *size, dtype=torch.float64)
    expected = reference_band_filter(x, branch.filter)
    for impl in ("fft", "matmul"):
        assert torch.allclose(band_filter(x, branch.filter, impl), expected, atol=1e-10), impl
    real_only = reference_band_filter(x, branch.filter.real)
    assert not torch.allclose(expected, real_only)  # the imaginary part shifts phases


def test_complex_filter_is_hermitian_and_starts_as_the_real_one() -> None:
    k = 8
    branch = SpectralBranch(4, k, kind="complex")
    real = SpectralBranch(4, k)
    # 2 · K·(K/2 + 1) parameters per channel (real and imaginary parts of the independent values)
    assert n_params(branch) == 2 * 4 * k * (k // 2 + 1) and n_params(real) == 4 * k * (k // 2 + 1)
    x = torch.randn(2, 4, 12, 12)
    assert torch.equal(branch(x), real(x))  # imaginary parts start at zero
    with torch.no_grad():
        branch.weight_imag.normal_()
    w = branch.filter
    freqs = range(-(k // 2), k - k // 2)
    for i, u in enumerate(freqs):
        for j, v in enumerate(freqs):
            if -u in freqs and -v in freqs:
                mirror = w[:, -u + k // 2, -v + k // 2]
                assert torch.equal(w[:, i, j], mirror.conj())
    branch(x).square().sum().backward()
    assert branch.weight_imag.grad is not None and branch.weight_imag.grad.abs().sum() > 0


def test_complex_filter_model_by_hand() -> None:
    cfilter = create_model("s2mnet_cfilter")
    assert n_params(cfilter) - n_params(S2MNet()) == sum(WIDTHS) * 544  # K = 32: 32 · 17 values
    tiny = create_model("s2mnet_cfilter", num_classes=1, **TINY)
    assert all_get_gradients(tiny, torch.randn(2, 3, 33, 30))
    with pytest.raises(ValueError, match="spectral_filter must be one of"):
        S2MNet(spectral_filter="quaternion")


# --- per-stage K: kfull --------------------------------------------------------------------------------


def test_full_spectrum_k_and_idle_filter_values() -> None:
    assert full_spectrum_k(128) == [64, 32, 16, 8, 4]
    assert full_spectrum_k(352) == [176, 88, 44, 22, 11]
    assert full_spectrum_k(100) == [50, 25, 13, 7, 4]
    # K = 32 at 352²: stages 4 (22², 80 ch) and 5 (11², 128 ch) use 264 and 61 of 544 values
    assert band_values_used(32, 22) == 264 and band_values_used(32, 11) == 61
    assert 80 * (544 - 264) + 128 * (544 - 61) == 84_224
    for side in full_spectrum_k(352):  # kfull: every value is used at the training size
        assert band_values_used(side, side) == int(symmetric_filter_index(side).max()) + 1


def test_kfull_model_by_hand_and_every_filter_value_learns() -> None:
    ks = full_spectrum_k(128)
    model = create_model("s2mnet", k=ks)
    spectral = [m for m in model.modules() if isinstance(m, SpectralBranch)]
    assert [m.weight.shape for m in spectral] == [
        (c, k * (k // 2 + 1)) for c, k in zip(WIDTHS, ks, strict=True)
    ]
    assert json.loads(json.dumps(model.config))["k"] == ks
    assert n_params(create_model(**model.config)) == n_params(model)
    tiny = create_model("s2mnet", **{**TINY, "k": full_spectrum_k(32)})
    tiny(torch.randn(2, 3, 32, 32)).square().mean().backward()
    for branch in (m for m in tiny.modules() if isinstance(m, SpectralBranch)):
        assert (branch.weight.grad != 0).all()
    # with a band larger than the map, the values outside the map's band get exactly no gradient
    branch = SpectralBranch(3, 8)
    branch(torch.randn(2, 3, 5, 5)).square().sum().backward()
    assert int((branch.weight.grad == 0).sum()) == 3 * (40 - band_values_used(8, 5))
    with pytest.raises(ValueError, match="five"):
        S2MNet(k=[8, 8])


# --- MONAI peer -----------------------------------------------------------------------------------------


def test_monai_unet_peer_takes_any_size() -> None:
    from monai.networks.nets import UNet

    model = create_model("monai_unet", in_channels=1, num_classes=2)
    assert isinstance(model, MonaiUNet)
    assert n_params(model) == n_params(UNet(spatial_dims=2, in_channels=1, out_channels=2, **MONAI_UNET))
    x = torch.randn(2, 1, 37, 45)
    assert model(x).shape == (2, 2, 37, 45)
    assert all_get_gradients(model, x)
    model.eval()
    with torch.no_grad():  # at a multiple of 16 nothing is padded: MONAI's network output as is
        x = torch.randn(1, 1, 32, 48)
        assert torch.equal(model(x), model.net(x))
    assert create_model(**model.config).config == model.config


def test_inference_fusion_keeps_the_new_options() -> None:
    import copy

    from s2mnet.models import optimize_for_inference

    for name in ("s2mnet_cfilter", "s2mnet_plaindec"):
        model = create_model(name, **TINY).eval()
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, SpectralBranch) and module.weight_imag is not None:
                    module.weight_imag.normal_()
            x = torch.randn(1, 3, 40, 36).contiguous(memory_format=torch.channels_last)
            fast = optimize_for_inference(copy.deepcopy(model).to(memory_format=torch.channels_last))
            assert torch.allclose(fast(x), model(x), atol=1e-5), name
