"""Datasets: discovery and pairing, reading, splits, fingerprint and plan, training datasets, demo data."""

from s2mnet.data.dataset import SegmentationDataset, normalize, prepare_intensities, preprocess
from s2mnet.data.discover import Case, DatasetIndex, discover
from s2mnet.data.fingerprint import fingerprint, format_fingerprint, make_plan, plan_summary
from s2mnet.data.io import read_fov, read_image, read_mask
from s2mnet.data.splits import load_splits, make_splits, save_splits
from s2mnet.data.synthetic import make_synthetic_dataset

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
