"""Catalogue of hostile and odd inputs (issue 15): every one is answered cleanly, nothing half-written.

Read :data:`CATALOGUE` as a table: input → command → the one-line answer. Every row runs the real
command line in-process and checks: exit status 2, exactly one stderr line ``error: ...`` containing the
expected fragment (no traceback), the file or key named, within seconds and without a large allocation,
and the folder holding the inputs left exactly as it was (no run folder, no mask, no temporary file).

:data:`WARNINGS` lists the degenerate inputs that are warned about (exit 0, ``warning: ...``) instead.
"""

from __future__ import annotations

import json
import os
import resource
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from s2mnet.cli import main
from s2mnet.data.mask_files import CLAIM_FILE
from s2mnet.engine.checkpoint import save_weights
from s2mnet.engine.resume import save_training_state
from s2mnet.engine.rundir import LAST_WEIGHTS, TRAIN_STATE, write_run_config
from s2mnet.inference import evaluate as evaluate_module
from s2mnet.inference import predict as predict_module

PLAN = {"mode": "resize", "size": 32, "in_channels": 3, "num_classes": 1}
#: Largest growth of the process's peak memory a refused input may cause (a TIFF bomb would take GBs).
MEMORY_BUDGET_MB = 400
TIME_BUDGET_S = 30  # generous: the machine is shared; a refusal takes well under a second
BILLION = str(10**9)


# --- building blocks -----------------------------------------------------------------------------------


