"""Devices and seeds: ``--device auto|cpu|cuda[:N]`` and one seed for Python, NumPy and torch."""

from __future__ import annotations

import random

import numpy as np
import torch

from s2mnet.errors import S2MError


def resolve_device(name: str) -> torch.device:
    """``"auto"`` → CUDA when available, else CPU; an unavailable CUDA request is an :class:`S2MError`."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise S2MError(f"--device {name}: unknown device (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise S2MError(f"--device {name}: CUDA is not available on this machine (use --device cpu)")
    return device


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (libraries draw from the legacy global generator)
    torch.manual_seed(seed)
