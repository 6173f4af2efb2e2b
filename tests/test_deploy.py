"""``s2m predict --model FILE.onnx``: onnxruntime + numpy only, and the same masks as the torch predictor."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from monai.inferers import sliding_window_inference  # noqa: E402

from s2mnet.cli import main  # noqa: E402
from s2mnet.data.preprocessing import resize_bilinear, sliding_window  # noqa: E402
from s2mnet.deploy.export import deployment_metadata, export_run  # noqa: E402
from s2mnet.engine.checkpoint import save_weights  # noqa: E402
from s2mnet.engine.rundir import read_run_config, write_run_config  # noqa: E402
from s2mnet.inference import predict as predict_module  # noqa: E402
from s2mnet.inference.predict import predict_paths  # noqa: E402
from s2mnet.models import create_model  # noqa: E402


def make_run(folder: Path, model: torch.nn.Module, plan: dict, classes: list[str]) -> Path:
    folder.mkdir()
    write_run_config(folder, {"model": model.config, "plan": plan, "classes": classes, "data": str(folder)})
    save_weights(folder / "best.safetensors", model.state_dict())
    return folder


def write_images(folder: Path) -> Path:
    """Three images of different sizes and kinds (RGB PNG, grey JPEG, RGB TIFF-free BMP)."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, (height, width), mode in [
        ("wide.png", (30, 50), "RGB"),
        ("tall.jpg", (70, 41), "L"),
        ("big.bmp", (90, 110), "RGB"),
    ]:
        pixels = (rng.random((height, width, 3)) * 80).astype(np.uint8)
        pixels[height // 4 : height // 2, width // 3 : 2 * width // 3] += 150
        picture = Image.fromarray(pixels)
        (picture.convert("L") if mode == "L" else picture).save(folder / name)
    return folder


def centre_logits(model: torch.nn.Module, size: int) -> None:
    """Shift the output bias so that half of the logits are positive (both mask values occur)."""
    head = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    with torch.no_grad():
        logits = model.eval()(torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0)))
        head.bias -= logits.median()


class Conv3x3(torch.nn.Module):
    """Stand-in multi-class network, also written as a one-node ONNX graph by :func:`conv_onnx`: zero
    padding makes its output depend on the position inside a window, so window blending is exercised."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 3, 3, padding=1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.linspace(-1, 1, 27).reshape(3, 1, 3, 3))
            self.conv.bias.copy_(torch.tensor([0.0, 0.3, -0.3]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A binary U-Net run (resize mode) exported by ``export_run``, and a 3-class patch-mode stand-in.

    A U-Net keeps the export quick; that S2M-Net's export reproduces PyTorch is tested in test_export.py.
    """
    root = tmp_path_factory.mktemp("deploy")
    torch.manual_seed(0)
    unet = create_model("unet", in_channels=3, num_classes=1, base_width=4)
    centre_logits(unet, 48)
    binary = make_run(
        root / "binary",
        unet,
        {"mode": "resize", "size": 48, "in_channels": 3, "num_classes": 1},
        ["background", "lesion"],
    )
    export_run(binary, root / "binary.onnx", check_sizes=((48, 48), (64, 40)))
    multi_plan = {
        "mode": "patch",
        "patch_size": 32,
        "overlap": 0.5,
        "batch_size": 3,
        "in_channels": 1,
        "num_classes": 3,
    }
    multi = root / "multi"
    multi.mkdir()
    write_run_config(multi, {"model": {"name": "unet"}, "plan": multi_plan, "classes": ["bg", "a", "b"]})
    conv_onnx(root / "multi.onnx", Conv3x3(), multi_plan)
    return {"binary": binary, "multi": multi, "images": write_images(root / "images"), "root": root}


def conv_onnx(path: Path, model: Conv3x3, plan: dict) -> None:
    """The ONNX twin of :class:`Conv3x3`, with the metadata ``s2m export`` writes."""
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(model.conv.weight.detach().numpy(), "w")
    bias = numpy_helper.from_array(model.conv.bias.detach().numpy(), "b")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["image", "w", "b"], ["logits"], pads=[1, 1, 1, 1])],
        "conv3x3",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["b", 1, "h", "w"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["b", 3, "h", "w"])],
        [weight, bias],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    helper.set_model_props(
        proto, deployment_metadata({"model": {"name": "unet"}, "classes": ["bg", "a", "b"]}, plan)
    )
    onnx.save(proto, str(path))


def masks(folder: Path) -> dict[str, np.ndarray]:
    return {path.name: np.asarray(Image.open(path)) for path in sorted(folder.glob("*.png"))}


@pytest.mark.slow
@pytest.mark.parametrize(("name", "tta"), [("binary", False), ("binary", True), ("multi", False)])
def test_onnx_predict_gives_the_torch_masks(
    workspace: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    tta: bool,
) -> None:
    out = workspace["root"] / f"{name}_{tta}"
    if name == "multi":
        monkeypatch.setattr(
            predict_module, "load_model", lambda run, which, device: (Conv3x3().eval(), read_run_config(run))
        )
    torch_written = predict_paths(workspace[name], workspace["images"], out / "torch", tta=tta, device="cpu")
    flags = ["--tta"] if tta else []
    model = workspace["root"] / f"{name}.onnx"
    status = main(
        ["predict", "--model", str(model), str(workspace["images"]), "--output", str(out / "onnx"), *flags]
    )
    assert status == 0, capsys.readouterr().err
    expected, got = masks(out / "torch"), masks(out / "onnx")
    assert sorted(got) == sorted(path.name for path in torch_written) == ["big.png", "tall.png", "wide.png"]
    values = {0, 255} if name == "binary" else {0, 1, 2}
    for file_name, mask in expected.items():
        assert got[file_name].shape == mask.shape and got[file_name].dtype == np.uint8
        assert set(np.unique(got[file_name])) <= values
        assert np.mean(got[file_name] == mask) >= 0.999, file_name
    assert len(np.unique(np.concatenate([m.ravel() for m in got.values()]))) > 1  # not a constant output


