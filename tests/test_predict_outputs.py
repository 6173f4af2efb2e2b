"""``s2m predict --probabilities --overlays`` (torch and ONNX) and ``--device cuda`` on the ONNX path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from s2mnet.cli import main
from s2mnet.engine.rundir import read_run_config
from s2mnet.errors import S2MError
from s2mnet.inference import predict as predict_module
from s2mnet.inference.predict import predict_paths
from test_predict import Doubler, make_run, write_image


@pytest.fixture
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    write_image(folder / "wide.png", 30, 50, (slice(5, 20), slice(10, 30)))
    write_image(folder / "tall.png", 45, 20, (slice(10, 30), slice(2, 12)), mode="L")
    return folder


class ThreeClasses(torch.nn.Module):
    """Stand-in multi-class network: background, the bright region, nothing."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bright = 2 * x.sum(dim=1, keepdim=True)
        return torch.cat([-bright, bright, torch.zeros_like(bright) - 5], dim=1)


def stand_in(monkeypatch: pytest.MonkeyPatch, model: torch.nn.Module) -> None:
    monkeypatch.setattr(
        predict_module, "load_model", lambda run, which="best", device="cpu": (model, read_run_config(run))
    )


def test_probabilities_and_overlays_beside_the_masks(tmp_path, images, monkeypatch) -> None:
    stand_in(monkeypatch, Doubler())
    out = tmp_path / "out"
    written = predict_paths(make_run(tmp_path), images, out, probabilities=True, overlays=True)
    assert sorted(p.name for p in written) == ["tall.png", "wide.png"]  # the masks stay at the top
    for name, (height, width) in (("wide", (30, 50)), ("tall", (45, 20))):
        probs = np.load(out / "probabilities" / f"{name}.npy", allow_pickle=False)
        assert probs.dtype == np.float32 and probs.shape == (1, height, width)
        assert probs.min() >= 0.0 and probs.max() <= 1.0
        mask = np.asarray(Image.open(out / f"{name}.png"))
        np.testing.assert_array_equal(mask == 255, probs[0] > 0.5)
        overlay = Image.open(out / "overlays" / f"{name}.png")
        assert overlay.format == "PNG" and overlay.width >= width
    assert not list(out.glob(".s2m_predict.tmp-*"))


def test_multiclass_probabilities_hold_every_class(tmp_path, images, monkeypatch) -> None:
    stand_in(monkeypatch, ThreeClasses())
    out = tmp_path / "out"
    predict_paths(make_run(tmp_path, num_classes=3), images / "wide.png", out, probabilities=True)
    probs = np.load(out / "probabilities" / "wide.npy", allow_pickle=False)
    assert probs.shape == (3, 30, 50)
    np.testing.assert_allclose(probs.sum(axis=0), 1.0, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(Image.open(out / "wide.png")), probs.argmax(axis=0))
    assert not (out / "overlays").exists()


def test_a_foreign_file_among_the_extras_stops_everything(tmp_path, images, monkeypatch) -> None:
    stand_in(monkeypatch, Doubler())
    out = tmp_path / "out"
    (out / "overlays").mkdir(parents=True)
    (out / "overlays" / "wide.png").write_bytes(b"mine")
    run_dir = make_run(tmp_path)
    with pytest.raises(S2MError, match=r"overlays/wide\.png: already exists"):
        predict_paths(run_dir, images, out, overlays=True)
    with pytest.raises(S2MError, match="not written by s2m predict"):
        predict_paths(run_dir, images, out, overlays=True, overwrite=True)
    assert sorted(p.name for p in out.rglob("*")) == ["overlays", "wide.png"]
    assert (out / "overlays" / "wide.png").read_bytes() == b"mine"


def test_overlays_of_volumes_are_refused_in_one_line(tmp_path, capsys) -> None:
    run_dir = make_run(tmp_path)
    (tmp_path / "vol.nii.gz").write_bytes(b"")
    args = ["predict", "--run", str(run_dir), str(tmp_path / "vol.nii.gz"), "--output", str(tmp_path / "o")]
    assert main([*args, "--overlays"]) == 2
    assert "--overlays is not supported for NIfTI volumes" in capsys.readouterr().err


