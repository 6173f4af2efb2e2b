"""The ``s2m`` command line: help, version, and one clear error line for every bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from s2mnet import __version__
from s2mnet.cli import main


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def assert_one_error_line(err: str, *fragments: object) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    for fragment in fragments:
        assert str(fragment) in lines[0], (fragment, err)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from s2mnet.data.synthetic import make_synthetic_dataset

    return make_synthetic_dataset(tmp_path_factory.mktemp("data"), n=6, size=32, seed=0)


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in ("demo", "analyze", "train", "evaluate", "predict", "models"):
        assert command in out


@pytest.mark.parametrize("command", ["demo", "analyze", "train", "evaluate", "predict"])
def test_each_command_has_help(capsys: pytest.CaptureFixture[str], command: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: s2m " + command in capsys.readouterr().out


def test_train_help_shows_every_plan_override(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    for flag in (
        "--size",
        "--patch-size",
        "--mode",
        "--preprocess",
        "--epochs",
        "--batch-size",
        "--samples-per-epoch",
        "--lr",
        "--num-classes",
        "--val-every",
        "--patience",
        "--workers",
        "--seed",
        "--device",
        "--loss",
        "--model",
        "--amp",
        "--overwrite",
    ):
        assert flag in out, flag


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"s2m {__version__}"


def test_no_command_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run_cli(capsys)
    assert status == 2
    assert "usage: s2m" in out


def test_console_script_and_light_import() -> None:
    """``s2m`` is installed, and importing the CLI does not import torch (fast start-up)."""
    code = "import sys, s2mnet.cli; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
    script = Path(sys.executable).with_name("s2m")
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == f"s2m {__version__}"


def test_train_missing_data_folder(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = tmp_path / "no_such_data"
    status, _, err = run_cli(capsys, "train", "--data", missing, "--out", tmp_path / "run")
    assert status == 2
    assert_one_error_line(err, missing, "not found")
    assert not (tmp_path / "run").exists()


def test_train_empty_data_folder(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    status, _, err = run_cli(capsys, "train", "--data", empty, "--out", tmp_path / "run")
    assert status == 2
    assert_one_error_line(err, empty, "no image files")
    assert not (tmp_path / "run").exists()


def test_analyze_missing_data_folder(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    status, _, err = run_cli(capsys, "analyze", "--data", tmp_path / "nothing")
    assert status == 2
    assert_one_error_line(err, tmp_path / "nothing")


def test_train_refuses_existing_output_folder(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, tiny_data: Path
) -> None:
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    status, _, err = run_cli(capsys, "train", "--data", tiny_data, "--out", out, "--epochs", 1)
    assert status == 2
    assert_one_error_line(err, out, "--overwrite")
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert (out / "notes.txt").read_text() == "mine"


def test_overwrite_refused_for_a_folder_that_is_not_a_run(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, tiny_data: Path
) -> None:
    out = tmp_path / "photos"
    out.mkdir()
    (out / "holiday.png").write_bytes(b"not really a png")
    status, _, err = run_cli(capsys, "train", "--data", tiny_data, "--out", out, "--overwrite")
    assert status == 2
    assert_one_error_line(err, out, "run.json", "nothing was changed")
    assert (out / "holiday.png").read_bytes() == b"not really a png"


def test_output_path_that_is_a_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, tiny_data: Path
) -> None:
    target = tmp_path / "file.txt"
    target.write_text("keep")
    status, _, err = run_cli(capsys, "train", "--data", tiny_data, "--out", target)
    assert status == 2
    assert_one_error_line(err, target, "not a folder")
    assert target.read_text() == "keep"


def test_demo_refuses_existing_output_folder(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "thesis.tex").write_text("precious")
    status, _, err = run_cli(capsys, "demo", "--out", tmp_path)
    assert status == 2
    assert_one_error_line(err, tmp_path, "not empty")
    assert (tmp_path / "thesis.tex").read_text() == "precious"


@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_missing_run_folder(capsys: pytest.CaptureFixture[str], tmp_path: Path, command: str) -> None:
    missing = tmp_path / "no_run"
    extra = ["--input", tmp_path, "--output", tmp_path / "pred"] if command == "predict" else []
    status, _, err = run_cli(capsys, command, "--run", missing, *extra)
    assert status == 2
    assert_one_error_line(err, missing, "run folder not found")


def test_folder_without_run_json(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    status, _, err = run_cli(capsys, "evaluate", "--run", tmp_path)
    assert status == 2
    assert_one_error_line(err, tmp_path / "run.json", "missing")


def test_predict_missing_input(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"model": {"name": "s2mnet"}}))
    missing = tmp_path / "scans"
    status, _, err = run_cli(capsys, "predict", "--run", run, "--input", missing, "--output", tmp_path / "o")
    assert status == 2
    assert_one_error_line(err, missing, "not found")


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--epochs", "0"], "--epochs 0"),
        (["--batch-size", "-2"], "--batch-size -2"),
        (["--model-arg", "k16"], "--model-arg k16"),
        pytest.param(
            ["--device", "cuda:7"],
            "--device cuda:7",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA present"),
        ),
    ],
)
def test_bad_flag_values(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, tiny_data: Path, argv: list[str], fragment: str
) -> None:
    status, _, err = run_cli(capsys, "train", "--data", tiny_data, "--out", tmp_path / "run", *argv)
    assert status == 2
    assert_one_error_line(err, fragment)
    assert not (tmp_path / "run").exists()


def test_unknown_model_name(capsys: pytest.CaptureFixture[str], tmp_path: Path, tiny_data: Path) -> None:
    status, _, err = run_cli(
        capsys, "train", "--data", tiny_data, "--out", tmp_path / "run", "--model", "resnet9000"
    )
    assert status == 2
    assert_one_error_line(err, "resnet9000")
    assert not (tmp_path / "run").exists()


def test_models_lists_the_default(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run_cli(capsys, "models")
    assert status == 0
    assert "s2mnet" in out.split()


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--data", "/nonexistent/data", "--out", "/tmp/never"],
        ["train", "--resume", "/nonexistent/run"],
        ["analyze", "--data", "/nonexistent/data"],
        ["evaluate", "--run", "/nonexistent/run"],
        ["predict", "--run", "/nonexistent/run", "--output", "/tmp/never", "/tmp"],
        ["export", "--run", "/nonexistent/run", "--output", "/tmp/never.onnx"],
    ],
)
def test_mistakes_are_answered_before_torch_is_imported(argv: list[str]) -> None:
    """Quick answers: a wrong path is a one-line error from the command line alone (no torch import)."""
    import subprocess
    import sys

    code = (
        "import sys; from s2mnet.cli import main; status = main(sys.argv[1:]); "
        "assert 'torch' not in sys.modules, 'torch was imported'; sys.exit(status)"
    )
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, check=False)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: ") and "nonexistent" in done.stderr and done.stderr.count("\n") == 1
