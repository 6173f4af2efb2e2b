"""SSTM: spectral band definition, exactness of both implementations, global receptive field."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from s2mnet.models import SSTM, OfficialSSTM
from s2mnet.models.spectral import band_filter_fft, band_filter_matmul, symmetric_filter_index

SIZES = [(33, 47, 8), (32, 32, 8), (7, 9, 8), (8, 6, 8), (22, 22, 32), (11, 11, 32), (40, 17, 5), (2, 3, 4)]


def explicit_reference(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """The paper's description, literally: fft2 → fftshift → crop K_eff×K_eff → ·w → pad → ifftshift
    → ifft2 → real part."""
    height, width = x.shape[-2:]
    k = w.shape[-1]
    keff = min(k, height, width)
    start = k // 2 - keff // 2
    w = w[:, start : start + keff, start : start + keff]
    spectrum = torch.fft.fftshift(torch.fft.fft2(x, norm="ortho"), dim=(-2, -1))
    r0, c0 = height // 2 - keff // 2, width // 2 - keff // 2
    padded = torch.zeros_like(spectrum)
    padded[..., r0 : r0 + keff, c0 : c0 + keff] = spectrum[..., r0 : r0 + keff, c0 : c0 + keff] * w
    return torch.fft.ifft2(torch.fft.ifftshift(padded, dim=(-2, -1)), norm="ortho").real


@pytest.mark.parametrize(("height", "width", "k"), SIZES)
def test_fft_and_matmul_equal_explicit_reference_float64(height: int, width: int, k: int) -> None:
    gen = torch.Generator().manual_seed(height * 100 + width)
    x = torch.randn(2, 3, height, width, dtype=torch.float64, generator=gen)
    w = torch.randn(3, k, k, dtype=torch.float64, generator=gen)
    expected = explicit_reference(x, w)
    torch.testing.assert_close(band_filter_fft(x, w), expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(band_filter_matmul(x, w), expected, rtol=0, atol=1e-12)


def test_exhaustive_small_sizes_including_aliased_nyquist_bands() -> None:
    # K_eff = H or W (even) makes the frequencies ±K_eff/2 coincide on the grid: the hardest case.
    gen = torch.Generator().manual_seed(7)
    for height in range(1, 9):
        for width in range(1, 9):
            for k in (1, 2, 3, 4, 7):
                x = torch.randn(1, 2, height, width, dtype=torch.float64, generator=gen)
                w = torch.randn(2, k, k, dtype=torch.float64, generator=gen)
                expected = explicit_reference(x, w)
                torch.testing.assert_close(band_filter_fft(x, w), expected, rtol=0, atol=1e-12)
                torch.testing.assert_close(band_filter_matmul(x, w), expected, rtol=0, atol=1e-12)


def _band_mask(height: int, width: int, keff: int) -> torch.Tensor:
    """Grid mask of the centred K_eff×K_eff block ∪ its point reflection."""
    freqs = torch.arange(keff) - keff // 2
    mask = torch.zeros(height, width, dtype=torch.bool)
    mask[(freqs % height)[:, None], (freqs % width)[None, :]] = True
    mask[(-freqs % height)[:, None], (-freqs % width)[None, :]] = True
    return mask


@pytest.mark.parametrize(("height", "width", "k"), [(31, 29, 7), (40, 36, 8), (12, 20, 32)])
def test_spectral_branch_output_has_no_energy_outside_band(height: int, width: int, k: int) -> None:
    torch.manual_seed(0)
    sstm = SSTM(4, k=k).double()
    with torch.no_grad():
        sstm.spectral.weight.normal_()
    x = torch.randn(1, 4, height, width, dtype=torch.float64)
    spectrum = torch.fft.fft2(sstm.spectral(x), norm="ortho")
    keff = min(k, height, width)
    outside = spectrum[..., ~_band_mask(height, width, keff)]
    inside = spectrum[..., _band_mask(height, width, keff)]
    assert outside.abs().max() < 1e-12
    assert inside.abs().max() > 1e-2
    if keff % 2 == 1:  # odd K_eff: the block is its own reflection, exactly K_eff×K_eff frequencies
        assert int(_band_mask(height, width, keff).sum()) == keff * keff


def test_symmetric_filter_is_point_symmetric_with_k_times_half_k_plus_one_values() -> None:
    for k, expected in [(32, 32 * 17), (16, 16 * 9), (4, 12), (7, 25), (1, 1)]:
        index = symmetric_filter_index(k)
        assert int(index.max()) + 1 == expected
        assert len(torch.unique(index)) == expected
    index = symmetric_filter_index(8)  # frequencies −4..3: the inner −3..3 square is point-symmetric
    inner = index[1:, 1:]
    assert torch.equal(inner, inner.flip(0, 1))


def test_one_sstm_has_global_receptive_field_unlike_a_3x3_conv() -> None:
    torch.manual_seed(0)
    sstm = SSTM(4, k=8).eval()
    conv = torch.nn.Conv2d(4, 4, 3, padding=1)
    for layer in (sstm, conv):
        x = torch.randn(1, 4, 33, 33, requires_grad=True)
        layer(x)[0, 0, 16, 16].backward()
        corner_grad = x.grad[0, :, 0, 0].abs().sum().item()
        if layer is sstm:
            assert corner_grad > 1e-6
        else:
            assert corner_grad == 0.0


def test_filter_parameter_count_is_independent_of_input_size() -> None:
    sstm = SSTM(16, k=32, bottleneck=16)
    before = {n: p.shape for n, p in sstm.named_parameters()}
    for size in [(5, 7), (64, 64), (33, 47)]:
        sstm(torch.randn(1, 16, *size))
        assert {n: p.shape for n, p in sstm.named_parameters()} == before
    # K·(K/2+1) filter + gate C²+C + bottleneck (C·d+d + d·C+C) + fusion 2C·C+C + LayerNorm 2C
    c, d = 16, 16
    assert (
        sum(p.numel() for p in sstm.parameters())
        == 544 * c + c * c + c + c * d + d + d * c + c + 2 * c * c + c + 2 * c
    )


def test_sstm_shape_dtype_and_implementations_agree_in_float32() -> None:
    torch.manual_seed(0)
    sstm = SSTM(8, k=16).eval()
    x = torch.randn(2, 8, 21, 30)
    y_fft = sstm(x)
    sstm.set_spectral_impl("matmul")
    y_matmul = sstm(x)
    assert y_fft.shape == x.shape and y_fft.dtype == torch.float32
    torch.testing.assert_close(y_fft, y_matmul, rtol=0, atol=1e-5)


def test_spectral_branch_runs_in_float32_under_autocast() -> None:
    sstm = SSTM(4, k=8).eval()
    x = torch.randn(1, 4, 16, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = sstm.spectral(x.bfloat16())
    expected = sstm.spectral(x.bfloat16().float())
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), expected, rtol=1e-2, atol=1e-2)


def test_spectral_only_and_spatial_only_variants() -> None:
    x = torch.randn(1, 8, 12, 10)
    spectral, spatial = SSTM(8, k=8, branches="spectral"), SSTM(8, k=8, branches="spatial")
    assert spectral.spatial is None and spatial.spectral is None
    assert spectral(x).shape == spatial(x).shape == x.shape
    with pytest.raises(ValueError, match="branches must be one of"):
        SSTM(8, branches="both_and_more")
    with pytest.raises(ValueError, match="spectral_impl must be one of"):
        SSTM(8, spectral_impl="dft")


def test_official_flavour_ffts_over_width_and_channels() -> None:
    torch.manual_seed(0)
    official = OfficialSSTM(6, k=8, spatial=False).eval()
    assert official.weight.shape == (8, 8, 6)
    # The authors' init: 0.5·Gaussian bump at |f| = 0.25 (σ 0.15) on unshifted frequencies.
    assert official.weight[0, 0, 0].item() == pytest.approx(
        0.5 * torch.exp(torch.tensor(-(0.25**2) / 0.045)).item()
    )
    assert not hasattr(official, "spatial_proj")
    x = torch.randn(1, 6, 10, 12)
    assert official(x).shape == x.shape
    with_spatial = OfficialSSTM(6, k=8, spatial=True)
    # No bottleneck: the dense branch is C→C twice, fusion 2C→C (as in the authors' layer).
    assert with_spatial.spatial_proj.weight.shape == with_spatial.spatial_gate.weight.shape == (6, 6)
    assert with_spatial(torch.randn(2, 6, 5, 7)).shape == (2, 6, 5, 7)


def _tf_resize_bilinear(a: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """NumPy transcription of TensorFlow's ``tf.image.resize(..., "bilinear")`` on NHWC (half-pixel
    centres, no antialias): ``in = (out + 0.5)·scale − 0.5``, lower = max(⌊in⌋, 0), upper =
    min(⌈in⌉, n − 1), lerp = in − ⌊in⌋."""

    def weights(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
        floor = np.floor(pos)
        lower = np.maximum(floor, 0).astype(int)
        upper = np.minimum(np.ceil(pos), n_in - 1).astype(int)
        return lower, upper, pos - floor

    lo, hi, t = weights(a.shape[1], out_h)
    a = a[:, lo] + (a[:, hi] - a[:, lo]) * t[None, :, None, None]
    lo, hi, t = weights(a.shape[2], out_w)
    return a[:, :, lo] + (a[:, :, hi] - a[:, :, lo]) * t[None, None, :, None]


def test_official_spectral_path_matches_a_numpy_transcription_of_the_authors_code() -> None:
    torch.manual_seed(0)
    official = OfficialSSTM(5, k=8, spatial=False).eval()
    x = torch.randn(2, 5, 12, 10)
    nhwc = x.permute(0, 2, 3, 1).numpy().astype(np.float64)
    spectrum = np.fft.fft2(nhwc, axes=(2, 3))  # tf.signal.fft2d on NHWC: the last two axes, (W, C)
    k = min(8, 12, 10)
    filt = official.weight.detach().numpy()[:k, :k, :]
    small = (
        _tf_resize_bilinear(spectrum.real, k, k) * filt + 1j * _tf_resize_bilinear(spectrum.imag, k, k) * filt
    )
    back = _tf_resize_bilinear(small.real, 12, 10) + 1j * _tf_resize_bilinear(small.imag, 12, 10)
    y = np.fft.ifft2(back, axes=(2, 3)).real
    y = (y - y.mean(-1, keepdims=True)) / np.sqrt(y.var(-1, keepdims=True) + 1e-6)  # LayerNorm, eps 1e-6
    got = official._spectral(x.permute(0, 2, 3, 1)).detach().numpy()
    np.testing.assert_allclose(got, y, atol=2e-4)


@pytest.mark.parametrize(
    ("branches", "impl", "size"),
    [
        ("both", "fft", (37, 29)),
        ("spectral", "fft", (9, 12)),
        ("spatial", "fft", (15, 15)),
        ("both", "matmul", (21, 17)),
    ],
)
def test_inference_sstm_matches_the_module_in_eval(branches: str, impl: str, size: tuple[int, int]) -> None:
    from s2mnet.models.fusion import InferenceSSTM, optimize_for_inference

    torch.manual_seed(0)
    module = SSTM(12, k=10, bottleneck=4, branches=branches, spectral_impl=impl).eval()
    if module.spectral is not None:
        with torch.no_grad():
            module.spectral.weight.uniform_(-1.0, 2.0)  # a filter that is not the all-ones projection
    fast = optimize_for_inference(module)
    assert isinstance(fast, InferenceSSTM)
    x = torch.randn(2, 12, *size)
    with torch.no_grad():
        expected = module(x)
        for _ in range(2):  # the second call uses the cached half-spectrum filter
            got = fast(x.contiguous(memory_format=torch.channels_last))
            torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)
        torch.testing.assert_close(fast(x), expected, atol=1e-4, rtol=0)  # NCHW input: the original path
