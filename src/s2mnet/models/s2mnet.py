"""S2M-Net (method.md §1): stem, five encoder stages (stride-2 conv + MRF-SE + token mixer), four
boundary-focused decoder stages, head. Accepts any H, W and returns logits of the input's size."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from s2mnet.models.attention import AttentionMixer, matched_mlp_hidden
from s2mnet.models.blocks import BFD, DECODERS, MRFSE, ConvBNAct, PlainDecoder
from s2mnet.models.sstm import SPECTRAL_FILTERS, SSTM
from s2mnet.models.sstm_official import OfficialSSTM

MIXERS = ("sstm", "attention", "none")
SSTM_FLAVOURS = ("paper", "official")


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def full_spectrum_k(size: int) -> list[int]:
    """Per-stage K that keeps each SSTM's whole spectrum at a ``size``² input (the ``kfull`` ablation).

    The five encoder stages see maps of ``⌈size/2⌉, ⌈size/4⌉, …, ⌈size/32⌉`` (stride-2 convolutions with
    padding 1), so ``K_i`` = that side: ``K_eff = min(K_i, H, W)`` is the whole map at the training size,
    no filter value is idle, and the filter size stays independent of the input (larger inputs, e.g. at
    inference, are filtered in the central ``K_i × K_i`` band as usual).
    """
    if size < 1:
        raise ValueError(f"size must be ≥ 1, got {size}")
    sides, side = [], size
    for _ in range(5):
        side = (side + 1) // 2
        sides.append(side)
    return sides


class EncoderStage(nn.Sequential):
    """``conv3×3 stride 2 + BN + ELU → MRF-SE → token mixer`` (method.md §1)."""

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
        k: SSTM band size K (32), or five sizes, one per encoder stage (the ``kfull`` ablation gives each
            stage its whole map at the training size: ``full_spectrum_k``).
        bottleneck: SSTM spatial-branch bottleneck d (16).
        sstm_branches: ``"both"``, ``"spectral"`` or ``"spatial"``.
        sstm_flavour: ``"paper"`` (as described) or ``"official"`` (as the authors' TF code computes).
        spectral_impl: ``"fft"`` or ``"matmul"`` (identical output; ``matmul`` exports to ONNX).
        spectral_filter: SSTM filter ``"real"`` (zero-phase, default) or ``"complex"`` (the ``cfilter``
            ablation; :class:`~s2mnet.models.sstm.SpectralBranch`).
        routing: BFD routing ``"soft"`` (paper), ``"hard"`` or ``"none"``.
        decoder: ``"bfd"`` (paper) or ``"plain"`` (the authors' "w/o BFD": upsample, concatenate the skip,
            two conv3×3 + BN + ReLU; :class:`~s2mnet.models.blocks.PlainDecoder`; ``routing`` is unused).
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
        k: int | tuple[int, ...] | list[int] = 32,
        bottleneck: int = 16,
        sstm_branches: str = "both",
        sstm_flavour: str = "paper",
        spectral_impl: str = "fft",
        spectral_filter: str = "real",
        routing: str = "soft",
        decoder: str = "bfd",
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
        if spectral_filter not in SPECTRAL_FILTERS:
            raise ValueError(f"spectral_filter must be one of {SPECTRAL_FILTERS}, got {spectral_filter!r}")
        if spectral_filter != "real" and sstm_flavour == "official":
            raise ValueError("spectral_filter='complex' needs sstm_flavour='paper'")
        if decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}, got {decoder!r}")
        stage_ks = [int(k)] * 5 if isinstance(k, int) else [int(v) for v in k]
        if len(stage_ks) != 5:
            raise ValueError(f"k must be one size or five (one per stage), got {k!r}")
        self.config: dict[str, Any] = {
            "name": "s2mnet",
            "in_channels": in_channels,
            "num_classes": num_classes,
            "widths": list(widths),
            "stem_width": stem_width,
            "mixer": mixer,
            "k": k if isinstance(k, int) else stage_ks,
            "bottleneck": bottleneck,
            "sstm_branches": sstm_branches,
            "sstm_flavour": sstm_flavour,
            "spectral_impl": spectral_impl,
            "spectral_filter": spectral_filter,
            "routing": routing,
            "decoder": decoder,
            "mrfse": mrfse,
            "attention_heads": attention_heads,
            "dropout": dropout,
        }

        def make_mixer(stage: int, channels: int) -> nn.Module:
            if mixer == "none":
                return nn.Identity()
            if sstm_flavour == "official":
                sstm: nn.Module = OfficialSSTM(channels, stage_ks[stage], spatial=stage >= 2, dropout=dropout)
            else:
                sstm = SSTM(
                    channels,
                    stage_ks[stage],
                    bottleneck,
                    sstm_branches,
                    dropout,
                    spectral_impl,
                    spectral_filter,
                )
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
            BFD(deep, skip, skip, routing) if decoder == "bfd" else PlainDecoder(deep, skip, skip)
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
