"""Classic U-Net baseline (Ronneberger et al. 2015): four down/up levels, widths 64-128-256-512-1024,
double conv3×3 + BN + ReLU, max-pool down (ceil mode), transposed-conv up.

Size-agnostic: at odd sizes the upsampled map is one row/column larger than its skip and is cropped to it
before concatenation, so any H, W works."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class DoubleConv(nn.Sequential):
    """``2 × (conv3×3 + BN + ReLU)``."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class UNet(nn.Module):
    """U-Net returning logits ``(B, num_classes, H, W)`` for any H, W.

    Args:
        in_channels: image channels.
        num_classes: output channels.
        base_width: width of the first level (64); level i has ``base_width·2^i``.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 1, base_width: int = 64) -> None:
        super().__init__()
        self.config: dict[str, Any] = {
            "name": "unet",
            "in_channels": in_channels,
            "num_classes": num_classes,
            "base_width": base_width,
        }
        widths = [base_width * 2**i for i in range(5)]
        self.inc = DoubleConv(in_channels, widths[0])
        self.down = nn.ModuleList(DoubleConv(widths[i], widths[i + 1]) for i in range(4))
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2) for i in range(3, -1, -1)
        )
        self.up_conv = nn.ModuleList(DoubleConv(2 * widths[i], widths[i]) for i in range(3, -1, -1))
        self.out = nn.Conv2d(widths[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.inc(x)]
        for block in self.down:
            skips.append(block(F.max_pool2d(skips[-1], 2, ceil_mode=True)))
        h = skips.pop()
        for up, conv in zip(self.up, self.up_conv, strict=True):
            skip = skips.pop()
            h = up(h)[..., : skip.shape[-2], : skip.shape[-1]]  # ceil-mode pooling: crop the extra row/col
            h = conv(torch.cat([skip, h], dim=1))
        return self.out(h)
