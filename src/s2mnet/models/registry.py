"""Named model configurations: ``create_model(name, in_channels, num_classes, **overrides)``.

Every model gets ``model.config`` (JSON-serialisable) such that ``create_model(**model.config)``
rebuilds the same architecture; run folders store it in ``run.json``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from s2mnet.errors import S2MError
from s2mnet.models.s2mnet import S2MNet
from s2mnet.models.unet import UNet


class ModelConfigError(S2MError, ValueError):
    """An unknown model name or an argument the named model does not take."""


_REGISTRY: dict[str, tuple[Callable[..., nn.Module], dict[str, Any], str]] = {
    "s2mnet": (S2MNet, {}, "S2M-Net as the paper describes it (SSTM K=32, d=16, soft BFD, MRF-SE)"),
    "s2mnet_attention": (S2MNet, {"mixer": "attention"}, "parameter-matched self-attention instead of SSTM"),
    "s2mnet_none": (S2MNet, {"mixer": "none"}, "no token mixer (the 'w/o SSTM' ablation)"),
    "s2mnet_k16": (S2MNet, {"k": 16}, "SSTM band K=16"),
    "s2mnet_k64": (S2MNet, {"k": 64}, "SSTM band K=64"),
    "s2mnet_spectral": (S2MNet, {"sstm_branches": "spectral"}, "SSTM spectral branch only"),
    "s2mnet_spatial": (S2MNet, {"sstm_branches": "spatial"}, "SSTM gated spatial branch only"),
    "s2mnet_hard": (S2MNet, {"routing": "hard"}, "BFD with hard (thresholded) routing"),
    "s2mnet_nobfd": (S2MNet, {"routing": "none"}, "BFD without routing (the 'w/o BFD' ablation)"),
    "s2mnet_nomrfse": (S2MNet, {"mrfse": False}, "no MRF-SE blocks"),
    "s2mnet_official": (
        S2MNet,
        {"sstm_flavour": "official"},
        "SSTM as the authors' TensorFlow code computes it",
    ),
    "unet": (UNet, {}, "classic 4-level U-Net (64…1024)"),
}


def list_models() -> list[str]:
    """Registered model names."""
    return list(_REGISTRY)


def describe_models() -> dict[str, str]:
    """Name → one-line description."""
    return {name: entry[2] for name, entry in _REGISTRY.items()}


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
    if name not in _REGISTRY:
        raise ModelConfigError(f"unknown model {name!r}; choose one of: {', '.join(_REGISTRY)}")
    builder, defaults, _ = _REGISTRY[name]
    accepted = set(inspect.signature(builder).parameters)
    unknown = sorted(set(overrides) - accepted)
    if unknown:
        raise ModelConfigError(f"model {name!r} does not take {unknown}; it accepts {sorted(accepted)}")
    model = builder(in_channels=in_channels, num_classes=num_classes, **{**defaults, **overrides})
    model.config = {"name": name, "in_channels": in_channels, "num_classes": num_classes, **overrides}
    return model
