"""S2M-Net (PAPER.md §1): stem, five encoder stages (stride-2 conv + MRF-SE + token mixer), four
boundary-focused decoder stages, head. Accepts any H, W and returns logits of the input's size."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from s2mnet.models.attention import AttentionMixer, matched_mlp_hidden
from s2mnet.models.blocks import BFD, MRFSE, ConvBNAct
from s2mnet.models.sstm import SSTM
from s2mnet.models.sstm_official import OfficialSSTM

MIXERS = ("sstm", "attention", "none")
SSTM_FLAVOURS = ("paper", "official")


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


class EncoderStage(nn.Sequential):
    """``conv3×3 stride 2 + BN + ELU → MRF-SE → token mixer`` (PAPER.md §1)."""

    def __init__(
        self, in_channels: int, channels: int, mrfse: bool, mixer: nn.Module, dropout: float
    ) -> None:
        super().__init__(
            ConvBNAct(in_channels, channels, 3, stride=2),
            MRFSE(channels, dropout=dropout) if mrfse else nn.Identity(),
            mixer,
        )


class S2MNet(nn.Module):
    """S2M-Net for 2-D segmentation; ``forward(x)`` returns logits ``(B, num_classes, H, W)``.

    Args:
        in_channels: image channels.
        num_classes: output channels (1 = binary with sigmoid; C = multi-class with softmax).
        widths: encoder stage widths (five); the decoder mirrors stages 4…1.
        stem_width: stem channels (16).
        mixer: ``"sstm"`` (paper), ``"attention"`` (parameter-matched multi-head self-attention over all
            tokens, same place) or ``"none"``.
        k: SSTM band size K (32).
        bottleneck: SSTM spatial-branch bottleneck d (16).
        sstm_branches: ``"both"``, ``"spectral"`` or ``"spatial"``.
        sstm_flavour: ``"paper"`` (as described) or ``"official"`` (as the authors' TF code computes).
        spectral_impl: ``"fft"`` or ``"matmul"`` (identical output; ``matmul`` exports to ONNX).
        routing: BFD routing ``"soft"`` (paper), ``"hard"`` or ``"none"``.
        mrfse: use the MRF-SE blocks (False: identity, for the ablation).
        attention_heads: heads of the attention mixer.
        dropout: dropout in MRF-SE and the mixers (0.1).
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 1,
        widths: tuple[int, ...] | list[int] = (24, 32, 64, 80, 128),
        stem_width: int = 16,
        mixer: str = "sstm",
        k: int = 32,
        bottleneck: int = 16,
        sstm_branches: str = "both",
        sstm_flavour: str = "paper",
        spectral_impl: str = "fft",
        routing: str = "soft",
        mrfse: bool = True,
        attention_heads: int = 4,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if in_channels < 1 or num_classes < 1:
            raise ValueError(f"in_channels and num_classes must be ≥ 1, got {in_channels}, {num_classes}")
        if len(widths) != 5:
            raise ValueError(f"S2MNet needs five encoder widths, got {list(widths)}")
        if mixer not in MIXERS:
            raise ValueError(f"mixer must be one of {MIXERS}, got {mixer!r}")
        if sstm_flavour not in SSTM_FLAVOURS:
            raise ValueError(f"sstm_flavour must be one of {SSTM_FLAVOURS}, got {sstm_flavour!r}")
        self.config: dict[str, Any] = {
            "name": "s2mnet",
            "in_channels": in_channels,
            "num_classes": num_classes,
            "widths": list(widths),
            "stem_width": stem_width,
            "mixer": mixer,
            "k": k,
            "bottleneck": bottleneck,
            "sstm_branches": sstm_branches,
            "sstm_flavour": sstm_flavour,
            "spectral_impl": spectral_impl,
            "routing": routing,
            "mrfse": mrfse,
            "attention_heads": attention_heads,
            "dropout": dropout,
        }

        def make_mixer(stage: int, channels: int) -> nn.Module:
            if mixer == "none":
                return nn.Identity()
            if sstm_flavour == "official":
                sstm: nn.Module = OfficialSSTM(channels, k, spatial=stage >= 2, dropout=dropout)
            else:
                sstm = SSTM(channels, k, bottleneck, sstm_branches, dropout, spectral_impl)
            if mixer == "sstm":
                return sstm
            return AttentionMixer(
                channels, attention_heads, matched_mlp_hidden(channels, _count(sstm)), dropout
            )

        self.stem = ConvBNAct(in_channels, stem_width, 3)
        chans = [stem_width, *widths]
        self.encoder = nn.ModuleList(
            EncoderStage(chans[i], chans[i + 1], mrfse, make_mixer(i, chans[i + 1]), dropout)
            for i in range(5)
        )
        self.decoder = nn.ModuleList(
            BFD(deep, skip, skip, routing)
            for deep, skip in zip([widths[4], *widths[3:0:-1]], widths[3::-1], strict=True)
        )
        self.head = nn.Sequential(
            nn.Conv2d(widths[0], 32, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(32, 16, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(16, num_classes, 1),
        )

    def set_spectral_impl(self, impl: str) -> None:
        """Switch every SSTM's spectral computation (``"fft"`` / ``"matmul"``), keeping the weights."""
        for module in self.modules():
            if isinstance(module, SSTM):
                module.set_spectral_impl(impl)
        self.config["spectral_impl"] = impl

    def parameter_breakdown(self) -> dict[str, int]:
        """Parameter counts of stem, each encoder stage (conv / MRF-SE / mixer), decoder stages and head."""
        counts = {"stem": _count(self.stem)}
        for i, stage in enumerate(self.encoder, start=1):
            for part, module in zip(("down", "mrfse", "mixer"), stage, strict=True):
                counts[f"stage{i}.{part}"] = _count(module)
        for i, stage in enumerate(self.decoder):
            counts[f"decoder{5 - i}to{4 - i}"] = _count(stage)
        counts["head"] = _count(self.head)
        counts["total"] = _count(self)
        return counts

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        h = self.stem(x)
        skips = []
        for stage in self.encoder:
            h = stage(h)
            skips.append(h)
        h = skips[-1]
        for stage, skip in zip(self.decoder, reversed(skips[:-1]), strict=True):
            h = stage(h, skip)
        # The paper upsamples ×2; resizing to the input size is the same at even sizes and exact at odd ones.
        h = F.interpolate(h, size=size, mode="bilinear", align_corners=False)
        return self.head(h)
