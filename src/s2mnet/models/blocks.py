"""Convolutional building blocks of S2M-Net: conv-BN-activation, MRF-SE (encoder), BFD and the plain
decoder stage (decoder).

All blocks follow method.md §1. Convolutions followed by BatchNorm carry no bias (the BN shift makes it
redundant; PyTorch convention), which is one reason our parameter count differs slightly from the
authors' Keras build (docs/model.md gives the full breakdown).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from s2mnet.models.depthwise import DepthwiseConv2d

BFD_ROUTINGS = ("soft", "hard", "none")
DECODERS = ("bfd", "plain")


class ConvBNAct(nn.Sequential):
    """``Conv2d(k×k, stride) → BatchNorm2d → activation`` with 'same' padding for odd ``k``.

    A depthwise convolution (MRF-SE's branches) is a :class:`~s2mnet.models.depthwise.DepthwiseConv2d`: the
    same ``nn.Conv2d`` parameters and function, with a faster weight gradient on the CPU.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
        act: type[nn.Module] | None = nn.ELU,
    ) -> None:
        depthwise = groups > 1 and groups == in_channels == out_channels and stride == 1
        conv = (
            DepthwiseConv2d(in_channels, kernel_size)  # same parameters, faster CPU weight gradient
            if depthwise
            else nn.Conv2d(
                in_channels, out_channels, kernel_size, stride, kernel_size // 2, groups=groups, bias=False
            )
        )
        layers: list[nn.Module] = [conv, nn.BatchNorm2d(out_channels)]
        if act is not None:
            layers.append(act(inplace=True))
        super().__init__(*layers)


class MRFSE(nn.Module):
    """Multi-receptive-field squeeze-excitation block (method.md §1, "MRF-SE block").

    ``f → conv1×1 → F=6f (BN, ELU) → depthwise 3×3 | 5×5 | 7×7 (BN, ELU each) → concat 3F → conv1×1 → F
    (BN, ELU) → SE(max(F/16, 8)) → conv1×1 → f (BN) → dropout → + input``.

    """

    def __init__(
        self,
        channels: int,
        expand_ratio: int = 6,
        kernels: tuple[int, ...] = (3, 5, 7),
        se_reduction: int = 16,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        hidden = channels * expand_ratio
        self.expand = ConvBNAct(channels, hidden, 1)
        self.branches = nn.ModuleList(ConvBNAct(hidden, hidden, k, groups=hidden) for k in kernels)
        self.fuse = ConvBNAct(hidden * len(kernels), hidden, 1)
        squeeze = max(hidden // se_reduction, 8)
        self.se = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(hidden, squeeze, 1),
            nn.ELU(inplace=True),
            nn.Conv2d(squeeze, hidden, 1),
            nn.Sigmoid(),
        )
        self.project = ConvBNAct(hidden, channels, 1, act=None)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.expand(x)
        h = self.fuse(torch.cat([branch(h) for branch in self.branches], dim=1))
        h = h * self.se(h)
        return x + self.dropout(self.project(h))


class _StraightThroughStep(torch.autograd.Function):
    """``β > 0.5`` in the forward pass, identity gradient in the backward pass (straight-through)."""

    @staticmethod
    def forward(ctx, beta: torch.Tensor) -> torch.Tensor:
        return (beta > 0.5).to(beta.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad


class BFD(nn.Module):
    """Boundary-focused decoder stage (method.md §1, "BFD").

    ``x = [up(deep) ‖ skip]``; ``region = 2×(conv3×3 + BN + ReLU)``;
    ``β = σ(conv1×1→1(ReLU(conv3×3→f/2(region))))``; ``refined = ReLU(BN(conv3×3(region·β)))``; then
    ``routing``:

    * ``"soft"`` (paper): ``blended = region·(1−β) + refined·β``;
    * ``"hard"``: the same with ``β`` thresholded at 0.5 (straight-through gradient, our choice: with the
      authors' plain threshold the routing passes no gradient to the boundary branch);
    * ``"none"``: no routing, ``blended = [region ‖ refined]`` (as the authors' code; fusion takes 2f).

    ``out = ReLU(BN(conv1×1 f(blended)))``. ``β`` gets no direct supervision.
    """

    def __init__(self, deep_channels: int, skip_channels: int, channels: int, routing: str = "soft") -> None:
        super().__init__()
        if routing not in BFD_ROUTINGS:
            raise ValueError(f"routing must be one of {BFD_ROUTINGS}, got {routing!r}")
        self.routing = routing
        self.region = nn.Sequential(
            ConvBNAct(deep_channels + skip_channels, channels, 3, act=nn.ReLU),
            ConvBNAct(channels, channels, 3, act=nn.ReLU),
        )
        self.boundary = nn.Sequential(
            nn.Conv2d(channels, channels // 2, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels // 2, 1, 1),
            nn.Sigmoid(),
        )
        self.refine = ConvBNAct(channels, channels, 3, act=nn.ReLU)
        fused_in = 2 * channels if routing == "none" else channels
        self.fusion = ConvBNAct(fused_in, channels, 1, act=nn.ReLU)

    def forward(self, deep: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        deep = F.interpolate(deep, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        region = self.region(torch.cat([deep, skip], dim=1))
        beta = self.boundary(region)
        refined = self.refine(region * beta)
        if self.routing == "none":
            blended = torch.cat([region, refined], dim=1)
        else:
            if self.routing == "hard":
                beta = _StraightThroughStep.apply(beta)
            blended = region + (refined - region) * beta
        return self.fusion(blended)


class PlainDecoder(nn.Module):
    """Plain U-Net decoder stage, the authors' "w/o BFD" ablation: no boundary branch, no routing.

    ``out = 2×(conv3×3 + BN + ReLU)([up(deep) ‖ skip])`` with a bilinear upsampling of ``deep`` to the
    skip's size; the two convolutions are exactly BFD's region path, so the stage has BFD's parameters
    minus its boundary, refine and fusion layers.
    """

    def __init__(self, deep_channels: int, skip_channels: int, channels: int) -> None:
        super().__init__()
        self.region = nn.Sequential(
            ConvBNAct(deep_channels + skip_channels, channels, 3, act=nn.ReLU),
            ConvBNAct(channels, channels, 3, act=nn.ReLU),
        )

    def forward(self, deep: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        deep = F.interpolate(deep, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.region(torch.cat([deep, skip], dim=1))
