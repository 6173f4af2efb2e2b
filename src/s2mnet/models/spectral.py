"""Band-limited spectral filtering, the computational core of SSTM's spectral branch (method.md §2).

Definition (what "keep the central K×K block" means here, for any H, W, even or odd):

* ``K_eff = min(K, H, W)`` ("stage-adaptive").
* The band is the centred ``K_eff × K_eff`` block of the ``fftshift``-ed spectrum, i.e. the row
  frequencies ``u ∈ {−⌊K_eff/2⌋, …, ⌈K_eff/2⌉ − 1}`` (taken mod H) and the same column frequencies
  ``v`` (mod W). ``fftshift`` puts frequency 0 at index ``⌊H/2⌋``, so this is exactly
  ``fftshift(X)[⌊H/2⌋ − ⌊K_eff/2⌋ : … + K_eff]`` for both parities of H.
* The filter is real, one ``K × K`` grid per channel indexed the same way (index ``i`` ↔ frequency
  ``i − ⌊K/2⌋``); for a smaller map its centred ``K_eff × K_eff`` crop is used. Its size never depends
  on H, W. SSTM stores it point-symmetric (``w(f) = w(−f)`` wherever both lie in the block) as its
  independent values only, see :func:`symmetric_filter_index`.
* Output ``y = Re(ifft2(ifftshift(pad(crop(fftshift(fft2(x))) · w))))`` with orthonormal FFTs.
* A complex filter (``cfilter``, the other faithful reading of "learnable K×K filter") is computed by
  the same formula; taking the real part then keeps its Hermitian part ``(w(f) + conj(w(−f)))/2``, which
  can shift phases (a real filter is zero-phase). Every function below accepts a real or a complex
  ``weight``; the real path is unchanged.

Taking the real part is the same as filtering with the point-symmetrised filter
``(w(f) + w(−f)) / 2``, so for odd ``K_eff`` the output spectrum lies exactly in the K_eff × K_eff block
and for even ``K_eff`` in that block plus its mirror image (the unpaired ``−K_eff/2`` row and column
gain their ``+K_eff/2`` partners). Both implementations below compute the same ``y`` (tested in
float64 against the explicit fftshift/crop/pad reference):

* :func:`band_filter_fft`: ``rfft2`` → multiply the half spectrum by the symmetrised filter →
  ``irfft2``; cost O(C·HW·log HW).
* :func:`band_filter_matmul`: partial DFT matrices for the K band frequencies built in-graph from
  ``arange`` (so H, W stay dynamic in ONNX), four real matmuls; cost O(C·HW·K). Used for ONNX export
  because onnxruntime cannot run the exported ``DFT`` node with dynamic H, W.
"""

from __future__ import annotations

import math

import torch

SPECTRAL_IMPLS = ("fft", "matmul")


