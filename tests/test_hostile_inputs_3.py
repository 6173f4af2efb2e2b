"""Catalogue of hostile inputs, round three: lost files, outputs inside inputs, partial outputs, wrong
outputs, tracebacks, hangs, signals and misleading answers (docs/tool.md, "Bad input").

Every :data:`CATALOGUE` row runs the real command line in-process and checks: exit status 2, exactly one
stderr line ``error: ...`` holding the expected fragments (no traceback), and every file under the test's
folder byte-identical afterwards (nothing written, nothing replaced). The tests below the table cover the
cases that need more than one command (a rerun), a signal, a file-size limit or a warning.
"""

from __future__ import annotations

import errno
import json
import os
import re
import resource
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from s2mnet.cli import main
from s2mnet.nnunet.convert import STAGING_PREFIX as CONVERT_STAGING
from test_hostile_inputs import Row, dataset, hostile_onnx, rgb, rgb_a, run_folder, truncated_png

NESTED = "[" * 100_000 + "]" * 100_000  # deeper than Python's JSON parser can go


# --- building blocks -----------------------------------------------------------------------------------


def plans_folder(tmp: Path, **configurations: object) -> Path:
    """``tmp/pre/Dataset777_Fake/nnUNetPlans.json`` with a 2d configuration changed by ``configurations``."""
    folder = tmp / "pre" / "Dataset777_Fake"
    folder.mkdir(parents=True)
    plans = {"configurations": {"2d": {"patch_size": [64, 64], "batch_size": 2}, **configurations}}
    (folder / "nnUNetPlans.json").write_text(json.dumps(plans))
    return tmp / "pre"


def add_config(tmp: Path, *extra: str, **configurations: object) -> list:
    return ["nnunet", "add-config", "--dataset", "777", "--preprocessed", plans_folder(tmp, **configurations),
            *extra]  # fmt: skip


def _patch(tmp: Path, patch: list) -> list:
    return add_config(tmp, **{"2d": {"patch_size": patch, "batch_size": 2}})


def _user_file(tmp: Path) -> Path:
    path = tmp / "notes.json"
    path.write_text('{"the user": "keeps this"}')
    return path


def _nested_run_json(tmp: Path) -> list:
    run = run_folder(tmp / "run")
    (run / "run.json").write_text(NESTED)
    return ["predict", "--run", run, "--output", tmp / "out", _input(tmp)]


def _input(tmp: Path) -> Path:
    folder = tmp / "in"
    folder.mkdir(exist_ok=True)
    rgb_a(folder)
    return folder


def _nested_splits(tmp: Path) -> list:
    (tmp / "splits.json").write_text(NESTED)
    return ["train", "--data", dataset(tmp / "data"), "--out", tmp / "run", "--splits", tmp / "splits.json",
            "--epochs", "1", "--device", "cpu"]  # fmt: skip


def _nested_palette(tmp: Path) -> list:
    data = dataset(tmp / "data")
    (data / "palette.json").write_text(NESTED)
    return ["analyze", "--data", data]


def _nested_onnx(tmp: Path) -> list:
    argv = hostile_onnx(tmp)
    import onnx

    model = onnx.load(str(tmp / "model.onnx"))
    for prop in model.metadata_props:
        if prop.key == "s2mnet.plan":
            prop.value = NESTED
    onnx.save(model, str(tmp / "model.onnx"))
    return argv


def _mismatched_onnx(tmp: Path) -> list:
    return hostile_onnx(tmp, num_classes="3")  # the network outputs 1 channel


def _size_mismatch(tmp: Path) -> list:
    data = dataset(tmp / "data")
    Image.fromarray(np.zeros((30, 32), np.uint8)).save(data / "masks" / "c2.png")
    return ["nnunet", "convert", "--data", data, "--dataset-id", "501", "--out", tmp / "raw"]


def _truncated_later_mask(tmp: Path) -> list:
    data = dataset(tmp / "data", n=6)
    truncated_png(data / "masks" / "c5.png")
    return ["nnunet", "convert", "--data", data, "--dataset-id", "501", "--out", tmp / "raw"]


def _fifo(tmp: Path) -> Path:
    os.mkfifo(tmp / "pipe.png")
    return tmp / "pipe.png"


