"""Peer models from other libraries, registered so that ``s2m train`` and the ablation can use them.

``monai_unet`` is MONAI's ``UNet`` in the configuration ``s2m bench efficiency`` measures
(:data:`MONAI_UNET`: ``channels=(32, 64, 128, 256, 512), strides=(2, 2, 2, 2), num_res_units=2``), the peer
a user would pick. MONAI's UNet needs sides its strides divide (16 here); :class:`MonaiUNet` pads the input
on the bottom and right (replicate) to the next multiple and crops the logits back, so it takes any H, W
like the other registered models.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: MONAI UNet configuration (the same as in :mod:`s2mnet.bench.efficiency`).
MONAI_UNET = {"channels": (32, 64, 128, 256, 512), "strides": (2, 2, 2, 2), "num_res_units": 2}


class MonaiUNet(nn.Module):
    """MONAI ``UNet(spatial_dims=2, **MONAI_UNET)`` returning logits ``(B, num_classes, H, W)`` for any H, W.

    Args:
        in_channels: image channels.
        num_classes: output channels.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 1) -> None:
        super().__init__()
        from monai.networks.nets import UNet

        self.net = UNet(spatial_dims=2, in_channels=in_channels, out_channels=num_classes, **MONAI_UNET)
        self.divisor = 1
        for stride in MONAI_UNET["strides"]:
            self.divisor *= stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        pad_h, pad_w = -height % self.divisor, -width % self.divisor
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        return self.net(x)[..., :height, :width]
