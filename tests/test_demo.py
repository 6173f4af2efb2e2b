"""``s2m demo``: a tiny-budget run end to end; the full-budget quality check on request."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from s2mnet.cli import main
from s2mnet.demo import DEMO_DEFAULTS, DemoConfig, run_demo

TINY = {
    "cases": 9,
    "size": 32,
    "epochs": 1,
    "samples_per_epoch": 8,
    "batch_size": 4,
    "device": "cpu",
    "quiet": True,
}


@pytest.mark.slow
def test_tiny_demo_writes_metrics_report_and_overlays_and_is_never_overwritten_silently(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "demo"
    record = run_demo(DemoConfig(out=out, **TINY))
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["dice"] <= 1.0 and metrics["split"] == "test"
    assert {"iou", "precision", "recall", "hd95"} <= set(metrics)
    assert record["dice"] == metrics["dice"] and record["status"] == "finished"
    assert json.loads((out / "demo.json").read_text())["wall_s"] > 0
    for name in (
        "report.md",
        "run/run.json",
        "run/best.safetensors",
        "run/curves.png",
        "evaluation/report.md",
    ):
        assert (out / name).is_file(), name
    assert any((out / "evaluation" / "overlays").glob("*.png"))
    assert len(list((out / "data" / "images").iterdir())) == 9

    (out / "my_notes.txt").write_text("mine")
    assert main(["demo", "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    run_demo(DemoConfig(out=out, overwrite=True, **{**TINY, "cases": 6}))
    assert (out / "my_notes.txt").read_text() == "mine"
    assert len(list((out / "data" / "images").iterdir())) == 6


@pytest.mark.skipif(
    os.environ.get("S2MNET_FULL_DEMO") != "1",
    reason="full-budget demo (2-4 min on 2 CPU cores); run with S2MNET_FULL_DEMO=1",
)
def test_full_demo_reaches_dice_085(tmp_path: Path) -> None:
    """The demo's budget is in steps (no wall-time limit), so its Dice does not depend on the load."""
    assert DEMO_DEFAULTS.time_limit_s is None
    record = run_demo(DemoConfig(out=tmp_path / "demo", device="cpu", quiet=True))
    assert record["dice"] >= 0.85, record
