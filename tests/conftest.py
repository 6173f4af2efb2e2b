"""Shared test helpers.

Real data: tests that need the public datasets read them from ``../shared/data`` relative to the
repository root, or from the folder named by the environment variable ``S2MNET_DATA``; they are skipped
with a clear message when the data is absent (a fresh clone has none). Never copy real data into the
repository.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    # The suite runs in two worker processes (pyproject: -n 2) on a 2-core machine: one intra-op thread
    # each (and in their subprocesses), or OpenMP threads spin-wait against each other (docs/tool.md).
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_root() -> Path:
    """``$S2MNET_DATA`` if set, else ``<repo>/../shared/data``."""
    override = os.environ.get("S2MNET_DATA")
    return Path(override) if override else REPO_ROOT.parent / "shared" / "data"


def require_real_data(name: str) -> Path:
    """The folder of the real dataset ``name`` (e.g. ``"DRIVE"``); skips the test when it is absent."""
    folder = shared_data_root() / name
    if not folder.is_dir():
        pytest.skip(f"real dataset {name} not found at {folder} (set S2MNET_DATA to its parent folder)")
    return folder


@pytest.fixture
def real_data():
    """``real_data("DRIVE")`` → the dataset folder, or skip (see :func:`require_real_data`)."""
    return require_real_data


@pytest.fixture
def shared_data() -> Path:
    """The shared real-data folder (``$S2MNET_DATA`` or ``<repo>/../shared/data``), or skip when absent."""
    root = shared_data_root()
    if not root.is_dir():
        pytest.skip(f"shared real data not found at {root} (set S2MNET_DATA to the folder holding DRIVE/)")
    return root
