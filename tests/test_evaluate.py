"""``evaluate_run`` end to end on tiny hand-made run folders and datasets."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from s2mnet.engine.checkpoint import save_weights
from s2mnet.engine.rundir import read_run_config, write_run_config
from s2mnet.errors import DataError, RunError, S2MError
from s2mnet.inference import evaluate as evaluate_module
from s2mnet.inference.evaluate import evaluate_run

HEIGHT, WIDTH = 40, 48
PLAN = {
    "mode": "patch",
    "patch_size": 32,
    "overlap": 0.25,
    "in_channels": 3,
    "num_classes": 1,
    "tubular": False,
}


def square(top: int, left: int, side: int = 16) -> np.ndarray:
    mask = np.zeros((HEIGHT, WIDTH), dtype=bool)
    mask[top : top + side, left : left + side] = True
    return mask


EMPTY = np.zeros((HEIGHT, WIDTH), dtype=bool)
# case id → (bright region of the image, ground truth). The stand-in model below segments exactly the
# bright region, so each case's Dice is known: a 1, b 0.75 (truth shifted 4 columns: 2·192/512),
# c 1 (both empty), d 0 (truth missed), e 0 (false alarm; in the train split only).
CASES = {
    "a": (square(8, 8), square(8, 8)),
    "b": (square(10, 20), square(10, 24)),
    "c": (EMPTY, EMPTY),
    "d": (EMPTY, square(4, 4)),
    "e": (square(8, 8), EMPTY),
}
SPLITS = {"train": ["e"], "val": [], "test": ["a", "b", "c", "d"]}


class BrightRegion(nn.Module):
    """Stand-in network: logit = 5 × channel sum, i.e. foreground where the z-scored image is bright."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 1, kernel_size=1)
        with torch.no_grad():
            self.conv.weight.fill_(5.0)
            self.conv.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def write_dataset(root: Path, cases: dict = CASES, fov: np.ndarray | None = None) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    if fov is not None:
        (root / "fov").mkdir()
    for case_id, (bright, truth) in cases.items():
        if fov is not None:
            Image.fromarray(fov.astype(np.uint8) * 255).save(root / "fov" / f"{case_id}.png")
        Image.fromarray(np.repeat(bright[..., None] * 255, 3, axis=-1).astype(np.uint8)).save(
            root / "images" / f"{case_id}.png"
        )
        # Binary masks as {0, 255}; class maps (integer arrays) as their class indices.
        values = truth.astype(np.uint8) * 255 if truth.dtype == bool else truth.astype(np.uint8)
        Image.fromarray(values).save(root / "masks" / f"{case_id}.png")
    return root


def write_run(run_dir: Path, data: Path, model: nn.Module | None = None, plan: dict = PLAN) -> Path:
    run_dir.mkdir(parents=True)
    config = {"model": getattr(model, "config", {"name": "stand-in"}), "plan": plan, "data": str(data)}
    write_run_config(run_dir, config)
    (run_dir / "splits.json").write_text(json.dumps(SPLITS))
    if model is not None:
        save_weights(run_dir / "best.safetensors", model.state_dict())
    return run_dir


def use_stand_in_model(monkeypatch) -> None:
    """Make ``evaluate_run`` use :class:`BrightRegion` instead of loading weights."""
    monkeypatch.setattr(
        evaluate_module,
        "load_model",
        lambda run, which="best", device="cpu": (BrightRegion(), read_run_config(run)),
    )


@pytest.fixture
def stand_in_run(tmp_path, monkeypatch):
    """A run folder on the :data:`CASES` dataset whose model is :class:`BrightRegion`."""
    use_stand_in_model(monkeypatch)
    return write_run(tmp_path / "run", write_dataset(tmp_path / "data"))


def test_metrics_follow_the_hand_computed_cases(stand_in_run, tmp_path):
    result = evaluate_run(stand_in_run, json_path=tmp_path / "out" / "m.json", overlays=2)
    assert result["split"] == "test" and result["n_cases"] == 4
    assert result["dice"] == pytest.approx((1 + 0.75 + 1 + 0) / 4)
    assert result["dice_std"] == pytest.approx(np.std([1, 0.75, 1, 0]))
    assert result["iou"] == pytest.approx((1 + 192 / 320 + 1 + 0) / 4)
    assert result["recall"] == pytest.approx((1 + 0.75 + 1 + 0) / 4)
    diagonal = math.hypot(HEIGHT, WIDTH)
    assert result["hd95"] == pytest.approx((0 + 4 + 0 + diagonal) / 4)
    assert result["n_empty_truth"] == 1 and result["n_empty_pred"] == 2
    assert result["per_class"]["1"]["dice"] == result["dice"]
    assert "cldice" not in result and result["tta"] is False

    out = stand_in_run / "eval_test"
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["dice"] == pytest.approx(result["dice"])
    assert json.loads((tmp_path / "out" / "m.json").read_text())["dice"] == pytest.approx(result["dice"])
    with open(out / "cases.csv", newline="") as handle:
        rows = {row["case_id"]: row for row in csv.DictReader(handle)}
    assert set(rows) == {"a", "b", "c", "d"}
    assert float(rows["b"]["dice"]) == pytest.approx(0.75)
    assert rows["d"]["truth_pixels"] == "256" and rows["d"]["pred_pixels"] == "0"
    overlays = sorted(path.name for path in (out / "overlays").iterdir())
    assert overlays == ["best1_a.png", "worst1_d.png"]
    report = (out / "report.md").read_text()
    assert "| dice | 0.6875 ± " in report and "overlays/worst1_d.png" in report


