"""SSTM, the spectral-selective token mixer (method.md §2, as the paper describes it).

``SSTM(x) = x + Dropout_0.1(LayerNorm_C(Conv1×1([x_spec ‖ x_gate])))`` with

* spectral branch ``x_spec``: band-limited FFT filter, see :mod:`s2mnet.models.spectral` for the exact
  definition of the central K×K block for any H, W;
* content-gated spatial branch ``x_gate = W_C · ELU(W_B · (s ⊙ σ(W_g s + b_g)))`` per token ``s``,
  with ``W_g`` C×C and the bottleneck ``W_B``: C→d, ``W_C``: d→C (d = 16).

Filter initialisation (the paper gives none): all ones, so at initialisation the spectral branch is an
exact ideal low-pass projection of its input onto the K×K band. It then carries the global, smooth
context the branch is meant to provide from the first step, it cannot amplify (norm ≤ input norm, a
well-conditioned start next to the unit-scale spatial branch), and every band coefficient receives a
gradient. The authors' mid-band Gaussian bump (0.25 ± 0.15 on unshifted, resized frequencies) would damp
the lowest frequencies, which hold most of the energy the method relies on (the ">93% in the K=32
block" claim); it is kept in the ``official`` flavour (:mod:`s2mnet.models.sstm_official`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from s2mnet.models.spectral import SPECTRAL_IMPLS, band_filter, hermitian_sign, symmetric_filter_index

SSTM_BRANCHES = ("both", "spectral", "spatial")
SPECTRAL_FILTERS = ("real", "complex")


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channel axis of a ``(B, C, H, W)`` tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class SpectralBranch(nn.Module):
    """Learnable per-channel real K×K filter on the central frequency band (method.md §2).

    The filter is point-symmetric and stored as its ``K·(K/2+1)`` independent values per channel
    (``weight``, shape ``(C, n)``); :attr:`filter` expands it to ``(C, K, K)``. A general real filter
    would add only redundant parameters: the real part of the inverse FFT keeps just its symmetric part.

    ``kind="complex"`` (the ``cfilter`` ablation, the other faithful reading of the paper's "learnable
    K×K filter"): a complex filter, of which the real output keeps the Hermitian part, so it is stored as
    that part: the same ``K·(K/2+1)`` real parts plus as many imaginary parts (``weight_imag``, odd in the
    frequency; the one at frequency 0 has no effect). It is initialised to zero, so at initialisation
    the complex branch computes exactly what the real one does.

    Args:
        channels: C.
        k: filter size K (fixed; cropped to ``min(K, H, W)`` on smaller maps).
        impl: ``"fft"`` (rfft2/irfft2) or ``"matmul"`` (partial DFT matrices; exports to ONNX).
        kind: ``"real"`` (zero-phase, default) or ``"complex"``.
    """

    def __init__(self, channels: int, k: int = 32, impl: str = "fft", kind: str = "real") -> None:
        super().__init__()
        if k < 1:
            raise ValueError(f"SSTM filter size k must be ≥ 1, got {k}")
        if impl not in SPECTRAL_IMPLS:
            raise ValueError(f"spectral_impl must be one of {SPECTRAL_IMPLS}, got {impl!r}")
        if kind not in SPECTRAL_FILTERS:
            raise ValueError(f"spectral_filter must be one of {SPECTRAL_FILTERS}, got {kind!r}")
        self.impl = impl
        index = symmetric_filter_index(k)
        self.register_buffer("index", index, persistent=False)
        self.weight = nn.Parameter(torch.ones(channels, int(index.max()) + 1))
        self.weight_imag: nn.Parameter | None = None
        if kind == "complex":
            self.register_buffer("sign", hermitian_sign(k), persistent=False)
            self.weight_imag = nn.Parameter(torch.zeros_like(self.weight))

    @property
    def filter(self) -> torch.Tensor:
        """The ``(C, K, K)`` filter on the centred block (index ``i`` ↔ frequency ``i − ⌊K/2⌋``); complex
        (Hermitian) for ``kind="complex"``."""
        if self.weight_imag is None:
            return self.weight[:, self.index]
        return torch.complex(self.weight[:, self.index], self.weight_imag[:, self.index] * self.sign)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return band_filter(x, self.filter, self.impl)


class GatedSpatialBranch(nn.Module):
    """Content-gated per-token branch (method.md §2): ``W_C·ELU(W_B·(s ⊙ σ(W_g s + b_g)))``, bottleneck d."""

    def __init__(self, channels: int, bottleneck: int = 16) -> None:
        super().__init__()
        if bottleneck < 1:
            raise ValueError(f"SSTM bottleneck must be ≥ 1, got {bottleneck}")
        self.gate = nn.Conv2d(channels, channels, 1)
        self.down = nn.Conv2d(channels, bottleneck, 1)
        self.up = nn.Conv2d(bottleneck, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gated = x * torch.sigmoid(self.gate(x))
        return self.up(F.elu(self.down(gated)))


class SSTM(nn.Module):
    """Spectral-selective token mixer (method.md §2).

    Args:
        channels: C (input and output).
        k: spectral band size K (default 32); stage-adaptive ``K_eff = min(K, H, W)``.
        bottleneck: d of the spatial branch (default 16).
        branches: ``"both"`` (paper), ``"spectral"`` or ``"spatial"`` only (ablations); with one branch
            the fusion conv maps C→C.
        dropout: dropout after the LayerNorm (0.1 in the paper).
        spectral_impl: ``"fft"`` or ``"matmul"`` (same result, same weights; see
            :mod:`s2mnet.models.spectral`). Can be switched after construction with
            :meth:`set_spectral_impl`.
        spectral_filter: ``"real"`` (zero-phase, default) or ``"complex"`` (see :class:`SpectralBranch`).
    """

    def __init__(
        self,
        channels: int,
        k: int = 32,
        bottleneck: int = 16,
        branches: str = "both",
        dropout: float = 0.1,
        spectral_impl: str = "fft",
        spectral_filter: str = "real",
    ) -> None:
        super().__init__()
        if branches not in SSTM_BRANCHES:
            raise ValueError(f"SSTM branches must be one of {SSTM_BRANCHES}, got {branches!r}")
        self.spectral = (
            SpectralBranch(channels, k, spectral_impl, spectral_filter) if branches != "spatial" else None
        )
        self.spatial = GatedSpatialBranch(channels, bottleneck) if branches != "spectral" else None
        n_branches = 2 if branches == "both" else 1
        self.fusion = nn.Conv2d(n_branches * channels, channels, 1)
        self.norm = LayerNorm2d(channels)
        self.dropout = nn.Dropout(dropout)

    def set_spectral_impl(self, impl: str) -> None:
        """Switch the spectral computation (``"fft"`` / ``"matmul"``); the weights are unchanged."""
        if impl not in SPECTRAL_IMPLS:
            raise ValueError(f"spectral_impl must be one of {SPECTRAL_IMPLS}, got {impl!r}")
        if self.spectral is not None:
            self.spectral.impl = impl

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = [branch(x) for branch in (self.spectral, self.spatial) if branch is not None]
        fused = self.fusion(torch.cat(parts, dim=1))
        return x + self.dropout(self.norm(fused))