def rgb(path: Path, size: int = 32, seed: int = 0) -> Path:
    pixels = (np.random.default_rng(seed).random((size, size, 3)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def square_mask(path: Path, size: int = 32, value: int = 255, full: bool = False) -> Path:
    mask = np.full((size, size), value if full else 0, np.uint8)
    mask[8:20, 8:20] = value
    Image.fromarray(mask).save(path)
    return path


def dataset(root: Path, n: int = 4, masks: str = "square") -> Path:
    """``root/images/c<i>.png`` + ``root/masks/c<i>.png``: square masks, all empty or all full."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        rgb(root / "images" / f"c{i}.png", seed=i)
        if masks == "empty":
            Image.fromarray(np.zeros((32, 32), np.uint8)).save(root / "masks" / f"c{i}.png")
        else:
            square_mask(root / "masks" / f"c{i}.png", full=masks == "full")
    return root


def float_tiff(path: Path, nan: bool = True) -> Path:
    """A float32 TIFF with NaN, +inf and values > 1 (what a badly exported scan looks like)."""
    array = np.random.default_rng(1).random((32, 32)).astype(np.float32) * 3
    if nan:
        array[3, 3], array[4, 4] = np.nan, np.inf
    tifffile.imwrite(path, array)
    return path


def nan_mask_tiff(path: Path) -> Path:
    mask = np.zeros((32, 32), np.float32)
    mask[8:20, 8:20] = 1
    mask[0, 0] = np.nan
    tifffile.imwrite(path, mask)
    return path


def tiff_bomb(path: Path, side: int = 100_000) -> Path:
    """A tiny zlib TIFF whose header declares ``side``×``side`` pixels (10 GB when decoded)."""
    tifffile.imwrite(path, np.zeros((16, 16), np.uint8), compression="zlib", rowsperstrip=2**31 - 1)
    data = bytearray(path.read_bytes())
    with tifffile.TiffFile(path) as tif:
        for name in ("ImageWidth", "ImageLength"):
            tag = tif.pages[0].tags[name]
            data[tag.valueoffset : tag.valueoffset + 4] = struct.pack("<I", side)
    path.write_bytes(bytes(data))
    return path


def truncated_png(path: Path) -> Path:
    """A PNG whose header is intact but whose pixel data stops half way."""
    rgb(path, size=64)
    path.write_bytes(path.read_bytes()[:200])
    return path


def run_folder(root: Path, data_dir: Path | None = None, **changes: object) -> Path:
    """A tiny trained-looking run (UNet, 4 channels wide); ``changes`` edit run.json (``plan`` merged)."""
    from s2mnet.models import create_model

    torch.manual_seed(0)
    model = create_model("unet", in_channels=3, num_classes=1, base_width=4)
    root.mkdir(parents=True)
    config: dict = {"model": model.config, "plan": dict(PLAN), "data": str(data_dir or root)}
    for key, value in changes.items():
        if key.startswith("plan_"):
            config["plan"][key[5:]] = value
        elif key.startswith("model_"):
            config["model"][key[6:]] = value
        else:
            config[key] = value
    write_run_config(root, config)
    save_weights(root / "best.safetensors", model.state_dict())
    (root / "splits.json").write_text(json.dumps({"train": ["c0"], "val": ["c1"], "test": ["c2", "c3"]}))
    return root


def resumable_run(root: Path, data: Path) -> Path:
    """A run folder as ``s2m train`` leaves it while running (run.json with its train_config)."""
    run = run_folder(root, data, status="running")
    config = json.loads((run / "run.json").read_text())
    config["train_config"] = {"data": str(data), "out": str(run), "model": "unet", "device": "cpu"}
    (run / "run.json").write_text(json.dumps(config))
    return run


# --- the catalogue ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One hostile input: ``setup(tmp_path) → argv`` and the fragments the one error line must hold."""

    name: str
    setup: Callable[[Path], list]
    expected: tuple[str, ...]


def _images(tmp: Path, *makers: Callable[[Path], Path]) -> Path:
    folder = tmp / "in"
    folder.mkdir()
    for maker in makers:
        maker(folder)
    return folder


def _nan_dataset(tmp: Path) -> Path:
    data = dataset(tmp / "data")
    (data / "images" / "c0.png").unlink()
    float_tiff(data / "images" / "c0.tif")
    return data


def _nan_mask_dataset(tmp: Path) -> Path:
    data = dataset(tmp / "data")
    (data / "masks" / "c1.png").unlink()
    nan_mask_tiff(data / "masks" / "c1.tif")
    return data


def _killed_first_write(tmp: Path) -> list:
    run = resumable_run(tmp / "run", dataset(tmp / "data"))
    from s2mnet.models import create_model

    weights = create_model("unet", in_channels=3, num_classes=1, base_width=4).state_dict()
    save_weights(run / LAST_WEIGHTS, weights, {"epoch": 1, "val_dice": 0.5})
    (run / f".{TRAIN_STATE}.k1ll3d.tmp.safetensors").write_bytes(b"")  # what the kill left
    return ["train", "--resume", run]


def _wrong_state(tmp: Path) -> list:
    run = resumable_run(tmp / "run", dataset(tmp / "data"))
    save_training_state(run / TRAIN_STATE, {"trainer": {"model": {}}, "rows": []})  # valid JSON, wrong shape
    return ["train", "--resume", run]


def _claimed(tmp: Path) -> list:
    out = tmp / "out"
    out.mkdir()
    (out / CLAIM_FILE).write_text(str(os.getpid()))  # a live process holds the folder
    return ["predict", "--run", run_folder(tmp / "run"), "--output", out, _images(tmp, rgb_a)]


def _not_empty(tmp: Path) -> list:
    out = tmp / "out"
    out.mkdir()
    (out / "notes.txt").write_text("the user's notes")
    return ["predict", "--run", run_folder(tmp / "run"), "--output", out, _images(tmp, rgb_a)]


def _foreign_clash(tmp: Path) -> list:
    out = tmp / "out"
    out.mkdir()
    (out / "a.png").write_bytes(b"the user's own a.png")
    return ["predict", "--run", run_folder(tmp / "run"), "--output", out, "--overwrite", _images(tmp, rgb_a)]


def rgb_a(folder: Path) -> Path:
    return rgb(folder / "a.png")


def _predict(tmp: Path, **changes: object) -> list:
    return [
        "predict",
        "--run",
        run_folder(tmp / "run", **changes),
        "--output",
        tmp / "out",
        _images(tmp, rgb_a),
    ]


def _evaluate(tmp: Path, **changes: object) -> list:
    return ["evaluate", "--run", run_folder(tmp / "run", dataset(tmp / "data"), **changes), "--device", "cpu"]


CATALOGUE = [
    # --- images and masks -------------------------------------------------------------------------------
    Row("float TIFF image with NaN/inf/>1 → analyze", lambda t: ["analyze", "--data", _nan_dataset(t)],
        ("c0.tif", "NaN or infinite")),
    Row("float TIFF image with NaN/inf/>1 → train", lambda t: ["train", "--data", _nan_dataset(t), "--out",
        t / "run", "--device", "cpu"], ("c0.tif", "NaN or infinite")),
    Row("float TIFF image with NaN/inf/>1 → predict", lambda t: ["predict", "--run", run_folder(t / "run"),
        "--output", t / "out", float_tiff(t / "scan.tif")], ("scan.tif", "NaN or infinite")),
    Row("float TIFF mask with NaN → analyze", lambda t: ["analyze", "--data", _nan_mask_dataset(t)],
        ("c1.tif", "NaN or infinite")),
    Row("float TIFF mask with NaN → train", lambda t: ["train", "--data", _nan_mask_dataset(t), "--out",
        t / "run", "--device", "cpu"], ("c1.tif", "NaN or infinite")),
    Row("100000² zlib TIFF (tiny on disk) → predict", lambda t: ["predict", "--run", run_folder(t / "run"),
        "--output", t / "out", tiff_bomb(t / "bomb.tif")], ("bomb.tif", "100000x100000", "exceeds")),
    Row("100000² zlib TIFF as a dataset mask → analyze", lambda t: ["analyze", "--data",
        _bomb_mask_dataset(t)], ("c2.tif", "exceeds the limit")),
    # --- predict: all or nothing, claimed folders ---------------------------------------------------------
    Row("folder with one truncated image among good ones → predict", lambda t: ["predict", "--run",
        run_folder(t / "run"), "--output", t / "out", _images(t, rgb_a, lambda f: truncated_png(f / "b.png"),
        lambda f: rgb(f / "c.png"))], ("b.png", "truncated or not an image")),
    Row("output folder held by another s2m predict", _claimed, ("out", "another s2m predict", "process")),
    Row("non-empty output folder without --overwrite", _not_empty, ("out", "not empty", "notes.txt")),
    Row("--overwrite onto a file predict did not write", _foreign_clash, ("a.png", "not written by s2m")),
    # --- run.json with absurd values -----------------------------------------------------------------------
    Row("run.json model.in_channels = 1e9 → evaluate", lambda t: _evaluate(t, model_in_channels=1e9),
        ("run.json", "'model.in_channels'", "1..64")),
    Row("run.json model.num_classes = 1e9 → predict", lambda t: _predict(t, model_num_classes=1e9),
        ("run.json", "'model.num_classes'", "1..1024")),
    Row("run.json model.base_width = 10**7 → predict", lambda t: _predict(t, model_base_width=10**7),
        ("run.json", "'model.base_width'")),
    Row("run.json plan.size = 1e7 → predict", lambda t: _predict(t, plan_size=1e7), ("run.json", "size")),
    Row("run.json plan.size = -5 → evaluate", lambda t: _evaluate(t, plan_size=-5), ("run.json", "size")),
    Row("run.json plan.mode = 'zoom' → predict", lambda t: _predict(t, plan_mode="zoom"), ("'plan.mode'",)),
    Row('run.json "data": "../../../../etc" → evaluate', lambda t: _evaluate(t, data="../../../../etc"),
        ("run.json", "'data'", "leaving the run folder")),
    Row("run.json is a JSON array → predict", lambda t: _array_run_json(t), ("run.json", "JSON object")),
    Row("ONNX metadata plan.size = 1e7 → predict --model", lambda t: hostile_onnx(t, size=1e7),
        ("model.onnx", "'plan.size'")),
    Row("ONNX metadata num_classes = 1e9 → predict --model", lambda t: hostile_onnx(t, num_classes=BILLION),
        ("model.onnx", "damaged s2mnet metadata (num_classes 1000000000")),
    # --- training state -------------------------------------------------------------------------------------
    Row("training state header: valid JSON, wrong structure → train --resume", _wrong_state,
        (TRAIN_STATE, "damaged training state", "trainer.")),
    Row("run killed during its first training-state write → train --resume", _killed_first_write,
        (TRAIN_STATE, "epoch 1 finished", "killed while writing", "temporary file(s) removed")),
]  # fmt: skip


def hostile_onnx(tmp: Path, num_classes: str = "1", **plan: object) -> list:
    """``s2m predict --model`` with a 1×1-convolution ONNX model whose s2mnet metadata is ``plan``."""
    pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((1, 3, 1, 1), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["image", "w"], ["logits"])],
        "tiny",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["b", 3, "h", "w"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["b", 1, "h", "w"])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    meta = {"s2mnet.plan": json.dumps({**PLAN, **plan}), "s2mnet.num_classes": num_classes}
    helper.set_model_props(model, meta)
    onnx.save(model, str(tmp / "model.onnx"))
    return ["predict", "--model", tmp / "model.onnx", "--output", tmp / "out", _images(tmp, rgb_a)]


def _bomb_mask_dataset(tmp: Path) -> Path:
    data = dataset(tmp / "data")
    (data / "masks" / "c2.png").unlink()
    tiff_bomb(data / "masks" / "c2.tif")
    return data


def _array_run_json(tmp: Path) -> list:
    argv = _predict(tmp)
    (tmp / "run" / "run.json").write_text("[1, 2, 3]")
    return argv


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(path.relative_to(root)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


@pytest.mark.parametrize("row", CATALOGUE, ids=[row.name for row in CATALOGUE])
def test_hostile_input_gets_one_error_line_and_nothing_is_written(
    row: Row, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [str(part) for part in row.setup(tmp_path)]
    before = _snapshot(tmp_path)
    capsys.readouterr()
    rss, start = _peak_rss_mb(), time.perf_counter()
    status = main(argv)
    elapsed = time.perf_counter() - start
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if not line.startswith("warning: ")]
    assert status == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for fragment in row.expected:
        assert fragment in lines[0], (fragment, lines[0])
    assert elapsed < TIME_BUDGET_S
    assert _peak_rss_mb() - rss < MEMORY_BUDGET_MB
    after = _snapshot(tmp_path)
    if "killed during" in row.name:  # the truth is told and the 0-byte temporary is cleaned
        assert {name for name in before if ".tmp" in name} and not {name for name in after if ".tmp" in name}
        before = {name: value for name, value in before.items() if ".tmp" not in name}
    assert after == before, "files were written or changed"
    assert not (tmp_path / "out").exists() or sorted(p.name for p in (tmp_path / "out").iterdir()) in (
        [CLAIM_FILE],
        ["notes.txt"],
        ["a.png"],
    )


# --- degenerate data and predictions: warned, not refused ---------------------------------------------


class Constant(torch.nn.Module):
    """Stand-in network predicting the same logit everywhere (all foreground or all background)."""

    def __init__(self, logit: float) -> None:
        super().__init__()
        self.logit = logit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full_like(x[:, :1], self.logit)


def _stand_in(monkeypatch: pytest.MonkeyPatch, module: object, logit: float) -> None:
    from s2mnet.engine.rundir import read_run_config

    monkeypatch.setattr(
        module, "load_model", lambda run, which="best", device="cpu": (Constant(logit), read_run_config(run))
    )


WARNINGS = [
    ("all masks empty → analyze", "empty", "all 4 masks are empty"),
    ("masks covering the whole image → analyze", "full", "are foreground and background swapped"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "masks", "expected"), WARNINGS, ids=[row[0] for row in WARNINGS])
def test_degenerate_data_is_warned_about(
    name: str, masks: str, expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["analyze", "--data", str(dataset(tmp_path / "data", masks=masks))]) == 0
    err = capsys.readouterr().err
    assert err.startswith("warning: ") and expected in err and "Traceback" not in err


def test_one_class_only_is_warned_about() -> None:
    from s2mnet.data.checks import degenerate_data_warnings

    fp = {"cases": 3, "root": "d", "num_classes": 4, "classes_present": [0, 2], "empty_mask_share": 0.0}
    (line,) = degenerate_data_warnings(fp)
    assert "only class 2 appears" in line and "1, 3 never appear" in line


@pytest.mark.parametrize(("logit", "expected"), [(-20.0, "(nearly) empty on 2 of 2"), (20.0, "cover >= 95%")])
def test_evaluate_warns_about_trivial_predictions_and_prints_the_trivial_scores(
    logit: float,
    expected: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _stand_in(monkeypatch, evaluate_module, logit)
    run = run_folder(tmp_path / "run", dataset(tmp_path / "data"))
    assert main(["evaluate", "--run", str(run), "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    assert "warning: the predictions " in captured.err and expected in captured.err
    assert "trivial baselines: Dice" in captured.out
    trivial = json.loads((run / "eval_test" / "metrics.json").read_text())["trivial"]
    # Truth: a 12² square in 32²; all foreground → 2·144/(144+1024); all empty → 0 (truth not empty).
    assert trivial["dice_all_foreground"] == pytest.approx(2 * 144 / (144 + 1024))
    assert trivial["dice_all_empty"] == 0.0


def test_predict_warns_about_empty_predictions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _stand_in(monkeypatch, predict_module, -20.0)
    argv = _predict(tmp_path)
    assert main([str(a) for a in argv]) == 0
    err = capsys.readouterr().err
    assert "warning: the predictions are (nearly) empty on 1 of 1 images" in err
    out = tmp_path / "out"
    assert (out / "a.png").is_file() and not (out / CLAIM_FILE).exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".s2m_predict.tmp")]


def test_trivial_scores_of_a_multiclass_map() -> None:
    truth = np.zeros((4, 4), np.uint8)
    truth[:2, :2], truth[2:, 2:] = 1, 2  # class 1 and 2 cover 4 of 16 pixels each
    full, empty = evaluate_module._trivial_dice(truth, num_classes=3, fov=None, regions=None)
    assert full == pytest.approx(2 * 4 / (4 + 16)) and empty == 0.0


def test_a_claim_left_by_a_killed_predict_is_taken_over(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import subprocess
    import sys

    from s2mnet.data.mask_files import STAGING_PREFIX

    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    dead_pid = int(finished.stdout)  # that process has exited: its claim is stale
    out = tmp_path / "out"
    (out / f"{STAGING_PREFIX}{dead_pid}").mkdir(parents=True)
    (out / f"{STAGING_PREFIX}{dead_pid}" / "half.png").write_bytes(b"half a mask")
    (out / CLAIM_FILE).write_text(str(dead_pid))
    argv = ["predict", "--run", run_folder(tmp_path / "run"), "--output", out, _images(tmp_path, rgb_a)]
    assert main([str(a) for a in argv]) == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == [".s2m_predict.json", "a.png"]