def test_other_dataset_is_evaluated_on_all_cases_with_tta(stand_in_run, tmp_path):
    other = write_dataset(tmp_path / "other")
    result = evaluate_run(stand_in_run, data_dir=other, tta=True, overlays=0)
    assert result["split"] == "all" and result["n_cases"] == 5
    assert result["dice"] == pytest.approx((1 + 0.75 + 1 + 0 + 0) / 5)
    assert result["tta"] is True
    assert (stand_in_run / "eval_all_tta" / "metrics.json").is_file()
    assert not (stand_in_run / "eval_all_tta" / "overlays").exists()


def test_fov_restricts_the_metrics(tmp_path, monkeypatch):
    use_stand_in_model(monkeypatch)
    fov = np.zeros((HEIGHT, WIDTH), dtype=bool)
    fov[:, :36] = True
    bright = square(8, 8)
    bright[20:30, 40:46] = True  # a false alarm outside the field of view
    data = write_dataset(tmp_path / "data", {"a": (bright, square(8, 8)), "e": (EMPTY, EMPTY)}, fov=fov)
    (tmp_path / "run").mkdir()
    write_run_config(tmp_path / "run", {"model": {}, "plan": {**PLAN, "use_fov": True}, "data": str(data)})
    (tmp_path / "run" / "splits.json").write_text(json.dumps({"train": ["e"], "val": [], "test": ["a"]}))
    result = evaluate_run(tmp_path / "run", overlays=1)
    assert result["fov"] is True
    assert result["dice"] == 1.0 and result["precision"] == 1.0 and result["hd95"] == 0.0
    assert result["n_empty_pred"] == 0 and result["cases"][0]["pred_pixels"] == 256


def test_split_errors(stand_in_run):
    with pytest.raises(S2MError, match="unknown split 'holdout'"):
        evaluate_run(stand_in_run, split="holdout")
    (stand_in_run / "splits.json").write_text(json.dumps({**SPLITS, "test": []}))
    with pytest.raises(S2MError, match="split 'test' is empty"):
        evaluate_run(stand_in_run)
    (stand_in_run / "splits.json").write_text(json.dumps({**SPLITS, "test": ["a", "zz"]}))
    with pytest.raises(DataError, match="unknown case names: zz"):
        evaluate_run(stand_in_run)


def test_missing_run_names_the_folder_and_the_file(tmp_path):
    with pytest.raises(RunError, match="run folder not found"):
        evaluate_run(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunError, match=r"run\.json: missing"):
        evaluate_run(tmp_path / "empty")


def test_missing_dataset_is_a_data_error(stand_in_run, tmp_path):
    with pytest.raises(DataError, match="dataset folder not found"):
        evaluate_run(stand_in_run, data_dir=tmp_path / "nowhere")


def test_real_checkpoint_in_resize_mode_writes_every_output(tmp_path):
    """A real (tiny, untrained) U-Net through ``load_model``: every output is written and well-formed."""
    from s2mnet.models import create_model

    torch.manual_seed(0)
    data = write_dataset(tmp_path / "data")
    model = create_model("unet", in_channels=3, num_classes=1, base_width=4)
    run_dir = write_run(
        tmp_path / "run", data, model, plan={**PLAN, "mode": "resize", "size": 32, "tubular": True}
    )
    result = evaluate_run(run_dir, device="cpu")
    assert result["n_cases"] == 4 and 0.0 <= result["dice"] <= 1.0
    assert {"cldice", "cldice_std", "hd95", "assd", "precision"} <= set(result)
    assert all(np.isfinite(result[name]) for name in ("dice", "iou", "hd95", "assd", "cldice"))
    assert len(list((run_dir / "eval_test" / "overlays").glob("*.png"))) == 4


class TwoClassBrightRegion(nn.Module):
    """Stand-in 3-class network: class 1 where the image is bright, class 2 never, else background."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bright = 5 * x.sum(dim=1, keepdim=True)
        return torch.cat([torch.zeros_like(bright), bright, torch.full_like(bright, -100.0)], dim=1)


def test_multiclass_reports_every_foreground_class(tmp_path, monkeypatch):
    monkeypatch.setattr(
        evaluate_module,
        "load_model",
        lambda run, which="best", device="cpu": (TwoClassBrightRegion(), read_run_config(run)),
    )
    truth = square(8, 8).astype(np.uint8)
    truth[30:36, 30:40] = 2  # class 2: always missed by the stand-in
    data = write_dataset(tmp_path / "data", {"a": (square(8, 8), truth), "e": (EMPTY, EMPTY)})
    (tmp_path / "run").mkdir()
    plan = {**PLAN, "num_classes": 3}
    write_run_config(
        tmp_path / "run", {"model": {}, "plan": plan, "data": str(data), "classes": ["bg", "x", "y"]}
    )
    (tmp_path / "run" / "splits.json").write_text(json.dumps({"train": ["e"], "val": [], "test": ["a"]}))
    result = evaluate_run(tmp_path / "run", overlays=1)
    assert result["per_class"]["1"]["dice"] == 1.0
    assert result["per_class"]["2"]["dice"] == 0.0
    assert result["dice"] == pytest.approx(0.5)
    assert result["class_names"] == {"0": "bg", "1": "x", "2": "y"}
    header = (tmp_path / "run" / "eval_test" / "cases.csv").read_text().splitlines()[0].split(",")
    assert {"dice_c1", "dice_c2", "hd95_c2"} <= set(header)
    assert "| y | 0.0000 ± 0.0000 |" in (tmp_path / "run" / "eval_test" / "report.md").read_text()
