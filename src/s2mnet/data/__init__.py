"""Datasets: discovery and pairing, reading, splits, fingerprint and plan, training datasets, demo data.

``SegmentationDataset`` (torch, albumentations) is imported lazily, so that ``s2mnet.data.io`` and the
numpy preprocessing can be used without the training stack (the onnxruntime predictor in
``s2mnet.deploy`` relies on it).
"""

from typing import Any

from s2mnet.data.discover import Case, DatasetIndex, discover
from s2mnet.data.fingerprint import fingerprint, format_fingerprint, make_plan, plan_summary
from s2mnet.data.io import read_fov, read_image, read_mask
from s2mnet.data.splits import load_splits, make_splits, save_splits
from s2mnet.data.synthetic import make_synthetic_dataset
from s2mnet.deploy.preprocessing import normalize, prepare_intensities, preprocess

__all__ = [
    "Case",
    "DatasetIndex",
    "SegmentationDataset",
    "discover",
    "fingerprint",
    "format_fingerprint",
    "load_splits",
    "make_plan",
    "make_splits",
    "make_synthetic_dataset",
    "normalize",
    "plan_summary",
    "prepare_intensities",
    "preprocess",
    "read_fov",
    "read_image",
    "read_mask",
    "save_splits",
]


def __getattr__(name: str) -> Any:
    if name == "SegmentationDataset":
        from s2mnet.data.dataset import SegmentationDataset

        return SegmentationDataset
    raise AttributeError(f"module 's2mnet.data' has no attribute {name!r}")