def test_onnx_predictor_never_imports_the_training_stack(workspace: dict[str, Path], tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from s2mnet.cli import main\n"
        f"status = main(['predict', '--model', {str(workspace['root'] / 'binary.onnx')!r}, "
        f"{str(workspace['images'] / 'wide.png')!r}, '--output', {str(tmp_path / 'out')!r}, "
        "'--probabilities', '--overlays'])\n"
        "heavy = [name for name in ('torch', 'monai', 'albumentations') if name in sys.modules]\n"
        "print(status, heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "0 []"
    assert (tmp_path / "out" / "wide.png").is_file()
    assert (tmp_path / "out" / "probabilities" / "wide.npy").is_file()
    assert (tmp_path / "out" / "overlays" / "wide.png").is_file()


def test_metadata_carries_what_the_predictor_needs(workspace: dict[str, Path]) -> None:
    props = {p.key: p.value for p in onnx.load(str(workspace["root"] / "binary.onnx")).metadata_props}
    assert props["s2mnet.num_classes"] == "1"
    assert props["s2mnet.in_channels"] == "3"
    assert props["s2mnet.model"] == "unet"
    assert json.loads(props["s2mnet.class_names"]) == ["background", "lesion"]
    assert json.loads(props["s2mnet.plan"]) == {
        "mode": "resize",
        "size": 48,
        "in_channels": 3,
        "num_classes": 1,
    }
    assert float(props["s2mnet.threshold"]) == 0.5
    assert props["s2mnet.version"]


def tiny_onnx(path: Path, channels: int, metadata: dict[str, str] | None) -> Path:
    """A 1×1-convolution ONNX model ``image`` (B, channels, H, W) → ``logits`` (B, 1, H, W)."""
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((1, channels, 1, 1), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["image", "w"], ["logits"])],
        "tiny",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["b", channels, "h", "w"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["b", 1, "h", "w"])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if metadata is not None:
        helper.set_model_props(model, metadata)
    onnx.save(model, str(path))
    return path


def plan_metadata(channels: int) -> dict[str, str]:
    plan = {"mode": "resize", "size": 16, "in_channels": channels, "num_classes": 1}
    return {"s2mnet.plan": json.dumps(plan), "s2mnet.num_classes": "1", "s2mnet.in_channels": str(channels)}


@pytest.mark.parametrize(
    ("make", "fragments"),
    [
        (lambda d: d / "missing.onnx", ["missing.onnx", "not found"]),
        (
            lambda d: (d / "notes.onnx").write_text("hello") and d / "notes.onnx",
            ["notes.onnx", "not a valid ONNX"],
        ),
        (lambda d: tiny_onnx(d / "plain.onnx", 3, None), ["plain.onnx", "no s2mnet metadata"]),
        (lambda d: tiny_onnx(d / "mismatch.onnx", 1, plan_metadata(3)), ["mismatch.onnx", "1 channel(s)"]),
        (lambda d: tiny_onnx(d / "four.onnx", 4, plan_metadata(4)), ["wide.png", "4 channels"]),
    ],
    ids=["missing", "not-onnx", "no-metadata", "channel-mismatch", "wrong-channels"],
)
def test_bad_models_give_one_error_line(
    workspace: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], make, fragments: list[str]
) -> None:
    model = make(tmp_path)
    status = main(
        [
            "predict",
            "--model",
            str(model),
            str(workspace["images"] / "wide.png"),
            "--output",
            str(tmp_path / "out"),
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and err[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in err[0], (fragment, err)
    assert not (tmp_path / "out" / "wide.png").exists()


def test_predict_needs_a_model_or_a_run_and_some_input(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    status = main(["predict", "--model", str(tmp_path / "m.onnx"), "--output", str(tmp_path / "o")])
    assert status == 2
    assert "give the images to segment" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["predict", str(tmp_path), "--output", str(tmp_path / "o")])


@pytest.mark.parametrize(
    ("size", "window", "overlap"),
    [((70, 45), (32, 32), 0.5), ((20, 50), (32, 24), 0.25), ((32, 32), (32, 32), 0.5)],
)
def test_numpy_sliding_window_matches_monai(
    size: tuple[int, int], window: tuple[int, int], overlap: float
) -> None:
    rng = np.random.default_rng(1)
    image = rng.standard_normal((1, 2, *size)).astype(np.float32)
    ramp = np.linspace(-1, 1, window[0] * window[1], dtype=np.float32).reshape(window)

    def numpy_predictor(batch: np.ndarray) -> np.ndarray:  # depends on the position inside the window
        return np.tanh(batch.sum(axis=1, keepdims=True) + ramp)

    expected = sliding_window_inference(
        torch.from_numpy(image),
        window,
        3,
        lambda b: torch.from_numpy(numpy_predictor(b.numpy())),
        overlap=overlap,
        mode="gaussian",
    ).numpy()
    got = sliding_window(image, window, 3, numpy_predictor, overlap)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize(("source", "target"), [((30, 50), (48, 48)), ((120, 90), (48, 40))])
def test_numpy_resize_matches_antialiased_torch_resize(
    source: tuple[int, int], target: tuple[int, int]
) -> None:
    batch = np.random.default_rng(2).standard_normal((1, 2, *source)).astype(np.float32)
    expected = F.interpolate(
        torch.from_numpy(batch), size=target, mode="bilinear", align_corners=False, antialias=True
    ).numpy()
    np.testing.assert_allclose(resize_bilinear(batch, target), expected, atol=1e-5)
