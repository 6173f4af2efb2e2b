"""S2M-Net as an nnU-Net v2 network: built from the plans, with nnU-Net's deep supervision.

nnU-Net v2 builds a configuration's network with
``get_network_from_plans(network_class_name, arch_kwargs, ...)``, i.e.
``S2MNetNNUNet(input_channels=..., num_classes=..., deep_supervision=..., **arch_kwargs)``, where
``num_classes`` is the label manager's number of segmentation heads (background + one per label: softmax,
also for binary datasets) and ``arch_kwargs`` come from the plans (``s2m nnunet add-config`` writes them).
Its trainers switch deep supervision with ``network.decoder.deep_supervision = True/False``.

Deep supervision: nnU-Net's loss expects one output per scale of
``1 / cumprod(strides)[:-1]`` (``pool_op_kernel_sizes`` = ``arch_kwargs["strides"]``), highest resolution
first. S2M-Net downsamples five times (encoder stages at 1/2 … 1/32, bottleneck at 1/32) and its four
decoder stages end at 1/16, 1/8, 1/4 and 1/2; the head works at full resolution. With
``strides = [[1, 1], [2, 2] × 5]`` (:data:`S2MNET_STRIDES`) nnU-Net asks for outputs at 1, 1/2, 1/4, 1/8 and
1/16: the head's logits followed by a 1×1 convolution (an auxiliary head, :attr:`S2MNetNNUNet.ds_heads`)
on each decoder stage's output. The auxiliary heads exist whether deep supervision is on or off, so the
checkpoints of both trainer kinds load into the same network (nnU-Net's predictor builds it with deep
supervision off). Patch sizes must be multiples of 32 so that every scale is exact.

This module imports torch and :mod:`s2mnet.models` only (not nnunetv2).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from s2mnet.models import ModelConfigError, S2MNet
from s2mnet.nnunet import NETWORK_CLASS_NAME, PATCH_MULTIPLE, S2MNET_STRIDES

__all__ = ["NETWORK_CLASS_NAME", "PATCH_MULTIPLE", "S2MNET_STRIDES", "S2MNetNNUNet", "build_network"]

_S2MNET_ARGS = frozenset(inspect.signature(S2MNet).parameters) - {"in_channels", "num_classes"}


def check_strides(strides: Sequence[Sequence[int]] | None) -> list[list[int]]:
    """Return S2M-Net's strides; ``None`` gives them, anything else must equal :data:`S2MNET_STRIDES`.

    Raises:
        ModelConfigError: strides that describe another downsampling than S2M-Net's.
    """
    if strides is None:
        return [list(s) for s in S2MNET_STRIDES]
    given = [[int(v) for v in s] for s in strides]
    if given != S2MNET_STRIDES:
        raise ModelConfigError(
            f"S2M-Net in nnU-Net needs strides (pool_op_kernel_sizes) {S2MNET_STRIDES}, got {given}; "
            "re-run `s2m nnunet add-config` to write them"
        )
    return given


class S2MNetNNUNet(S2MNet):
    """S2M-Net with nnU-Net's constructor and deep-supervision interface.

    The parameters of :class:`~s2mnet.models.S2MNet` keep their names (``stem``, ``encoder``,
    ``decoder``, ``head``), so its weights load into a plain ``S2MNet`` with ``strict=False`` (only the
    auxiliary heads ``ds_heads`` are extra).

    Args:
        input_channels: image channels (nnU-Net passes the number of ``channel_names``).
        num_classes: output channels (nnU-Net's ``num_segmentation_heads``: softmax over labels, or one
            sigmoid channel per region for region-based datasets).
        deep_supervision: return the list of logits at 1, 1/2, 1/4, 1/8, 1/16 instead of the
            full-resolution logits. nnU-Net's trainers set ``decoder.deep_supervision`` afterwards.
        strides: nnU-Net's pool_op_kernel_sizes; must be :data:`S2MNET_STRIDES` (or ``None``).
        **s2mnet_kwargs: :class:`~s2mnet.models.S2MNet` arguments (``mixer``, ``k``, ``routing``,
            ``widths``, ``dropout``…), e.g. ``{"routing": "none"}`` for the ``s2mnet_nobfd`` variant.

    Raises:
        ModelConfigError: unknown arguments or wrong strides (an :class:`~s2mnet.errors.S2MError`).
    """

    def __init__(
        self,
        input_channels: int,
        num_classes: int,
        deep_supervision: bool = False,
        strides: Sequence[Sequence[int]] | None = None,
        **s2mnet_kwargs: Any,
    ) -> None:
        unknown = sorted(set(s2mnet_kwargs) - _S2MNET_ARGS)
        if unknown:
            raise ModelConfigError(
                f"S2MNetNNUNet: unknown arch_kwargs {unknown} in the nnU-Net plans; S2M-Net accepts "
                f"{sorted(_S2MNET_ARGS | {'strides'})}"
            )
        super().__init__(in_channels=input_channels, num_classes=num_classes, **s2mnet_kwargs)
        self.strides = check_strides(strides)
        self.config = {**self.config, "name": "s2mnet_nnunet", "strides": self.strides}
        widths = self.config["widths"]
        # decoder stage i ends at the scale of encoder stage 4 - i: 1/16 (widths[3]) … 1/2 (widths[0])
        self.ds_heads = nn.ModuleList(nn.Conv2d(widths[i], num_classes, 1) for i in (3, 2, 1, 0))
        self.decoder.deep_supervision = bool(deep_supervision)

    @property
    def deep_supervision(self) -> bool:
        """Whether :meth:`forward` returns the multi-scale list (nnU-Net's ``decoder.deep_supervision``)."""
        return bool(getattr(self.decoder, "deep_supervision", False))

    @deep_supervision.setter
    def deep_supervision(self, enabled: bool) -> None:
        self.decoder.deep_supervision = bool(enabled)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """Logits ``(B, C, H, W)``; with deep supervision the list at 1, 1/2, 1/4, 1/8, 1/16 of H, W."""
        size = x.shape[-2:]
        h = self.stem(x)
        skips = []
        for stage in self.encoder:
            h = stage(h)
            skips.append(h)
        h = skips[-1]
        decoded = []
        for stage, skip in zip(self.decoder, reversed(skips[:-1]), strict=True):
            h = stage(h, skip)
            decoded.append(h)
        logits = self.head(F.interpolate(h, size=size, mode="bilinear", align_corners=False))
        if not self.deep_supervision:
            return logits
        auxiliary = [head(feature) for head, feature in zip(self.ds_heads, decoded, strict=True)]
        return [logits, *reversed(auxiliary)]

    def output_shapes(self, size: Sequence[int]) -> list[tuple[int, int]]:
        """The ``(H, W)`` of each deep-supervision output for an input of ``size`` (ceil at each stride)."""
        shapes = [tuple(int(s) for s in size)]
        for _ in range(len(self.strides) - 2):
            shapes.append(tuple(-(-s // 2) for s in shapes[-1]))
        return shapes


def build_network(
    input_channels: int, num_classes: int, deep_supervision: bool = False, **arch_kwargs: Any
) -> S2MNetNNUNet:
    """Build the network as nnU-Net's ``get_network_from_plans`` does (for tests and scripts)."""
    return S2MNetNNUNet(input_channels, num_classes, deep_supervision=deep_supervision, **arch_kwargs)
