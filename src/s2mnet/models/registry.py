"""Named model configurations: ``create_model(name, in_channels, num_classes, **overrides)``.

Every model gets ``model.config`` (JSON-serialisable) such that ``create_model(**model.config)``
rebuilds the same architecture; run folders store it in ``run.json``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from s2mnet.errors import ModelConfigError
from s2mnet.models.peers import MonaiUNet
from s2mnet.models.s2mnet import S2MNet
from s2mnet.models.unet import UNet
from s2mnet.registry import Registry

MODELS: Registry[Callable[..., nn.Module]] = Registry("model", ModelConfigError)
MODELS.add("s2mnet", S2MNet, "S2M-Net as the paper describes it (SSTM K=32, d=16, soft BFD, MRF-SE)")
MODELS.add("s2mnet_attention", S2MNet, "parameter-matched self-attention instead of SSTM", mixer="attention")
MODELS.add("s2mnet_none", S2MNet, "no token mixer (the 'w/o SSTM' ablation)", mixer="none")
MODELS.add("s2mnet_k16", S2MNet, "SSTM band K=16", k=16)
MODELS.add("s2mnet_k64", S2MNet, "SSTM band K=64", k=64)
MODELS.add("s2mnet_spectral", S2MNet, "SSTM spectral branch only", sstm_branches="spectral")
MODELS.add("s2mnet_spatial", S2MNet, "SSTM gated spatial branch only", sstm_branches="spatial")
MODELS.add("s2mnet_hard", S2MNet, "BFD with hard (thresholded) routing", routing="hard")
MODELS.add("s2mnet_nobfd", S2MNet, "BFD without routing ([region ‖ refined] fused)", routing="none")
MODELS.add(
    "s2mnet_plaindec", S2MNet, "plain decoder (the authors' 'w/o BFD'): up, concat, 2 conv", decoder="plain"
)
MODELS.add("s2mnet_cfilter", S2MNet, "SSTM with a complex K×K filter", spectral_filter="complex")
MODELS.add("s2mnet_nomrfse", S2MNet, "no MRF-SE blocks", mrfse=False)
MODELS.add(
    "s2mnet_official", S2MNet, "SSTM as the authors' TensorFlow code computes it", sstm_flavour="official"
)
MODELS.add("unet", UNet, "classic 4-level U-Net (64…1024)")
MODELS.add("monai_unet", MonaiUNet, "MONAI UNet (32…512, 2 residual units), padded to multiples of 16")


def list_models() -> list[str]:
    """Registered model names."""
    return MODELS.names()


def describe_models() -> dict[str, str]:
    """Name → one-line description."""
    return MODELS.describe()


def create_model(
    name: str = "s2mnet", in_channels: int = 3, num_classes: int = 1, **overrides: Any
) -> nn.Module:
    """Build a registered model.

    Args:
        name: one of :func:`list_models`.
        in_channels: image channels.
        num_classes: output channels (1 = binary).
        **overrides: constructor arguments replacing the named configuration's (e.g. ``k=48``).

    Returns:
        The model, with ``model.config = {"name", "in_channels", "num_classes", **overrides}``.

    Raises:
        ModelConfigError: unknown name or argument.
    """
    entry = MODELS.get(name)
    builder, defaults = entry.target, entry.defaults
    accepted = set(inspect.signature(builder).parameters)
    unknown = sorted(set(overrides) - accepted)
    if unknown:
        raise ModelConfigError(f"model {name!r} does not take {unknown}; it accepts {sorted(accepted)}")
    model = builder(in_channels=in_channels, num_classes=num_classes, **{**defaults, **overrides})
    model.config = {"name": name, "in_channels": in_channels, "num_classes": num_classes, **overrides}
    return model
