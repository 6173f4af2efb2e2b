"""S2M-Net inside nnU-Net v2 (docs/nnunet.md): network, add-config, convert; with nnunetv2, the real thing.

The first part needs no nnunetv2 and always runs. The second part (planning, the stock trainers' deep
supervision, MASL trainer, one short CPU training and a prediction through nnU-Net's console scripts) runs
only where the ``nnunet`` extra is installed (``pip install -e ".[nnunet]"``, CI: ``.ci/nnunet``) and is
skipped with the reason otherwise; ``S2MNET_REQUIRE_NNUNET=1`` turns that skip into a failure.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from s2mnet.errors import NNUNetSetupError, S2MError
from s2mnet.models import ModelConfigError, S2MNet
from s2mnet.nnunet import CONFIGURATION, NETWORK_CLASS_NAME, S2MNET_STRIDES, trainer_dir
from s2mnet.nnunet.commands import register, run
from s2mnet.nnunet.convert import convert_dataset
from s2mnet.nnunet.network import S2MNetNNUNet
from s2mnet.nnunet.plans import add_configuration, resolve_configuration

# ---------------------------------------------------------------- helpers


def _nnunet_scales(strides: list[list[int]]) -> list[list[float]]:
    """nnUNetTrainer._get_deep_supervision_scales, written out."""
    return [list(s) for s in 1 / np.cumprod(np.vstack(strides), axis=0)][:-1]


def _blob_dataset(root: Path, n: int = 10, size: int = 64, colour: bool = False, classes: int = 2) -> Path:
    """An s2m layout (images/ + masks/) of discs on noise; ``classes`` > 2 gives class-map masks."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    yy, xx = np.mgrid[:size, :size]
    for i in range(n):
        mask = np.zeros((size, size), np.uint8)
        for label in range(1, classes):
            cy, cx = rng.integers(12, size - 12, 2)
            mask[(yy - cy) ** 2 + (xx - cx) ** 2 < rng.integers(5, 10) ** 2] = label
        image = np.clip(60 + 60 * mask + rng.normal(0, 15, mask.shape), 0, 255).astype(np.uint8)
        if colour:
            image = np.stack([image, 255 - image, image // 2], axis=-1)
        Image.fromarray(image).save(root / "images" / f"case{i:02d}.png")
        stored = mask * 255 if classes == 2 else mask
        Image.fromarray(stored.astype(np.uint8)).save(root / "masks" / f"case{i:02d}.png")
    return root


def _plans(patch: list[int]) -> dict:
    return {
        "dataset_name": "Dataset777_Fake",
        "plans_name": "nnUNetPlans",
        "configurations": {
            "2d": {
                "data_identifier": "nnUNetPlans_2d",
                "batch_size": 12,
                "patch_size": patch,
                "architecture": {
                    "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
                    "arch_kwargs": {"n_stages": 4, "strides": [[1, 1], [2, 2], [2, 2], [2, 2]]},
                    "_kw_requires_import": ["conv_op"],
                },
            },
            "3d_fullres": {"patch_size": [32, 32, 32]},
        },
    }


@pytest.fixture
def preprocessed(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "preprocessed"
    (root / "Dataset777_Fake").mkdir(parents=True)
    (root / "Dataset777_Fake" / "nnUNetPlans.json").write_text(json.dumps(_plans([80, 100]), indent=4))
    monkeypatch.setenv("nnUNet_preprocessed", str(root))
    monkeypatch.delenv("nnUNet_raw", raising=False)
    return root


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="s2m")
    register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.handler(args)


# ---------------------------------------------------------------- network (no nnunetv2)


def test_deep_supervision_outputs_match_nnunet_scales() -> None:
    net = S2MNetNNUNet(3, 2, deep_supervision=True, strides=S2MNET_STRIDES).eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        outputs = net(x)
    assert isinstance(outputs, list)
    scales = _nnunet_scales(S2MNET_STRIDES)
    assert len(outputs) == len(scales) == 5
    for output, scale in zip(outputs, scales, strict=True):
        assert output.shape == (2, 2, round(64 * scale[0]), round(96 * scale[1]))
    net.decoder.deep_supervision = False  # what nnU-Net's set_deep_supervision_enabled does
    with torch.no_grad():
        single = net(x)
    assert isinstance(single, torch.Tensor) and single.shape == (2, 2, 64, 96)
    torch.testing.assert_close(single, outputs[0])
    with torch.no_grad():  # the full-resolution output is S2M-Net's own forward
        torch.testing.assert_close(single, S2MNet.forward(net, x))


def test_same_weights_with_and_without_deep_supervision() -> None:
    on = S2MNetNNUNet(1, 3, deep_supervision=True)
    off = S2MNetNNUNet(1, 3, deep_supervision=False)
    assert on.state_dict().keys() == off.state_dict().keys()
    off.load_state_dict(on.state_dict())  # nnU-Net's predictor builds it with deep supervision off
    plain = S2MNet(in_channels=1, num_classes=3)
    result = plain.load_state_dict(on.state_dict(), strict=False)
    assert result.missing_keys == [] and all(k.startswith("ds_heads.") for k in result.unexpected_keys)


def test_network_arguments_are_checked() -> None:
    with pytest.raises(ModelConfigError, match="strides"):
        S2MNetNNUNet(1, 2, strides=[[1, 1], [2, 2], [2, 2]])
    with pytest.raises(ModelConfigError, match="n_stages"):
        S2MNetNNUNet(1, 2, n_stages=4)
    net = S2MNetNNUNet(1, 2, routing="none", k=16)
    assert net.config["routing"] == "none" and net.config["k"] == 16


# ---------------------------------------------------------------- add-config (plain JSON)


def test_add_config_inherits_2d_and_is_idempotent(preprocessed) -> None:
    plans_path = preprocessed / "Dataset777_Fake" / "nnUNetPlans.json"
    result = add_configuration(777)
    assert result["status"] == "added" and result["dataset"] == "Dataset777_Fake"
    plans = json.loads(plans_path.read_text())
    config = plans["configurations"][CONFIGURATION]
    assert config["inherits_from"] == "2d"
    assert config["patch_size"] == [96, 128]  # 80, 100 rounded up to multiples of 32
    assert config["architecture"]["network_class_name"] == NETWORK_CLASS_NAME
    assert config["architecture"]["arch_kwargs"]["strides"] == S2MNET_STRIDES
    resolved = resolve_configuration(plans["configurations"], CONFIGURATION)
    assert resolved["data_identifier"] == "nnUNetPlans_2d" and resolved["batch_size"] == 12
    assert "n_stages" not in resolved["architecture"]["arch_kwargs"]  # 2d's architecture is replaced
    before = plans_path.read_bytes()
    assert add_configuration("Dataset777_Fake")["status"] == "unchanged"
    assert plans_path.read_bytes() == before
    assert add_configuration(777, batch_size=4, arch_kwargs={"routing": "none"})["status"] == "updated"
    config = json.loads(plans_path.read_text())["configurations"][CONFIGURATION]
    assert config["batch_size"] == 4 and config["architecture"]["arch_kwargs"]["routing"] == "none"


def test_add_config_errors(preprocessed, monkeypatch, tmp_path) -> None:
    with pytest.raises(NNUNetSetupError, match="not planned"):
        add_configuration(5)
    with pytest.raises(NNUNetSetupError, match="routing"):
        add_configuration(777, arch_kwargs={"routing": "sideways"})
    plans_path = preprocessed / "Dataset777_Fake" / "nnUNetPlans.json"
    plans = _plans([64, 64])
    del plans["configurations"]["2d"]
    plans_path.write_text(json.dumps(plans))
    with pytest.raises(NNUNetSetupError, match="no '2d' configuration"):
        add_configuration(777)
    plans = _plans([64, 64])
    plans["configurations"][CONFIGURATION] = {"inherits_from": "2d"}
    plans_path.write_text(json.dumps(plans))
    with pytest.raises(NNUNetSetupError, match="not written by s2m"):
        add_configuration(777)
    plans_path.write_text("{not json")
    with pytest.raises(NNUNetSetupError, match=r"nnUNetPlans\.json: not a readable JSON"):
        add_configuration(777)
    monkeypatch.delenv("nnUNet_preprocessed")
    with pytest.raises(NNUNetSetupError, match="nnUNet_preprocessed is not set"):
        add_configuration(777)
    assert issubclass(NNUNetSetupError, S2MError)


def test_add_config_command(preprocessed, capsys) -> None:
    assert _cli(["nnunet", "add-config", "--dataset", "777", "--patch-size", "100,60"]) == 0
    out = capsys.readouterr().out
    assert "added: configuration 2d_s2mnet" in out and "patch 128x64" in out
    assert f"nnUNet_extTrainer={trainer_dir()}" in out
    assert _cli(["nnunet", "add-config", "-d", "777", "--patch-size", "100,60"]) == 0
    assert capsys.readouterr().out.startswith("unchanged")
    with pytest.raises(S2MError, match="no dataset 9 here"):
        _cli(["nnunet", "add-config", "--dataset", "9"])
    with pytest.raises(S2MError, match="choose an action"):
        run(argparse.Namespace())


# ---------------------------------------------------------------- convert (no nnunetv2)


def test_convert_writes_raw_dataset_with_s2m_split(tmp_path) -> None:
    from s2mnet.data.discover import discover
    from s2mnet.data.splits import make_splits

    data = _blob_dataset(tmp_path / "blobs")
    raw = tmp_path / "raw"
    result = convert_dataset(data, 12, out=raw, names=["blob"])
    folder = raw / "Dataset012_blobs"
    assert result["folder"] == folder and result["labels"] == {"background": 0, "blob": 1}
    dataset = json.loads((folder / "dataset.json").read_text())
    assert dataset["channel_names"] == {"0": "image"} and dataset["file_ending"] == ".png"
    expected = make_splits(discover(data), seed=42)
    (fold,) = json.loads((folder / "splits_final.json").read_text())
    assert fold == {"train": expected["train"], "val": expected["val"]}
    assert dataset["numTraining"] == len(expected["train"]) + len(expected["val"])
    assert sorted(p.name for p in (folder / "imagesTs").iterdir()) == [
        f"{c}_0000.png" for c in expected["test"]
    ]
    for case in fold["train"]:
        label = np.array(Image.open(folder / "labelsTr" / f"{case}.png"))
        image = np.array(Image.open(folder / "imagesTr" / f"{case}_0000.png"))
        assert label.dtype == np.uint8 and set(np.unique(label)) <= {0, 1} and label.any()
        assert image.shape == label.shape == (64, 64)
        np.testing.assert_array_equal(image, np.array(Image.open(data / "images" / f"{case}.png")))
    # the converted folder is itself a dataset s2m reads: the same folder feeds both tools
    back = discover(folder)
    assert [c.case_id for c in back.cases] == sorted(fold["train"] + fold["val"])
    with pytest.raises(NNUNetSetupError, match="already exists"):
        convert_dataset(data, 12, out=raw)
    assert convert_dataset(data, 12, out=raw, overwrite=True)["train"] == len(fold["train"])
    with pytest.raises(NNUNetSetupError, match="already used by another dataset"):
        convert_dataset(data, 12, out=raw, name="Other")


def test_convert_colour_and_multiclass(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("nnUNet_raw", str(tmp_path / "raw"))
    (tmp_path / "raw").mkdir()
    data = _blob_dataset(tmp_path / "rgb", n=6, colour=True, classes=3)
    assert _cli(["nnunet", "convert", "--data", str(data), "--dataset-id", "3", "--name", "RGB"]) == 0
    assert "wrote" in capsys.readouterr().out
    folder = tmp_path / "raw" / "Dataset003_RGB"
    dataset = json.loads((folder / "dataset.json").read_text())
    assert dataset["channel_names"] == {"0": "R", "1": "G", "2": "B"}  # one RGB PNG per case
    assert dataset["labels"] == {"background": 0, "class_1": 1, "class_2": 2}
    image = np.array(Image.open(next((folder / "imagesTr").iterdir())))
    assert image.shape == (64, 64, 3)
    labels = np.concatenate([np.array(Image.open(p)).ravel() for p in (folder / "labelsTr").iterdir()])
    assert set(np.unique(labels)) == {0, 1, 2}
    monkeypatch.delenv("nnUNet_raw")
    with pytest.raises(S2MError, match="nnUNet_raw is not set"):
        _cli(["nnunet", "convert", "--data", str(data), "--dataset-id", "4"])
    with pytest.raises(S2MError, match=r"1\.\.999"):
        convert_dataset(data, 1000, out=tmp_path / "raw")


# ---------------------------------------------------------------- with nnunetv2 (the extra)


def _nnunet_missing() -> str | None:
    try:
        import nnunetv2  # noqa: F401
        from torchvision.ops import nms  # nnU-Net's trainer lookup imports timm, which imports torchvision

        nms(torch.zeros(1, 4), torch.zeros(1), 0.5)  # a torchvision built for another torch fails here
    except Exception as error:  # ImportError, or torchvision's "operator torchvision::nms does not exist"
        return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
    return None


_MISSING = _nnunet_missing()
if _MISSING and os.environ.get("S2MNET_REQUIRE_NNUNET") == "1":
    raise RuntimeError(f"S2MNET_REQUIRE_NNUNET=1 but nnU-Net is not usable: {_MISSING}")
needs_nnunet = pytest.mark.skipif(
    _MISSING is not None,
    reason=f'nnU-Net extra not usable ({_MISSING}); pip install -e ".[nnunet]" with a matching '
    "torch/torchvision pair (docs/nnunet.md), or run .ci/nnunet",
)

DATASET_ID = 987
TINY_TRAINER = textwrap.dedent(
    """
    import torch
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


    class nnUNetTrainer_S2MTestTiny(nnUNetTrainer):
        def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                     device: torch.device = torch.device("cuda")):
            super().__init__(plans, configuration, fold, dataset_json, device)
            self.num_epochs, self.num_iterations_per_epoch, self.num_val_iterations_per_epoch = 1, 3, 2
    """
)


def _console(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    """A converted, planned and preprocessed synthetic dataset with the 2d_s2mnet configuration."""
    if _MISSING:
        pytest.skip(f"nnU-Net extra not usable: {_MISSING}")
    base = tmp_path_factory.mktemp("nnunet")
    extra = base / "ext"
    extra.mkdir()
    (extra / "s2m_test_trainers.py").write_text(TINY_TRAINER)
    env = {
        **os.environ,
        "nnUNet_raw": str(base / "raw"),
        "nnUNet_preprocessed": str(base / "preprocessed"),
        "nnUNet_results": str(base / "results"),
        "nnUNet_extTrainer": os.pathsep.join([str(extra), str(trainer_dir())]),
        "nnUNet_n_proc_DA": "0",
        "nnUNet_def_n_proc": "1",
        "OMP_NUM_THREADS": "2",
    }
    for key in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        Path(env[key]).mkdir()
    data = _blob_dataset(base / "blobs", n=8, size=64)
    convert_dataset(data, DATASET_ID, out=base / "raw", name="Blobs")
    # (--verify_dataset_integrity would cost another process pool; the DRIVE conversion was verified)
    command = [_console("nnUNetv2_plan_and_preprocess"), "-d", str(DATASET_ID), "-c", "2d", "-np", "1"]
    planning_env = {**env, "nnUNet_n_proc_DA": "1"}  # the planner calls torch.set_num_threads(n_proc_DA)
    done = subprocess.run(command, env=planning_env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = add_configuration(DATASET_ID, preprocessed=env["nnUNet_preprocessed"], raw=env["nnUNet_raw"])
    assert result["status"] == "added" and result["preprocessed_data"]
    return {"base": base, "env": env, "dataset": result["dataset"]}


def _trainer(planned, monkeypatch, name: str):
    """An initialised trainer of class ``name`` on 2d_s2mnet, in this process (CPU)."""
    for key in (
        "nnUNet_raw",
        "nnUNet_preprocessed",
        "nnUNet_results",
        "nnUNet_extTrainer",
        "nnUNet_n_proc_DA",
    ):
        monkeypatch.setenv(key, planned["env"][key])
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    folder = Path(planned["env"]["nnUNet_preprocessed"]) / planned["dataset"]
    plans = json.loads((folder / "nnUNetPlans.json").read_text())
    plans["continue_training"] = False
    dataset_json = json.loads((folder / "dataset.json").read_text())
    trainer_class = recursive_find_trainer_class_by_name(name)  # nnU-Net's own lookup
    trainer = trainer_class(plans, CONFIGURATION, 0, dataset_json, device=torch.device("cpu"))
    trainer.initialize()
    return trainer


@needs_nnunet
@pytest.mark.parametrize(
    ("name", "deep", "step"),
    [
        ("nnUNetTrainer", True, True),
        ("nnUNetTrainerNoDeepSupervision", False, True),
        ("nnUNetTrainer_5epochs", True, False),  # nnUNetTrainer with num_epochs = 5: built, not stepped
    ],
)
def test_stock_trainers_build_and_step(planned, monkeypatch, name, deep, step) -> None:
    trainer = _trainer(planned, monkeypatch, name)
    assert isinstance(trainer.network, S2MNetNNUNet) and trainer.network.decoder.deep_supervision is deep
    assert tuple(trainer.configuration_manager.patch_size) == (64, 64)
    trainer.set_deep_supervision_enabled(not deep)  # nnU-Net's switch, as around its final validation
    assert trainer.network.deep_supervision is (not deep)
    trainer.set_deep_supervision_enabled(deep)
    if not step:
        return
    train_loader, _ = trainer.get_dataloaders()
    batch = next(train_loader)
    if deep:
        assert [t.shape[-1] for t in batch["target"]] == [64, 32, 16, 8, 4]
    loss = trainer.train_step(batch)["loss"]
    assert np.isfinite(loss)


@needs_nnunet
def test_masl_trainer_found_by_nnunet_and_trains(planned, monkeypatch, tmp_path) -> None:
    trainer = _trainer(planned, monkeypatch, "nnUNetTrainerMASL_5epochs")
    assert type(trainer).__name__ == "nnUNetTrainerMASL_5epochs" and trainer.num_epochs == 5
    assert len(trainer.optimizer.param_groups) == 2  # network + MASL's learnable weights
    weights = trainer.masl.masl.weights.clone()
    train_loader, _ = trainer.get_dataloaders()
    assert np.isfinite(trainer.train_step(next(train_loader))["loss"])
    assert not torch.equal(weights, trainer.masl.masl.weights)
    checkpoint = tmp_path / "masl.pth"
    trainer.save_checkpoint(str(checkpoint))
    assert set(json.loads((tmp_path / "masl.masl.json").read_text())) == {"masl.weighting.raw"}
    no_ds = _trainer(planned, monkeypatch, "nnUNetTrainerMASLNoDeepSupervision")
    assert no_ds.network.decoder.deep_supervision is False
    no_ds.load_checkpoint(str(checkpoint))
    torch.testing.assert_close(no_ds.masl.masl.weights, trainer.masl.masl.weights)


@needs_nnunet
def test_train_and_predict_with_nnunet_console_scripts(planned) -> None:
    env, base = planned["env"], planned["base"]
    train = [_console("nnUNetv2_train"), str(DATASET_ID), CONFIGURATION, "0"]
    done = subprocess.run(
        [*train, "-tr", "nnUNetTrainer_S2MTestTiny", "-device", "cpu"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run_dir = (
        base / "results" / planned["dataset"] / f"nnUNetTrainer_S2MTestTiny__nnUNetPlans__{CONFIGURATION}"
    )
    assert (run_dir / "fold_0" / "checkpoint_final.pth").is_file()
    summary = json.loads((run_dir / "fold_0" / "validation" / "summary.json").read_text())
    assert 0.0 <= summary["foreground_mean"]["Dice"] <= 1.0
    raw = base / "raw" / planned["dataset"]
    out = base / "predictions"
    predict = [_console("nnUNetv2_predict"), "-i", str(raw / "imagesTs"), "-o", str(out)]
    predict += ["-d", str(DATASET_ID), "-c", CONFIGURATION, "-f", "0", "-tr", "nnUNetTrainer_S2MTestTiny"]
    done = subprocess.run(
        [*predict, "-device", "cpu", "--disable_tta", "-npp", "1", "-nps", "1"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for label in sorted((raw / "labelsTs").iterdir()):
        predicted = np.array(Image.open(out / label.name))
        assert predicted.shape == np.array(Image.open(label)).shape
        assert set(np.unique(predicted)) <= {0, 1}
    shutil.rmtree(out)
