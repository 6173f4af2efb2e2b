"""``s2m export``: ONNX / torch.export with dynamic H, W, verified against PyTorch at two sizes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from s2mnet.cli import main  # noqa: E402
from s2mnet.cli.export import parse_sizes  # noqa: E402
from s2mnet.deploy.export import export_onnx, prepare_for_export  # noqa: E402
from s2mnet.engine.checkpoint import save_weights  # noqa: E402
from s2mnet.engine.rundir import write_run_config  # noqa: E402
from s2mnet.errors import ExportError  # noqa: E402
from s2mnet.models import create_model  # noqa: E402
from s2mnet.models.sstm import SSTM  # noqa: E402


def run_cli(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    status = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def assert_one_error_line(err: str, *fragments: object) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for fragment in fragments:
        assert str(fragment) in lines[0], (fragment, err)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder holding a small S2M-Net with random weights and non-trivial spectral filters."""
    torch.manual_seed(0)
    model = create_model("s2mnet", num_classes=2, widths=[8, 8, 16, 16, 16], stem_width=8, k=8)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, SSTM):
                module.spectral.weight.normal_()
    folder = tmp_path_factory.mktemp("export") / "run"
    folder.mkdir()
    plan = {"mode": "resize", "size": 64, "in_channels": 3, "num_classes": 2}
    write_run_config(folder, {"model": model.config, "plan": plan, "classes": ["background", "polyp"]})
    save_weights(folder / "best.safetensors", model.state_dict())
    return folder


@pytest.mark.slow
def test_onnx_export_command_agrees_with_pytorch_at_two_sizes(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "model.onnx"
    status, out, err = run_cli(capsys, "export", "--run", run_dir, "--output", output)
    assert status == 0, err
    assert "64x64" in out and "96x80" in out and f"written to {output}" in out
    assert output.is_file() and [p.name for p in tmp_path.iterdir()] == ["model.onnx"]
    proto = onnx.load(str(output))
    assert [i.name for i in proto.graph.input] == ["image"] and [o.name for o in proto.graph.output] == [
        "logits"
    ]
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param != "" for d in dims] == [True, False, True, True]  # batch, H, W dynamic; C = 3
    assert {p.key for p in proto.metadata_props} >= {
        "s2mnet.plan",
        "s2mnet.num_classes",
        "s2mnet.class_names",
    }

    # Run it here too, at sizes the command did not check (odd sizes, batch 3): the graph is dynamic.
    import onnxruntime as ort

    from s2mnet.engine.checkpoint import load_model

    model, _ = load_model(run_dir)
    session = ort.InferenceSession(str(output), providers=["CPUExecutionProvider"])
    x = torch.randn(3, 3, 57, 71, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(x).numpy()
    assert abs(session.run(None, {"image": x.numpy()})[0] - expected).max() <= 1e-4
    # Refused without --overwrite, then replaced with it.
    status, _, err = run_cli(capsys, "export", "--run", run_dir, "--output", output)
    assert status == 2
    assert_one_error_line(err, output, "--overwrite")


def test_torch_export_reloads_and_agrees(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A U-Net keeps this quick; S2M-Net's graph goes through torch.export in the ONNX test above.
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    torch.manual_seed(0)
    model = create_model("unet", in_channels=3, num_classes=1, base_width=4)
    write_run_config(run_dir, {"model": model.config, "plan": {"mode": "resize", "size": 64}})
    save_weights(run_dir / "best.safetensors", model.state_dict())
    output = tmp_path / "model.pt2"
    status, out, err = run_cli(
        capsys, "export", "--run", run_dir, "--output", output, "--check-sizes", "64x64,48x80"
    )
    assert status == 0, err
    assert "torch.export.load" in out and "48x80" in out
    from s2mnet.engine.checkpoint import load_model

    reloaded = torch.export.load(output).module()
    model, _ = load_model(run_dir)
    x = torch.randn(1, 3, 96, 80, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert (reloaded(x) - model(x)).abs().max() <= 1e-4


def test_a_mismatch_leaves_no_file(tmp_path: Path) -> None:
    model = torch.nn.Conv2d(3, 1, 3, padding=1)
    output = tmp_path / "model.onnx"
    with pytest.raises(ExportError, match=r"differs from PyTorch.*nothing written"):
        export_onnx(model, output, example_size=(16, 16), check_sizes=((16, 16),), atol=-1.0)
    assert list(tmp_path.iterdir()) == []
    # The same export with the normal tolerance is written, and the caller's model is untouched.
    diffs = export_onnx(model, output, example_size=(16, 16), check_sizes=((16, 16), (9, 13)))
    assert set(diffs) == {"16x16", "9x13"} and max(diffs.values()) <= 1e-4
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_official_flavour_is_refused_with_a_clear_message() -> None:
    model = create_model("s2mnet_official", widths=[8, 8, 8, 8, 8], stem_width=8, k=8)
    with pytest.raises(ExportError, match="'official' SSTM flavour"):
        prepare_for_export(model)


def test_caller_model_keeps_its_fft_path() -> None:
    model = create_model("s2mnet", widths=[8, 8, 8, 8, 8], stem_width=8, k=8)
    exportable = prepare_for_export(model)
    assert all(m.spectral.impl == "matmul" for m in exportable.modules() if isinstance(m, SSTM))
    assert all(m.spectral.impl == "fft" for m in model.modules() if isinstance(m, SSTM))


@pytest.mark.parametrize(
    ("argv", "fragments"),
    [
        (["--run", "{tmp}/nothing", "--output", "{tmp}/m.onnx"], ["nothing", "run folder not found"]),
        (["--run", "{run}", "--output", "{tmp}/m.txt"], ["m.txt", "unknown suffix"]),
        (["--run", "{run}", "--output", "{tmp}/m.onnx", "--check-sizes", "64"], ["--check-sizes 64"]),
        (["--run", "{run}", "--output", "{tmp}"], ["is a folder"]),
    ],
    ids=["missing-run", "suffix", "sizes", "folder"],
)
def test_bad_export_arguments_give_one_error_line(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], fragments: list[str]
) -> None:
    argv = [a.format(tmp=tmp_path, run=run_dir) for a in argv]
    if argv[-1] == str(tmp_path):
        argv.extend(["--format", "onnx"])
    status, _, err = run_cli(capsys, "export", *argv)
    assert status == 2
    assert_one_error_line(err, *fragments)
    assert not (tmp_path / "m.onnx").exists()


def test_a_run_without_weights_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    run.mkdir()
    model = create_model("unet", in_channels=3, num_classes=1, base_width=4)
    write_run_config(run, {"model": model.config, "plan": {"mode": "resize", "size": 32}})
    status, _, err = run_cli(capsys, "export", "--run", run, "--output", tmp_path / "m.onnx")
    assert status == 2
    assert_one_error_line(err, "best.safetensors")
    assert not (tmp_path / "m.onnx").exists()


def test_parse_sizes() -> None:
    assert parse_sizes("64x64,96x80") == ((64, 64), (96, 80))
    assert parse_sizes(" 33×47 ") == ((33, 47),)