def symmetric_filter_index(k: int) -> torch.Tensor:
    """Index map expanding a point-symmetric real ``K × K`` filter from its independent values.

    The output ``Re(ifft2(X · w))`` only depends on ``(w(f) + w(−f)) / 2``, so a general real K×K filter
    carries about K²/2 redundant numbers. Frequencies ``f`` and ``−f`` that both lie in the centred block
    share one value; the unpaired edge row/column of an even K keeps its own. That leaves
    ``K·(K/2 + 1)`` values for even K (544 for K = 32: the size of the rfft half-plane block) and
    ``(K² + 1)/2`` for odd K.

    Returns:
        long ``(K, K)`` tensor ``idx`` with ``w = values[..., idx]``; ``idx.max() + 1`` values.
    """
    freqs = range(-(k // 2), k - k // 2)
    inside = set(freqs)
    keys: dict[tuple[int, int], int] = {}
    index = torch.empty(k, k, dtype=torch.long)
    for i, u in enumerate(freqs):
        for j, v in enumerate(freqs):
            key = min((u, v), (-u, -v)) if (-u in inside and -v in inside) else (u, v)
            index[i, j] = keys.setdefault(key, len(keys))
    return index


def hermitian_sign(k: int) -> torch.Tensor:
    """Signs that expand the imaginary part of a Hermitian ``K × K`` filter from the same independent values.

    A Hermitian filter has ``Im w(−f) = −Im w(f)``: with ``idx = symmetric_filter_index(k)``,
    ``Im w = values[..., idx] · sign`` where ``sign`` is +1 at the position that defines a value, −1 at its
    mirror and 0 at frequency 0 (its own mirror, so real). Unpaired edge frequencies of an even K keep +1.
    """
    freqs = range(-(k // 2), k - k // 2)
    inside = set(freqs)
    sign = torch.empty(k, k)
    for i, u in enumerate(freqs):
        for j, v in enumerate(freqs):
            paired = -u in inside and -v in inside
            sign[i, j] = 0.0 if u == v == 0 else (1.0 if not paired or (u, v) <= (-u, -v) else -1.0)
    return sign


def band_values_used(k: int, keff: int) -> int:
    """How many of the ``K·(K/2+1)`` independent filter values of :func:`symmetric_filter_index` a map
    with ``K_eff = keff`` uses (the others never receive a gradient at that map size).

    Example: K = 32 at 352² input, stage 4 (22², K_eff 22) uses 264 of 544 values and stage 5 (11²) 61;
    with 80 and 128 channels that leaves 80·280 + 128·483 = 84,224 filter parameters without gradient.
    """
    keff = min(k, keff)
    start = k // 2 - keff // 2
    crop = symmetric_filter_index(k)[start : start + keff, start : start + keff]
    return int(crop.unique().numel())


def effective_k(k: int, height: int, width: int) -> int:
    """``K_eff = min(K, H, W)``, traceable with symbolic sizes."""
    return torch.sym_min(k, torch.sym_min(height, width))


def half_spectrum_filter(weight: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The filter of :func:`band_filter_fft` on the rfft half-plane: ``(C, H, ⌊K_eff/2⌋ + 1)``.

    The point-symmetrised filter ``(w(f) + w(−f))/2`` is built on the small frequency grid ``−m … m``
    (``m = ⌊K_eff/2⌋``) and folded onto the H rows with a scatter-add, so frequencies that alias on the grid
    (``±H/2`` when ``K_eff = H`` is even) add up exactly as they do on the full grid.

    Args:
        weight: real or complex ``(C, K, K)`` filter on the centred block.
        height, width: H, W of the filtered map.
    """
    k = weight.shape[-1]
    keff = min(k, height, width)
    m = keff // 2
    start = k // 2 - m
    # Filter on frequencies −m … m (size 2m+1, symmetric); for even K_eff the +m row/column starts at 0.
    grid = weight.new_zeros(weight.shape[0], 2 * m + 1, 2 * m + 1)
    grid[:, :keff, :keff] = weight[:, start : start + keff, start : start + keff]
    mirrored = grid.flip(-2, -1)  # flipping the symmetric grid negates the frequency
    if weight.is_complex():  # Hermitian part: the real output only sees (w(f) + conj(w(−f)))/2
        mirrored = mirrored.conj()
    symmetric = 0.5 * (grid + mirrored)
    columns = symmetric[..., m:]  # v = 0 … m
    if 2 * m == width:  # column +m is the Nyquist column and also holds frequency −m
        columns = torch.cat([columns[..., :m], columns[..., m:] + symmetric[..., :1]], dim=-1)
    rows = (torch.arange(-m, m + 1, device=weight.device)) % height
    return columns.new_zeros(weight.shape[0], height, m + 1).index_add(1, rows, columns)


def band_filter_fft(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Band-limited filtering via ``rfft2``/``irfft2`` (see module docstring).

    Only the ``⌊K_eff/2⌋ + 1`` lowest rfft columns are multiplied (``irfft2`` zero-pads the rest), by
    :func:`half_spectrum_filter`.

    Args:
        x: real ``(B, C, H, W)``.
        weight: real or complex ``(C, K, K)`` filter on the centred block.

    Returns:
        real ``(B, C, H, W)``.
    """
    height, width = x.shape[-2:]
    filt = half_spectrum_filter(weight, height, width)
    spectrum = torch.fft.rfft2(x, norm="ortho")[..., : filt.shape[-1]]
    return torch.fft.irfft2(spectrum * filt, s=(height, width), norm="ortho")


def _dft_rows(k: int, keff: int, size: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``cos`` and ``sin`` of ``2π f n / size`` for the K filter frequencies ``f`` (rows outside the
    K_eff band are zero) and ``n = 0 … size−1``, scaled by ``1/√size`` (orthonormal DFT)."""
    freqs = torch.arange(k, device=like.device) - k // 2
    valid = (freqs >= -(keff // 2)) & (freqs < keff - keff // 2)
    positions = torch.arange(size, device=like.device)
    # `size` as a tensor (not a Python/symbolic int) keeps every op exportable with dynamic H, W.
    size_t = positions[-1:] + 1
    # Reduce f·n mod size in integers first, so the angle stays in [0, 2π) and float32 keeps precision.
    phase = torch.remainder(freqs[:, None] * positions[None, :], size_t).to(like.dtype)
    angle = phase * (2.0 * math.pi) / size_t.to(like.dtype)
    scale = valid.to(like.dtype)[:, None] / torch.sqrt(size_t.to(like.dtype))
    return torch.cos(angle) * scale, torch.sin(angle) * scale


def band_filter_matmul(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Band-limited filtering with partial DFT matrices; equals :func:`band_filter_fft`.

    With ``F_u = cos − i·sin`` (K × H) and ``F_v`` (K × W): ``X = F_u x F_vᵀ`` (the band only),
    ``Y = X · w``, ``y = Re(F_uᴴ Y conj(F_v))``; complex products are written as real block matmuls.

    Args:
        x: real ``(B, C, H, W)``.
        weight: real or complex ``(C, K, K)``.
    """
    height, width = x.shape[-2:]
    k = weight.shape[-1]
    keff = effective_k(k, height, width)
    cos_u, sin_u = _dft_rows(k, keff, height, x)
    cos_v, sin_v = _dft_rows(k, keff, width, x)
    dft_v = torch.cat([cos_v, -sin_v], dim=0)  # (2K, W)
    t = x @ dft_v.T  # (B, C, H, 2K) = [Re | Im] of x·F_vᵀ
    blocks = torch.cat([cos_u, sin_u], dim=0) @ t  # (B, C, 2K, 2K): [[cos·Re, cos·Im], [sin·Re, sin·Im]]
    x_re = blocks[..., :k, :k] + blocks[..., k:, k:]  # Re(F_u·t) = cos·Re + sin·Im
    x_im = blocks[..., :k, k:] - blocks[..., k:, :k]  # Im(F_u·t) = cos·Im − sin·Re
    if weight.is_complex():
        y_re = x_re * weight.real - x_im * weight.imag
        y_im = x_re * weight.imag + x_im * weight.real
    else:
        y_re, y_im = x_re * weight, x_im * weight
    inverse_u = torch.cat([cos_u.T, sin_u.T], dim=1)  # (H, 2K)
    p = inverse_u @ torch.cat([torch.cat([y_re, y_im], dim=-1), torch.cat([-y_im, y_re], dim=-1)], dim=-2)
    return p @ dft_v  # (B, C, H, W) = Re(P · conj(F_v))


def band_filter(x: torch.Tensor, weight: torch.Tensor, impl: str = "fft") -> torch.Tensor:
    """Dispatch to :func:`band_filter_fft` or :func:`band_filter_matmul`, always in ≥ float32.

    Under autocast the computation runs in an autocast-disabled region in float32 (FFTs in half
    precision lose the small high-frequency coefficients); float64 inputs stay float64.
    """
    compute = torch.promote_types(x.dtype, torch.float32)
    weight_dtype = compute  # a complex filter stays complex, at the same precision
    if weight.is_complex():
        weight_dtype = torch.complex128 if compute == torch.float64 else torch.complex64
    fn = band_filter_fft if impl == "fft" else band_filter_matmul
    if torch.is_autocast_enabled(x.device.type):
        with torch.autocast(device_type=x.device.type, enabled=False):
            return fn(x.to(compute), weight.to(weight_dtype)).to(x.dtype)
    return fn(x.to(compute), weight.to(weight_dtype)).to(x.dtype)
