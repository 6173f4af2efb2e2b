"""End to end on real data at tiny scale: ``s2m analyze`` → ``train`` (1 epoch) → ``evaluate`` → ``predict``.

Each test links a few cases of a public dataset (``../shared/data`` or ``$S2MNET_DATA``; skipped when
absent) into a temporary folder, keeping the dataset's own layout and file names, so the pairing rules,
mask encodings and field-of-view masks are exercised as a user's copy would be: DRIVE (TIFF images, GIF
masks, FOV masks, published split in the file names), BUSI (empty masks of normal cases, a second mask
file to unite, PNG mode "1"), Kvasir-SEG (JPEG masks to threshold).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from s2mnet.cli import main

pytestmark = [pytest.mark.slow, pytest.mark.realdata]


def link_subset(source: Path, target: Path, keep: Callable[[str], bool]) -> Path:
    """Symlink the files of ``source``'s sub-folders whose names pass ``keep`` into ``target``."""
    for folder in sorted(p for p in source.iterdir() if p.is_dir()):
        for file in sorted(folder.iterdir()):
            if keep(file.name):
                (target / folder.name).mkdir(parents=True, exist_ok=True)
                (target / folder.name / file.name).symlink_to(file.resolve())
    return target


def cli(*argv: object) -> int:
    return main([str(a) for a in argv])


def train_evaluate_predict(
    data: Path, tmp_path: Path, flags: list[object], split: str = "test"
) -> tuple[dict, dict]:
    """1-epoch train, evaluate on ``split``, predict one image; returns (metrics, plan)."""
    run = tmp_path / "run"
    argv = ["train", "--data", data, "--out", run, "--epochs", 1, "--device", "cpu", "--quiet", *flags]
    assert cli(*argv) == 0
    assert (
        cli(
            "evaluate", "--run", run, "--split", split, "--json", tmp_path / "metrics.json", "--device", "cpu"
        )
        == 0
    )
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert 0.0 <= metrics["dice"] <= 1.0
    image = sorted((data / "images").iterdir())[0]
    assert (
        cli("predict", "--run", run, "--input", image, "--output", tmp_path / "pred", "--device", "cpu") == 0
    )
    mask = np.asarray(Image.open(tmp_path / "pred" / f"{image.stem}.png"))
    with Image.open(image) as original:
        assert mask.shape == (original.height, original.width)
    assert set(np.unique(mask)) <= {0, 255}
    return metrics, json.loads((run / "plan.json").read_text())


def test_drive_patch_mode_with_fov_masks(
    real_data, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    drive = real_data("DRIVE")
    wanted = {"21", "22", "23", "24", "01", "02"}
    data = link_subset(drive, tmp_path / "DRIVE", lambda name: name[:2] in wanted and "2nd" not in name)
    assert cli("analyze", "--data", data) == 0
    analysis = capsys.readouterr().out
    assert "green_clahe" in analysis and "patch" in analysis
    flags = ["--patch-size", 128, "--overlap", 0.25, "--samples-per-epoch", 4, "--batch-size", 2]
    metrics, plan = train_evaluate_predict(data, tmp_path, flags)
    assert plan["use_fov"] is True and plan["mode"] == "patch" and plan["preprocess"] == "green_clahe"
    assert plan["in_channels"] == 1
    assert metrics["fov"] is True and metrics["n_cases"] == 2  # the published test images 01, 02


def test_busi_empty_and_double_masks(real_data, tmp_path: Path) -> None:
    busi = real_data("BUSI-100")
    stems = ("benign (4)", "benign (25)", "malignant (1)", "normal (1)", "normal (2)")
    data = link_subset(busi, tmp_path / "BUSI", lambda name: name.split(".")[0].split("_mask")[0] in stems)
    flags = ["--size", 64, "--samples-per-epoch", 4, "--batch-size", 2]
    metrics, plan = train_evaluate_predict(data, tmp_path, flags, split="all")
    assert plan["mode"] == "resize" and plan["size"] == 64
    assert metrics["n_cases"] == 5 and metrics["n_empty_truth"] == 2


def test_kvasir_jpeg_masks(real_data, tmp_path: Path) -> None:
    kvasir = real_data("Kvasir-SEG-5")
    data = link_subset(kvasir, tmp_path / "Kvasir", lambda name: name.endswith(".jpg"))
    flags = ["--size", 64, "--samples-per-epoch", 4, "--batch-size", 2]
    metrics, _ = train_evaluate_predict(data, tmp_path, flags, split="test")
    assert metrics["n_cases"] == 1
