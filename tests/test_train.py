"""Training loop, schedule, run folder and reproducibility, on tiny synthetic data."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from s2mnet.engine.config import TrainConfig
from s2mnet.engine.fit import fit as _fit
from s2mnet.engine.outputs import prepare_output_dir
from s2mnet.engine.rundir import RUN_FILES
from s2mnet.engine.schedule import warmup_cosine
from s2mnet.engine.train import train
from s2mnet.engine.trainer import Trainer
from s2mnet.errors import S2MError
from s2mnet.planning.recipe import (
    PAPER_LR,
    SHORT_RUN_LR,
    add_training_recipe,
    default_lr,
    default_warmup_epochs,
)

TINY = {"size": 32, "epochs": 2, "batch_size": 4, "samples_per_epoch": 8, "mode": "resize"}


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from s2mnet.data.synthetic import make_synthetic_dataset

    return make_synthetic_dataset(tmp_path_factory.mktemp("data"), n=8, size=32, seed=0)


def tiny_config(data: Path, out: Path, **changes) -> TrainConfig:
    config = TrainConfig(
        data=data, out=out, device="cpu", seed=7, plan_overrides=dict(TINY), quiet=True, workers=0
    )
    for key, value in changes.items():
        setattr(config, key, value)
    return config


@pytest.fixture(scope="module")
def tiny_run(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("runs") / "run"
    return out, train(tiny_config(tiny_data, out))


# --- schedule -------------------------------------------------------------------------------------


def test_warmup_cosine_values_by_hand() -> None:
    """lr(t) = lr(0.01 + 0.99 t/W) in the warm-up, then min + (lr - min)(1 + cos(pi (t-W)/(T-W)))/2."""
    optimizer = torch.optim.AdamW([nn.Parameter(torch.zeros(1))], lr=1e-3)
    scheduler = warmup_cosine(optimizer, total_steps=6, warmup_steps=2, min_lr=1e-5)
    seen = []
    for _ in range(6):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    seen.append(optimizer.param_groups[0]["lr"])
    # t = 0, 1: warm-up 1e-5, 5.05e-4; t = 2..6: cosine over 4 steps: 1e-3, 0.5·(1e-3+1e-5)(1+cos(π/4))...
    expected = [1e-5, 1e-3 * (0.01 + 0.99 / 2)] + [
        1e-5 + (1e-3 - 1e-5) * (1 + math.cos(math.pi * k / 4)) / 2 for k in range(5)
    ]
    assert seen == pytest.approx(expected, rel=1e-9)
    assert seen[2] == pytest.approx(1e-3) and seen[-1] == pytest.approx(1e-5)


def test_schedule_without_warmup_is_plain_cosine() -> None:
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    scheduler = warmup_cosine(optimizer, total_steps=2, warmup_steps=0, min_lr=0.0)
    lrs = [optimizer.param_groups[0]["lr"]]
    for _ in range(2):
        optimizer.step()
        scheduler.step()
        lrs.append(optimizer.param_groups[0]["lr"])
    assert lrs == pytest.approx([0.1, 0.05, 0.0], abs=1e-12)


@pytest.mark.parametrize(("epochs", "warmup"), [(150, 10), (300, 10), (30, 3), (5, 0)])
def test_default_warmup_scales_with_the_run(epochs: int, warmup: int) -> None:
    assert default_warmup_epochs(epochs) == warmup


def test_recipe_defaults_and_overrides() -> None:
    paper = add_training_recipe({"epochs": 150, "reasons": {}}, TrainConfig(data=".", out="."))
    assert paper["lr"] == PAPER_LR and paper["warmup_epochs"] == 10 and paper["patience"] == 50
    assert paper["min_lr"] == 1e-6 and paper["clip_grad"] == 1.0 and paper["weight_decay"] == 1e-4
    assert set(paper["reasons"]) >= {"lr", "warmup_epochs", "patience", "min_lr", "clip_grad"}
    short = add_training_recipe({"epochs": 20}, TrainConfig(data=".", out=".", lr=3e-4, patience=0))
    assert short["lr"] == 3e-4 and short["reasons"]["lr"] == "set by flag"
    assert short["patience"] == 0 and short["warmup_epochs"] == 2
    default_short = add_training_recipe({"epochs": 20}, TrainConfig(data=".", out="."))
    assert default_short["lr"] == SHORT_RUN_LR and default_short["patience"] == 10
    assert default_short["min_epochs"] == 0 and paper["min_epochs"] == 0  # no floor unless asked
    assert default_lr(20) == SHORT_RUN_LR and default_lr(60) == PAPER_LR


# --- output folders -------------------------------------------------------------------------------


def test_overwrite_removes_only_what_s2m_wrote(tmp_path: Path) -> None:
    (tmp_path / "run.json").write_text("{}")
    (tmp_path / "best.safetensors").write_bytes(b"old")
    (tmp_path / "tensorboard").mkdir()
    (tmp_path / "my_notes.md").write_text("keep me")
    with pytest.raises(S2MError, match="--overwrite"):
        prepare_output_dir(tmp_path, overwrite=False, marker="run.json", owned=RUN_FILES)
    prepare_output_dir(tmp_path, overwrite=True, marker="run.json", owned=RUN_FILES)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["my_notes.md"]


# --- a whole tiny run -----------------------------------------------------------------------------


@pytest.mark.slow
def test_tiny_run_writes_every_file(tiny_run: tuple[Path, dict]) -> None:
    import s2mnet

    run_dir, summary = tiny_run
    for name in RUN_FILES:
        assert (run_dir / name).exists(), name
    assert any((run_dir / "tensorboard").iterdir())
    config = json.loads((run_dir / "run.json").read_text())
    assert config["status"] == "finished"
    assert config["seed"] == 7 and config["model"]["name"] == "s2mnet" and config["loss"]["name"] == "masl"
    assert config["plan"]["size"] == 32 and config["plan"]["epochs"] == 2
    assert {"torch", "s2mnet", "python"} <= set(config["versions"])
    plan = json.loads((run_dir / "plan.json").read_text())
    assert plan["lr"] == SHORT_RUN_LR and "reasons" in plan
    splits = json.loads((run_dir / "splits.json").read_text())
    assert sum(len(splits[k]) for k in ("train", "val", "test")) == 8
    with open(run_dir / "train_log.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert all(r["val_dice"] != "" for r in rows)
    assert summary["epochs_run"] == 2 and 0.0 <= summary["best_dice"] <= 1.0
    assert (run_dir / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    model = s2mnet.load(run_dir)
    assert not model.training
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 40, 36)).shape == (1, 1, 40, 36)


@pytest.mark.slow
def test_masl_weights_are_optimised(tiny_run: tuple[Path, dict]) -> None:
    """MASL's learnable weights move away from their initial values (1, 1, 1, 0.5, 0.5) during training."""
    run_dir, _ = tiny_run
    with open(run_dir / "train_log.csv") as handle:
        last = list(csv.DictReader(handle))[-1]
    weights = {key: float(value) for key, value in last.items() if key.startswith("w_")}
    assert len(weights) == 5
    initial = {"w_core": 1.0, "w_boundary": 1.0, "w_structure": 1.0, "w_scale": 0.5, "w_texture": 0.5}
    moved = [abs(weights[key] - initial[key]) for key in initial]
    assert max(moved) > 1e-4, weights


