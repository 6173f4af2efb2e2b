"""s2mnet: S2M-Net (spectral token mixer + morphology-aware adaptive loss) for medical segmentation.

Public API::

    from s2mnet import S2MNet, SSTM, MASL, morphology_descriptors, create_model, load
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "S2MNet": "s2mnet.models",
    "SSTM": "s2mnet.models",
    "UNet": "s2mnet.models",
    "create_model": "s2mnet.models",
    "list_models": "s2mnet.models",
    "MASL": "s2mnet.losses",
    "morphology_descriptors": "s2mnet.losses",
    "create_loss": "s2mnet.losses",
}

__all__ = [*_LAZY, "__version__", "load"]


def load(run_dir: str, which: str = "best", device: str = "cpu") -> Any:
    """Load a trained run's model (``s2m train --out RUN``) in eval mode, ready for inference.

    A cross-validation run (``s2m train --folds K``) gives the ensemble of its folds, one module that
    averages their probabilities (:class:`s2mnet.engine.ensemble.FoldEnsemble`).
    """
    from s2mnet.engine.checkpoint import load_model

    return load_model(run_dir, which=which, device=device)[0]


def __getattr__(name: str) -> Any:
    # Lazy imports keep `import s2mnet` (and the CLI's start-up) fast.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 's2mnet' has no attribute {name!r}")
