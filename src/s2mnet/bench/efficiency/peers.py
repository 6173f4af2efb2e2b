"""The models of ``s2m bench efficiency``: the s2mnet registry plus the MONAI peers (UNet, SwinUNETR).

Peers: MONAI ``UNet(spatial_dims=2, channels=(32, 64, 128, 256, 512), strides=(2, 2, 2, 2),
num_res_units=2)`` and ``SwinUNETR(spatial_dims=2, feature_size=24)`` (patch 2 and four ×2 merges: the
input side must be divisible by 32; other sizes are skipped). Our ``unet`` is the classic 64…1024 U-Net.
"""

from __future__ import annotations

import torch

MONAI_UNET = {"channels": (32, 64, 128, 256, 512), "strides": (2, 2, 2, 2), "num_res_units": 2}
SWIN_FEATURE_SIZE = 24
SWIN_DIVISOR = 32


def known_models() -> list[str]:
    """Model names this benchmark can build: the model registry (with ``monai_unet``) plus SwinUNETR."""
    from s2mnet.models import list_models

    return [*list_models(), "monai_swinunetr"]  # monai_unet is a registered model


def size_problem(name: str, size: int) -> str | None:
    """Why ``name`` cannot run at ``size`` (``None`` if it can)."""
    if name == "monai_swinunetr" and size % SWIN_DIVISOR:
        return f"SwinUNETR needs a size divisible by {SWIN_DIVISOR}"
    return None


def build_model(name: str, in_channels: int = 3, num_classes: int = 1) -> torch.nn.Module:
    """An s2mnet registry model or a MONAI peer (configurations in the module docstring).

    Args:
        name: a name of :func:`known_models`.
        in_channels: image channels.
        num_classes: output channels.
    """
    if name == "monai_unet":
        from monai.networks.nets import UNet

        return UNet(spatial_dims=2, in_channels=in_channels, out_channels=num_classes, **MONAI_UNET)
    if name == "monai_swinunetr":
        from monai.networks.nets import SwinUNETR

        return SwinUNETR(
            spatial_dims=2, in_channels=in_channels, out_channels=num_classes, feature_size=SWIN_FEATURE_SIZE
        )
    from s2mnet.models import create_model

    return create_model(name, in_channels=in_channels, num_classes=num_classes)


def loss_name_for(model_name: str) -> str:
    """MASL for the S2M-Net family, Dice-CE for the baselines and peers."""
    return "masl" if model_name.startswith("s2mnet") else "dicece"