@pytest.mark.slow
def test_same_seed_gives_identical_weights_with_or_without_workers(
    tiny_run: tuple[Path, dict], tiny_data: Path, tmp_path: Path
) -> None:
    first, _ = tiny_run
    second = tmp_path / "again"
    train(tiny_config(tiny_data, second, tensorboard=False, workers=2))  # the loader's workers change nothing
    a, b = load_file(first / "last.safetensors"), load_file(second / "last.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[name], b[name]) for name in a)
    assert (first / "splits.json").read_text() == (second / "splits.json").read_text()


@pytest.mark.slow
def test_overwrite_an_earlier_run(tiny_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    one_epoch = {"plan_overrides": {**TINY, "epochs": 1}, "model": "unet"}
    train(tiny_config(tiny_data, out, loss="dicece", **one_epoch))
    assert (out / "tensorboard").is_dir()
    (out / "keep.txt").write_text("user file")
    with pytest.raises(S2MError, match="not empty"):
        train(tiny_config(tiny_data, out))
    summary = train(
        tiny_config(tiny_data, out, overwrite=True, loss="masl_fixed", tensorboard=False, **one_epoch)
    )
    assert summary["epochs_run"] == 1
    assert (out / "keep.txt").read_text() == "user file"
    assert json.loads((out / "run.json").read_text())["loss"]["name"] == "masl_fixed"
    assert not (out / "tensorboard").exists()  # the earlier run's logs were removed, not mixed in


# --- the epoch loop with stand-ins ---------------------------------------------------------------


class _ConstantLoss(nn.Module):
    """A loss with one learnable weight, to check that loss parameters are optimised with the model."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(()))

    def parameter_groups(self) -> list[dict]:
        return [{"params": [self.weight], "weight_decay": 0.0}]

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.weight * nn.functional.binary_cross_entropy_with_logits(logits, target)


def _stub_trainer(
    val_scores: list[float], epochs: int, patience: int, min_epochs: int | None = None
) -> Trainer:
    torch.manual_seed(0)
    images = torch.randn(8, 1, 8, 8)
    batches = [{"image": images[i : i + 4], "mask": (images[i : i + 4] > 0).float()} for i in (0, 4)]
    scores = iter(val_scores)
    flags = TrainConfig(data=".", out=".", patience=patience, min_epochs=min_epochs)
    plan = add_training_recipe({"epochs": epochs}, flags)
    return Trainer(
        nn.Conv2d(1, 1, 3, padding=1),
        _ConstantLoss(),
        plan,
        batches,
        lambda model: next(scores),
        torch.device("cpu"),
    )


def test_early_stopping_and_best_checkpoint(tmp_path: Path) -> None:
    from s2mnet.engine.run_log import RunLogger

    trainer = _stub_trainer([0.5, 0.7, 0.6, 0.65, 0.69, 0.9], epochs=6, patience=3)
    before = trainer.loss_fn.weight.item()
    summary = _fit(
        trainer,
        RunLogger(tmp_path, tensorboard=False),
        tmp_path,
        TrainConfig(data=".", out=tmp_path, quiet=True),
        lambda message: None,
        0.0,
    )
    assert summary == {
        "best_dice": 0.7,
        "best_epoch": 2,
        "epochs_run": 5,
        "stopped_early": True,
        "stopped_by_time": False,
    }
    assert load_file(tmp_path / "best.safetensors").keys() == load_file(tmp_path / "last.safetensors").keys()
    assert trainer.loss_fn.weight.item() != before  # loss parameters are in the optimiser
    assert trainer.step == 10


def test_early_stopping_waits_for_min_epochs(tmp_path: Path) -> None:
    from s2mnet.engine.run_log import RunLogger

    # flat at the start (an all-background model): patience 2 would stop at epoch 3, the floor keeps it
    # going to epoch 5, where it has improved, and it stops 2 stalled epochs after that
    trainer = _stub_trainer([0.2, 0.2, 0.2, 0.2, 0.6, 0.6, 0.6, 0.9], epochs=8, patience=2, min_epochs=5)
    assert trainer.plan["min_epochs"] == 5
    config = TrainConfig(data=".", out=tmp_path, quiet=True)
    summary = _fit(trainer, RunLogger(tmp_path, tensorboard=False), tmp_path, config, lambda m: None, 0.0)
    assert (summary["epochs_run"], summary["best_epoch"], summary["stopped_early"]) == (7, 5, True)


def test_non_finite_loss_is_reported() -> None:
    trainer = _stub_trainer([0.5], epochs=1, patience=0)
    trainer.loss_fn.weight.data.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="non-finite"):
        trainer.train_epoch()


def test_restrict_to_fov_silences_pixels_outside() -> None:
    from s2mnet.engine.trainer import restrict_to_fov

    logits = torch.randn(2, 1, 4, 4, requires_grad=True)
    fov = torch.zeros(2, 1, 4, 4, dtype=torch.bool)
    fov[..., :2] = True
    inside_logits, inside_masks = restrict_to_fov(logits, torch.ones(2, 1, 4, 4), fov)
    loss = nn.functional.binary_cross_entropy_with_logits(inside_logits, inside_masks, reduction="sum")
    loss.backward()
    assert torch.all(logits.grad[..., 2:] == 0) and torch.all(logits.grad[..., :2] != 0)
    assert torch.all(inside_masks[..., 2:] == 0) and torch.all(inside_masks[..., :2] == 1)
    outside_loss = nn.functional.binary_cross_entropy_with_logits(
        inside_logits[..., 2:], inside_masks[..., 2:]
    )
    assert outside_loss.item() < 1e-12
    multi, _ = restrict_to_fov(
        torch.zeros(1, 3, 1, 1), torch.zeros(1, 1, 1, 1), torch.zeros(1, 1, 1, 1, dtype=torch.bool)
    )
    assert multi.flatten().tolist() == [30.0, -30.0, -30.0]  # class 0 (background) certain


def test_channels_last_training_step_matches_the_contiguous_one() -> None:
    """The default NHWC layout (faster on CPU) computes the same loss and gradients as NCHW."""
    from s2mnet.engine.trainer import TrainStep
    from s2mnet.losses import create_loss
    from s2mnet.models import create_model

    torch.manual_seed(0)
    images = torch.randn(2, 3, 48, 48)
    masks = (torch.rand(2, 1, 48, 48) > 0.7).float()
    results = []
    for layout in (torch.contiguous_format, torch.channels_last):
        torch.manual_seed(1)
        model = create_model("s2mnet", in_channels=3, num_classes=1).to(memory_format=layout)
        step = TrainStep(model, create_loss("masl", num_classes=1), None, "cpu").eval()  # eval: no dropout
        loss = step(images.contiguous(memory_format=layout), masks, None)
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    (loss_a, grads_a), (loss_b, grads_b) = results
    assert torch.allclose(loss_a, loss_b, rtol=1e-5, atol=1e-6)
    assert len(grads_a) == len(grads_b)
    for grad_a, grad_b in zip(grads_a, grads_b, strict=True):
        assert torch.allclose(grad_a, grad_b, rtol=1e-3, atol=1e-5)


def test_validation_reports_collapsed_predictions(tmp_path: Path) -> None:
    """A model that predicts foreground everywhere: validation records it, and the warning says so."""
    from s2mnet.data.checks import prediction_warnings
    from s2mnet.data.discover import discover
    from s2mnet.data.synthetic import make_synthetic_dataset
    from s2mnet.engine.train import _make_validator

    class AllForeground(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.full((x.shape[0], 1, *x.shape[-2:]), 10.0)

    cases = discover(make_synthetic_dataset(tmp_path / "data", n=3, size=32, seed=0)).cases
    plan = {"mode": "resize", "size": 32, "inference": "resize", "num_classes": 1, "in_channels": 3,
            "preprocess": "none", "label_mode": "binary"}  # fmt: skip
    validate = _make_validator(cases, plan, torch.device("cpu"))
    validate(AllForeground())
    assert validate.fractions == [1.0, 1.0, 1.0]
    (line,) = prediction_warnings(validate.fractions, validate.truth_fractions)
    assert "3 of 3" in line