CATALOGUE = [
    # --- a user's file is never lost ------------------------------------------------------------------------
    Row("evaluate --json onto the run's own run.json", lambda t: ["evaluate", "--run", run_folder(t / "run"),
        "--json", t / "run" / "run.json", "--overwrite"], ("run.json", "over an input")),
    Row("analyze --json onto a data set image, even with --overwrite", lambda t: ["analyze", "--data",
        dataset(t / "data"), "--json", t / "data" / "images" / "c0.png", "--overwrite"], ("c0.png", "input")),
    Row("analyze --json onto an existing file", lambda t: ["analyze", "--data", dataset(t / "data"), "--json",
        _user_file(t)], ("notes.json", "already exists", "--overwrite")),
    Row("evaluate --json onto an existing file", lambda t: ["evaluate", "--run", run_folder(t / "run"),
        "--json", _user_file(t)], ("notes.json", "already exists")),
    Row("evaluate --json given a folder", lambda t: ["evaluate", "--run", run_folder(t / "run"), "--json", t],
        ("is a folder",)),
    # --- outputs inside inputs ------------------------------------------------------------------------------
    Row("train --out inside --data", lambda t: ["train", "--data", dataset(t / "data"), "--out",
        t / "data" / "run"], ("run", "inside the --data folder")),
    Row("train --data inside --out", lambda t: ["train", "--data", dataset(t / "data"), "--out", t],
        ("lies inside this --out folder",)),
    Row("nnunet convert --out inside --data", lambda t: ["nnunet", "convert", "--data", dataset(t / "data"),
        "--dataset-id", "501", "--out", t / "data" / "raw"], ("Dataset501_data", "inside the --data")),
    Row("predict --output inside the --input folder", lambda t: ["predict", "--run", run_folder(t / "run"),
        "--output", _input(t) / "masks", "--input", t / "in"], ("masks", "inside the --input folder")),
    # --- wrong outputs accepted silently --------------------------------------------------------------------
    Row("nnunet convert: a 32x30 mask for a 32x32 image", _size_mismatch,
        ("c2.png", "32x30", "c2.png is 32x32")),
    Row("ONNX metadata says 3 classes, the network outputs 1 channel", _mismatched_onnx,
        ("model.onnx", "num_classes=3")),
    Row("add-config: plans patch size 1e300", lambda t: add_config(t, **{"2d": {"patch_size": [1e300, 64]}}),
        ("nnUNetPlans.json", "patch size", "1..4096")),
    Row("train --time-limit -1", lambda t: ["train", "--data", dataset(t / "data"), "--out", t / "run",
        "--time-limit", "-1"], ("--time-limit -1", "(0, 1e9]")),
    Row("train --time-limit 0", lambda t: ["train", "--data", dataset(t / "data"), "--out", t / "run",
        "--time-limit", "0"], ("--time-limit 0",)),
    Row("train --lr nan", lambda t: ["train", "--data", dataset(t / "data"), "--out", t / "run", "--lr",
        "nan"], ("--lr nan", "finite")),
    Row("train --resume --time-limit inf", lambda t: ["train", "--resume", run_folder(t / "run"),
        "--time-limit", "inf"], ("--time-limit inf", "finite")),
    Row("demo --time-limit 0", lambda t: ["demo", "--out", t / "demo", "--time-limit", "0"],
        ("--time-limit 0", "(0, 1e9]")),
    Row("bench spectral --threshold nan", lambda t: ["bench", "spectral", "--data", dataset(t / "data"),
        "--out", t / "spectral", "--threshold", "nan"], ("--threshold nan", "finite")),
    # --- tracebacks -----------------------------------------------------------------------------------------
    Row("--budget nan", lambda t: ["train", "--data", dataset(t / "data"), "--out", t / "run", "--budget",
        "nan"], ("--budget nan", "finite")),
    Row("--budget 1e400", lambda t: ["train", "--data", dataset(t / "data"), "--out", t / "run", "--budget",
        "1e400"], ("--budget inf", "finite")),
    Row("deeply nested run.json", _nested_run_json, ("run.json", "nested too deeply")),
    Row("deeply nested split file", _nested_splits, ("splits.json", "nested too deeply")),
    Row("deeply nested palette.json", _nested_palette, ("palette.json", "nested too deeply")),
    Row("deeply nested ONNX metadata", _nested_onnx, ("model.onnx", "nested too deeply")),
    Row("deeply nested nnU-Net plans", lambda t: _nested_plans(t), ("nnUNetPlans.json", "nested too deeply")),
    Row('add-config: plans "2d": 5', lambda t: add_config(t, **{"2d": 5}), ("nnUNetPlans.json", "'2d'",
        "not a JSON object")),
    Row('add-config: plans patch size ["a", "b"]', lambda t: _patch(t, ["a", "b"]),
        ("nnUNetPlans.json", "patch size")),
    Row("add-config: plans patch size [null, 5]", lambda t: _patch(t, [None, 5]),
        ("nnUNetPlans.json", "patch size")),
    Row("predict --input /dev/null", lambda t: ["predict", "--run", run_folder(t / "run"), "--output",
        t / "out", "--input", "/dev/null"], ("/dev/null", "not a regular file")),
    Row("predict --input a FIFO", lambda t: ["predict", "--run", run_folder(t / "run"), "--output", t / "out",
        "--input", _fifo(t)], ("pipe.png", "not a regular file")),
    # --- hangs ----------------------------------------------------------------------------------------------
    Row("add-config --arch-kwargs with a width of 50000", lambda t: add_config(t, "--arch-kwargs",
        '{"base_width": 50000}'), ("--arch-kwargs", "base_width", "50000")),
]  # fmt: skip