def test_probability_volumes_keep_the_affine(tmp_path) -> None:
    nib = pytest.importorskip("nibabel")
    from s2mnet.engine.checkpoint import save_weights
    from s2mnet.engine.rundir import write_run_config
    from s2mnet.models import create_model

    affine = np.diag([0.8, 0.9, 2.5, 1.0])
    volume = np.random.default_rng(0).normal(size=(12, 10, 4)).astype(np.float32)
    (tmp_path / "vols").mkdir()
    nib.save(nib.Nifti1Image(volume, affine), tmp_path / "vols" / "case.nii.gz")
    model = create_model("unet", in_channels=1, num_classes=3, base_width=4)
    plan = {"mode": "resize", "size": 16, "in_channels": 1, "num_classes": 3, "slice_axis": 2}
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    write_run_config(run_dir, {"model": model.config, "plan": plan, "data": str(tmp_path)})
    save_weights(run_dir / "best.safetensors", model.state_dict())
    out = tmp_path / "out"
    predict_paths(run_dir, tmp_path / "vols", out, device="cpu", probabilities=True)
    probs = nib.load(out / "probabilities" / "case.nii.gz")
    np.testing.assert_allclose(probs.affine, affine)
    data = np.asarray(probs.dataobj)
    assert data.shape == (12, 10, 4, 3) and data.dtype == np.float32
    np.testing.assert_allclose(data.sum(axis=-1), 1.0, atol=1e-5)
    labels = np.asarray(nib.load(out / "case.nii.gz").dataobj)
    np.testing.assert_array_equal(labels, data.argmax(axis=-1))


onnx_tests = pytest.mark.skipif(
    not all(__import__("importlib").util.find_spec(name) for name in ("onnx", "onnxruntime")),
    reason="needs onnx and onnxruntime",
)


@onnx_tests
def test_onnx_probabilities_and_overlays(tmp_path, images, capsys) -> None:
    from test_deploy import plan_metadata, tiny_onnx

    model = tiny_onnx(tmp_path / "tiny.onnx", 3, plan_metadata(3))
    out = tmp_path / "out"
    args = ["predict", "--model", str(model), str(images), "--output", str(out), "--device", "cpu"]
    assert main([*args, "--probabilities", "--overlays"]) == 0, capsys.readouterr().err
    assert "probabilities in" in capsys.readouterr().out
    for name, shape in (("wide", (30, 50)), ("tall", (45, 20))):
        probs = np.load(out / "probabilities" / f"{name}.npy", allow_pickle=False)
        assert probs.shape == (1, *shape) and probs.dtype == np.float32
        np.testing.assert_array_equal(np.asarray(Image.open(out / f"{name}.png")) == 255, probs[0] > 0.5)
        assert Image.open(out / "overlays" / f"{name}.png").format == "PNG"


@onnx_tests
def test_onnx_cuda_needs_the_cuda_provider(tmp_path, images, capsys, monkeypatch) -> None:
    import onnxruntime

    from s2mnet.deploy.onnx_predict import onnx_providers
    from test_deploy import plan_metadata, tiny_onnx

    model = tiny_onnx(tmp_path / "tiny.onnx", 3, plan_metadata(3))
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    args = ["predict", "--model", str(model), str(images), "--output", str(tmp_path / "out")]
    assert main([*args, "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "CUDA provider is not installed" in err[0] and "onnxruntime-gpu" in err[0]
    assert not (tmp_path / "out").exists()
    assert onnx_providers("auto") == ["CPUExecutionProvider"]
    assert main([*args, "--device", "tpu"]) == 2 and "auto, cpu or cuda" in capsys.readouterr().err

    monkeypatch.setattr(
        onnxruntime, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    assert onnx_providers("cuda") == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert onnx_providers("auto") == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert onnx_providers("cpu") == ["CPUExecutionProvider"]
