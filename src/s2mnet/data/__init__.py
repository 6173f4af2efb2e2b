"""The data stage: types, naming rules, discovery, readers by format, label modes, splits, preprocessing,
the training dataset and the synthetic demo data.

Data flows one way (docs/architecture.md): this package imports nothing of planning, engine, inference,
deploy or bench. Exports are resolved lazily, so ``import s2mnet.data.io`` or the numpy preprocessing
(used by the onnxruntime predictor in :mod:`s2mnet.deploy`) never imports torch or albumentations.
"""

from __future__ import annotations

import importlib
from typing import Any

# ``discover`` is both a module and its main function; binding the function here keeps
# ``from s2mnet.data import discover`` a function however the submodule was imported.
from s2mnet.data.discover import discover as discover
from s2mnet.data.types import Case as Case
from s2mnet.data.types import DatasetIndex as DatasetIndex

_EXPORTS = {
    "read_fov": "s2mnet.data.io",
    "read_image": "s2mnet.data.io",
    "read_mask": "s2mnet.data.io",
    "load_splits": "s2mnet.data.splits",
    "make_splits": "s2mnet.data.splits",
    "save_splits": "s2mnet.data.splits",
    "make_synthetic_dataset": "s2mnet.data.synthetic",
    "normalize": "s2mnet.data.preprocessing",
    "prepare_intensities": "s2mnet.data.preprocessing",
    "preprocess": "s2mnet.data.preprocessing",
    "SegmentationDataset": "s2mnet.data.dataset",
}

__all__ = sorted([*_EXPORTS, "Case", "DatasetIndex", "discover"])


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 's2mnet.data' has no attribute {name!r}")