def _nested_plans(tmp: Path) -> list:
    argv = add_config(tmp)
    (tmp / "pre" / "Dataset777_Fake" / "nnUNetPlans.json").write_text(NESTED)
    return argv


def _contents(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and not path.is_symlink()
    }


def check_one_error_line(err: str, expected: tuple[str, ...]) -> str:
    lines = [line for line in err.strip().splitlines() if not line.startswith("warning: ")]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for fragment in expected:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


@pytest.mark.parametrize("row", CATALOGUE, ids=[row.name for row in CATALOGUE])
def test_hostile_input_gets_one_error_line_and_nothing_changes(
    row: Row, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [str(part) for part in row.setup(tmp_path)]
    before = _contents(tmp_path)
    capsys.readouterr()
    status = main(argv)
    err = capsys.readouterr().err
    assert status == 2, err
    check_one_error_line(err, row.expected)
    assert _contents(tmp_path) == before, "files were written or changed"
    assert not list(tmp_path.rglob(f"{CONVERT_STAGING}*")), "a staging folder was left"


# --- partial outputs: all or nothing, and a rerun always works -------------------------------------------


def test_convert_failing_on_a_later_case_leaves_nothing_and_a_killed_staging_folder_does_not_block(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [str(part) for part in _truncated_later_mask(tmp_path)]
    assert main(argv) == 2
    check_one_error_line(capsys.readouterr().err, ("c5.png",))
    raw = tmp_path / "raw"
    assert not raw.exists() or list(raw.iterdir()) == []
    (tmp_path / "data" / "masks" / "c5.png").unlink()
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(tmp_path / "data" / "masks" / "c5.png")
    stale = raw / f"{CONVERT_STAGING}Dataset501_data.999999"  # left by a killed conversion
    stale.mkdir(parents=True)
    (stale / "half.png").write_bytes(b"half")
    assert main(argv) == 0, capsys.readouterr().err
    assert sorted(p.name for p in raw.iterdir()) == ["Dataset501_data"]
    assert main([*argv, "--overwrite"]) == 0  # an earlier conversion is replaced
    assert (raw / "Dataset501_data" / "dataset.json").is_file()


def test_predict_writes_its_record_before_publishing_the_masks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from s2mnet.data import mask_files

    def disk_full(path: object, obj: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(mask_files, "atomic_write_json", disk_full)
    argv = ["predict", "--run", run_folder(tmp_path / "run"), "--output", tmp_path / "out", _input(tmp_path)]
    assert main([str(a) for a in argv]) == 2
    check_one_error_line(capsys.readouterr().err, (".s2m_predict.json", "no space left"))
    assert not (tmp_path / "out").exists()  # no mask published, the folder it created removed
    monkeypatch.undo()
    assert main([str(a) for a in argv]) == 0  # the rerun is not refused


def test_a_full_disk_names_the_final_mask_not_the_staging_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from s2mnet.data import mask_files

    def disk_full(path: object, *_args: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(mask_files, "write_mask", disk_full)
    out = tmp_path / "out"
    argv = ["predict", "--run", run_folder(tmp_path / "run"), "--output", out, _input(tmp_path)]
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    check_one_error_line(err, (str(out / ""), "no space left"))
    assert mask_files.STAGING_PREFIX not in err and not out.exists()


def test_staged_folder_errors_name_the_final_folder(tmp_path: Path) -> None:
    from s2mnet.engine.outputs import staged_dir

    final = tmp_path / "eval"
    with pytest.raises(OSError) as caught, staged_dir(final) as stage:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(stage / "metrics.json"))
    assert caught.value.filename == str(final / "metrics.json") and not final.exists()


def test_sigterm_during_predict_exits_143_and_leaves_no_lock_or_staging_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from s2mnet.inference import predict as predict_module

    def killed(*_args: object, **_kwargs: object) -> None:
        os.kill(os.getpid(), signal.SIGTERM)  # what `timeout` or a scheduler sends
        raise AssertionError("SIGTERM did not stop the command")

    monkeypatch.setattr(predict_module, "predict_image_probs", killed)
    out = tmp_path / "out"
    out.mkdir()
    argv = ["predict", "--run", run_folder(tmp_path / "run"), "--output", out, _input(tmp_path)]
    assert main([str(a) for a in argv]) == 143
    assert capsys.readouterr().err.strip() == "terminated"
    assert list(out.iterdir()) == []  # no claim, no staging folder: a rerun is not refused
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is the caller's again


def test_a_file_size_limit_while_writing_analyze_json_is_one_line(tmp_path: Path) -> None:
    """RLIMIT_FSIZE with SIGXFSZ ignored: the write fails with EFBIG; the file named, nothing left."""
    data = dataset(tmp_path / "data")
    code = (
        "import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
        "resource.setrlimit(resource.RLIMIT_FSIZE, (64, 64)); from s2mnet.cli import main; "
        "sys.exit(main(sys.argv[1:]))"
    )
    argv = ["analyze", "--data", str(data), "--json", str(tmp_path / "fp.json"), "--device", "cpu"]
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, check=False)
    assert done.returncode == 2, done.stderr
    check_one_error_line(done.stderr, ("fp.json", "file too large"))
    assert not list(tmp_path.glob("*fp.json*"))  # neither the file nor its temporary
    assert resource.getrlimit(resource.RLIMIT_FSIZE)  # this process is untouched


# --- hangs and misleading answers: skipped, followed, said ----------------------------------------------


def test_analyze_skips_a_fifo_named_like_an_image_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = dataset(tmp_path / "data")
    os.mkfifo(data / "images" / "c9.png")
    assert main(["analyze", "--data", str(data), "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "warning: skipped 1 entries that are not regular files" in err and "c9.png" in err


def test_a_symlinked_images_folder_is_followed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = dataset(tmp_path / "data")
    elsewhere = tmp_path / "elsewhere"
    (data / "images").rename(elsewhere)
    (data / "images").symlink_to(elsewhere, target_is_directory=True)
    assert main(["analyze", "--data", str(data), "--device", "cpu"]) == 0, capsys.readouterr().err
    assert "cases" in capsys.readouterr().out


@pytest.mark.parametrize("budget", ["0.01", "1e9"])
def test_tiny_and_huge_budgets_are_planned_not_refused(budget: str) -> None:
    """docs/tool.md: a budget buying few steps is planned with a warning; a huge one is capped."""
    from s2mnet.planning.budget import RunCosts, fit_to_budget

    plan = {"batch_size": 4, "samples_per_epoch": 16, "reasons": {}}
    planned, warnings = fit_to_budget(plan, 60 * float(budget), RunCosts(0.5, 1.0, 10.0), train_cases=8)
    assert planned["epochs"] >= 1
    if budget == "0.01":
        assert warnings and "will not converge" in warnings[0] and "budget_s" not in warnings[0]
    else:
        assert "capped at the paper's run length" in planned["reasons"]["epochs"]


def test_every_json_reader_is_guarded() -> None:
    """Every JSON the tool reads goes through s2mnet.io_utils (read_json / parse_json)."""
    root = Path(__file__).resolve().parents[1] / "src" / "s2mnet"
    flags = {"cli/common.py", "cli/bench.py", "nnunet/commands.py"}  # JSON values of flags, not files
    allowed = {"io_utils.py", "planning/presets/entries.py", *flags}  # entries: the package's own data
    offenders = [
        str(path.relative_to(root))
        for path in root.rglob("*.py")
        if re.search(r"json\.loads?\(", path.read_text(encoding="utf-8"))
        and str(path.relative_to(root)) not in allowed
        and not str(path.relative_to(root)).startswith("bench/")
    ]
    assert offenders == []


TINY_TRAIN = ["--epochs", "1", "--model", "unet", "--model-arg", "base_width=4", "--size", "32", "--device",
              "cpu", "--quiet", "--no-tensorboard"]  # fmt: skip


def test_a_full_disk_while_a_new_run_starts_leaves_no_run_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from s2mnet.engine import train as train_module

    def disk_full(run_dir: Path, config: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(Path(run_dir) / "run.json"))

    monkeypatch.setattr(train_module, "write_run_config", disk_full)
    argv = ["train", "--data", dataset(tmp_path / "data"), "--out", tmp_path / "run", *TINY_TRAIN]
    assert main([str(a) for a in argv]) == 2
    check_one_error_line(capsys.readouterr().err, ("run.json", "no space left"))
    assert not (tmp_path / "run").exists()  # a rerun is not refused


def test_sigterm_during_train_exits_143_with_the_run_left_resumable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from s2mnet.engine import train as train_module

    def killed(*_args: object, **_kwargs: object) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("SIGTERM did not stop the command")

    monkeypatch.setattr(train_module, "fit", killed)
    argv = ["train", "--data", dataset(tmp_path / "data"), "--out", tmp_path / "run", *TINY_TRAIN]
    assert main([str(a) for a in argv]) == 143
    assert capsys.readouterr().err.strip() == "terminated"
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "running"  # --resume RUN


def test_an_onnxruntime_failure_during_a_run_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    argv = [str(part) for part in hostile_onnx(tmp_path)]
    import onnxruntime

    def fails(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Non-zero status code\nmore lines")

    monkeypatch.setattr(onnxruntime.InferenceSession, "run", fails)
    assert main(argv) == 2
    check_one_error_line(capsys.readouterr().err, ("model.onnx", "onnxruntime failed", "RUNTIME_EXCEPTION"))
    assert not (tmp_path / "out").exists()


def test_evaluate_refuses_a_run_folder_inside_its_data_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = dataset(tmp_path / "data")
    run = run_folder(data / "run", data)  # made before train refused it
    before = _contents(tmp_path)
    assert main(["evaluate", "--run", str(run), "--device", "cpu"]) == 2
    check_one_error_line(capsys.readouterr().err, ("run", "inside the data folder"))
    assert _contents(tmp_path) == before


def test_a_fifo_in_an_nnunet_raw_dataset_is_refused_not_opened(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Layouts read by name (nnU-Net's imagesTr) reach the reader, which never opens a pipe."""
    root = tmp_path / "Dataset001_X"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    for i in range(3):
        rgb(root / "imagesTr" / f"c{i}_0000.png")
        Image.fromarray(np.zeros((32, 32), np.uint8)).save(root / "labelsTr" / f"c{i}.png")
    os.mkfifo(root / "imagesTr" / "c3_0000.png")
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(root / "labelsTr" / "c3.png")
    labels = {"background": 0, "foreground": 1}
    meta = {"channel_names": {"0": "R"}, "labels": labels, "file_ending": ".png", "numTraining": 4}
    (root / "dataset.json").write_text(json.dumps(meta))
    assert main(["analyze", "--data", str(root), "--device", "cpu"]) == 2
    check_one_error_line(capsys.readouterr().err, ("c3_0000.png", "not a regular file"))


def test_a_time_limit_shorter_than_the_first_epoch_says_so_and_leaves_a_resumable_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tiny = [flag for flag in TINY_TRAIN if flag != "--quiet"]
    argv = [
        "train",
        "--data",
        dataset(tmp_path / "data"),
        "--out",
        tmp_path / "run",
        *tiny,
        "--time-limit",
        "1e-6",
    ]
    assert main([str(a) for a in argv]) == 0
    out = capsys.readouterr().out
    assert "no epoch finished within the time limit" in out and "best validation Dice -inf" not in out
    stored = json.loads((tmp_path / "run" / "run.json").read_text())
    assert stored["stopped_by_time"] and stored["epochs_run"] == 0  # s2m train --resume continues it
