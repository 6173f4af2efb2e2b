"""The ``official`` SSTM flavour: what the authors' TensorFlow code computes (method.md §2, "Where the
authors' code differs"), so users can compare it with the method as described.

Reproduced from the released Keras layer ``SpectralSelectiveTokenMixer`` (NHWC tensors):

* ``fft2d`` over the last two axes of the NHWC tensor, i.e. over (W, C), not (H, W);
* real and imaginary parts of the whole (unshifted) spectrum are bilinearly resized (half-pixel
  centres, no antialias = ``align_corners=False``) over the (H, W) axes to k×k, multiplied by a real
  ``(k, k, C)`` filter, resized back to H×W, inverse ``fft2d`` over (W, C), real part, LayerNorm;
* the spatial ("SSM") branch is ``LN(Dense_C(x · σ(Dense_C(x))))``; the d=16 bottleneck is unused;
* the two branches are fused by ``LN(Dense_2C→C)``, then an output LayerNorm, dropout, residual;
* stages 1–2 have no spatial branch (set by :class:`~s2mnet.models.s2mnet.S2MNet`);
* filter initialisation: radial Gaussian bump on unshifted frequencies, centre 0.25, σ 0.15, × 0.5.

One deliberate difference: the authors allocate a ``min(K, H, W)``-sized filter at build time (so their
parameter count depends on the input size); here the filter is always ``(K, K, C)`` and its top-left
``k×k`` corner is used, which is what their forward pass reads (``freq_weights[:k, :k, :]``). The
initial values match theirs whenever ``k = K``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def gaussian_bump(k: int, channels: int) -> torch.Tensor:
    """The authors' initial filter: ``0.5·exp(−(|f| − 0.25)² / (2·0.15²))`` on ``fftfreq(k)`` grids."""
    freqs = torch.fft.fftfreq(k, dtype=torch.float64)
    magnitude = torch.sqrt(freqs[:, None] ** 2 + freqs[None, :] ** 2)
    bump = 0.5 * torch.exp(-((magnitude - 0.25) ** 2) / (2 * 0.15**2))
    return bump[:, :, None].expand(k, k, channels).float().clone()


class OfficialSSTM(nn.Module):
    """SSTM as the authors' TensorFlow code computes it (see module docstring).

    Args:
        channels: C.
        k: filter size K.
        spatial: include the gated dense branch (the authors use it in stages 3–5 only).
        dropout: dropout before the residual add.
    """

    def __init__(self, channels: int, k: int = 32, spatial: bool = True, dropout: float = 0.1) -> None:
        super().__init__()
        self.weight = nn.Parameter(gaussian_bump(k, channels))
        self.spectral_norm = nn.LayerNorm(channels, eps=1e-6)
        self.use_spatial = spatial
        if spatial:
            self.spatial_proj = nn.Linear(channels, channels)
            self.spatial_gate = nn.Linear(channels, channels)
            self.spatial_norm = nn.LayerNorm(channels, eps=1e-6)
            self.fusion = nn.Linear(2 * channels, channels)
            self.fusion_norm = nn.LayerNorm(channels, eps=1e-6)
        self.out_norm = nn.LayerNorm(channels, eps=1e-6)
        self.dropout = nn.Dropout(dropout)

    def _spectral(self, x_nhwc: torch.Tensor) -> torch.Tensor:
        height, width = x_nhwc.shape[1:3]
        k = min(self.weight.shape[0], height, width)
        with torch.autocast(device_type=x_nhwc.device.type, enabled=False):
            spectrum = torch.fft.fft2(x_nhwc.float().to(torch.complex64))  # over (W, C), as fft2d on NHWC

            def resize(t: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
                t = t.permute(0, 3, 1, 2)  # resize the (H, W) axes, as tf.image.resize does
                return F.interpolate(t, size=size, mode="bilinear", align_corners=False).permute(0, 2, 3, 1)

            filt = self.weight[:k, :k, :].float()
            small_re = resize(spectrum.real, (k, k)) * filt
            small_im = resize(spectrum.imag, (k, k)) * filt
            back = torch.complex(resize(small_re, (height, width)), resize(small_im, (height, width)))
            y = torch.fft.ifft2(back).real.to(x_nhwc.dtype)
        return self.spectral_norm(y)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.permute(0, 2, 3, 1)
        fused = self._spectral(t)
        if self.use_spatial:
            gated = self.spatial_norm(self.spatial_proj(t * torch.sigmoid(self.spatial_gate(t))))
            fused = self.fusion_norm(self.fusion(torch.cat([fused, gated], dim=-1)))
        fused = self.dropout(self.out_norm(fused))
        return x + fused.permute(0, 3, 1, 2)


__all__ = ["OfficialSSTM", "gaussian_bump"]
