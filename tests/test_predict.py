"""``predict_paths``: masks at the original size, and nothing the user has is replaced silently."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from s2mnet.engine.checkpoint import save_weights
from s2mnet.engine.rundir import read_run_config, write_run_config
from s2mnet.errors import DataError, RunError, S2MError
from s2mnet.inference import predict as predict_module
from s2mnet.inference.predict import predict_paths

PLAN = {"mode": "resize", "size": 32, "in_channels": 3, "num_classes": 1}


def write_image(path, height: int, width: int, bright: tuple[slice, slice] | None = None, mode: str = "RGB"):
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    if bright is not None:
        pixels[bright] = 255
    picture = Image.fromarray(pixels)
    (picture.convert("L") if mode == "L" else picture).save(path)
    return path


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    write_image(folder / "wide.png", 30, 50, (slice(5, 20), slice(10, 30)))
    write_image(folder / "tall.jpg", 45, 20, (slice(10, 30), slice(2, 12)), mode="L")
    (folder / "notes.txt").write_text("not an image")
    return folder


def make_run(tmp_path, num_classes: int = 1):
    from s2mnet.models import create_model

    torch.manual_seed(0)
    model = create_model("unet", in_channels=3, num_classes=num_classes, base_width=4)
    run_dir = tmp_path / f"run{num_classes}"
    run_dir.mkdir()
    plan = {**PLAN, "num_classes": num_classes}
    write_run_config(run_dir, {"model": model.config, "plan": plan, "data": str(tmp_path)})
    save_weights(run_dir / "best.safetensors", model.state_dict())
    return run_dir


class Doubler(torch.nn.Module):
    """Stand-in network: logit = 2 × channel sum, so the (z-scored) bright region is the foreground."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * x.sum(dim=1, keepdim=True)


def test_masks_have_each_images_original_size_and_binary_values(tmp_path, images):
    written = predict_paths(make_run(tmp_path), images, tmp_path / "out", device="cpu")
    assert [path.name for path in written] == ["tall.png", "wide.png"]
    sizes = {path.name: Image.open(path).size for path in written}
    assert sizes == {"tall.png": (20, 45), "wide.png": (50, 30)}
    for path in written:
        assert set(np.unique(np.asarray(Image.open(path)))) <= {0, 255}


def test_stand_in_model_segments_the_bright_region(tmp_path, images, monkeypatch):
    run_dir = make_run(tmp_path)
    monkeypatch.setattr(
        predict_module,
        "load_model",
        lambda run, which="best", device="cpu": (Doubler(), read_run_config(run)),
    )
    (mask_path,) = predict_paths(run_dir, images / "wide.png", tmp_path / "out")
    mask = np.asarray(Image.open(mask_path))
    assert mask.shape == (30, 50)
    # The bright block is rows 5..19, columns 10..29. Resizing to 32² and back blurs its border by up to
    # two pixels; inside and outside that band the mask is exact.
    assert np.all(mask[7:18, 12:28] == 255)
    outside = np.ones((30, 50), dtype=bool)
    outside[3:22, 8:32] = False
    assert np.all(mask[outside] == 0)


def test_multiclass_masks_hold_class_indices(tmp_path, images):
    written = predict_paths(make_run(tmp_path, num_classes=3), images / "wide.png", tmp_path / "out")
    values = set(np.unique(np.asarray(Image.open(written[0]))))
    assert values <= {0, 1, 2}


def test_existing_output_is_refused_unless_overwrite(tmp_path, images):
    run_dir, out = make_run(tmp_path), tmp_path / "out"
    out.mkdir()
    (out / "wide.png").write_bytes(b"user's file")
    with pytest.raises(S2MError, match=r"wide\.png: already exists; pass --overwrite"):
        predict_paths(run_dir, images, out)
    assert (out / "wide.png").read_bytes() == b"user's file"
    assert not (out / "tall.png").exists()  # refused before any work
    # --overwrite replaces only masks an earlier s2m predict wrote (issue 15), never the user's own file
    with pytest.raises(S2MError, match=r"wide\.png: exists and was not written by s2m predict"):
        predict_paths(run_dir, images, out, overwrite=True)
    assert (out / "wide.png").read_bytes() == b"user's file"
    (out / "wide.png").unlink()
    predict_paths(run_dir, images, out)
    predict_paths(run_dir, images, out, overwrite=True)
    assert Image.open(out / "wide.png").size == (50, 30)


def test_output_replacing_an_input_is_always_refused(tmp_path, images):
    with pytest.raises(S2MError, match="would replace this input image"):
        predict_paths(make_run(tmp_path), images / "wide.png", images, overwrite=True)


def test_inputs_with_the_same_stem_are_refused(tmp_path, images):
    write_image(images / "wide.bmp", 10, 10)
    with pytest.raises(S2MError, match="would collide"):
        predict_paths(make_run(tmp_path), images, tmp_path / "out")


def test_bad_inputs_name_the_file(tmp_path, images):
    run_dir = make_run(tmp_path)
    with pytest.raises(DataError, match="input not found"):
        predict_paths(run_dir, tmp_path / "missing.png", tmp_path / "out")
    with pytest.raises(DataError, match=r"notes\.txt: not a supported image file"):
        predict_paths(run_dir, images / "notes.txt", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no image files"):
        predict_paths(run_dir, tmp_path / "empty", tmp_path / "out")
    broken = images / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DataError, match=r"broken\.png"):
        predict_paths(run_dir, broken, tmp_path / "out")


def test_missing_run_is_a_run_error(tmp_path, images):
    with pytest.raises(RunError, match="run folder not found"):
        predict_paths(tmp_path / "no_run", images, tmp_path / "out")
    assert not (tmp_path / "out").exists()
