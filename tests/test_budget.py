"""The time-budget planner: hand-computed plans from given costs, and a budgeted run on tiny data."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from s2mnet.planning.budget import MAX_EPOCHS, RunCosts, fit_to_budget, steps_per_epoch
from s2mnet.planning.recipe import PAPER_LR, SHORT_RUN_LR

DATA_PLAN = {"batch_size": 8, "samples_per_epoch": 64, "reasons": {}}


def test_steps_per_epoch_drops_only_a_partial_last_batch_of_a_long_epoch() -> None:
    assert steps_per_epoch(64, 8) == 8
    assert steps_per_epoch(70, 8) == 8  # 6 samples dropped
    assert steps_per_epoch(12, 8) == 2  # fewer than two batches: kept whole


def test_budget_pays_for_time_spent_validations_reserve_then_steps() -> None:
    # 600 s: 30 spent, 5 % reserve (30 s) → 540 s left; validations ≤ 12 % of 600 s = 72 s → 7 of 10 s
    # (at least 4, at most 40); 540 − 70 = 470 s of 0.5-s steps → 940 steps = 117.5 epochs of 8 steps:
    # more than 60 epochs, so the virtual epoch grows to ceil(940 / 60) = 16 steps → round(940/16) = 59.
    plan, warnings = fit_to_budget(
        DATA_PLAN, 600.0, RunCosts(step_s=0.5, validation_s=10.0, spent_s=30.0), 16
    )
    assert warnings == []
    assert plan["samples_per_epoch"] == 16 * 8 and plan["epochs"] == 59 <= MAX_EPOCHS
    assert plan["val_every"] == 9  # ceil(59 / 7) → 7 validations
    assert plan["lr"] == SHORT_RUN_LR and plan["budget_s"] == 600.0
    assert "7 validations × 10.0 s, 944 steps × 0.50 s" in plan["reasons"]["epochs"]


def test_a_long_budget_stops_at_the_papers_run_length_and_uses_its_learning_rate() -> None:
    # 20 training cases: the paper's run is 150 epochs of 30 × 20 samples = 150 × 75 = 11250 steps.
    plan, _ = fit_to_budget(DATA_PLAN, 1e6, RunCosts(step_s=0.01, validation_s=1.0, spent_s=0.0), 20)
    total = plan["epochs"] * steps_per_epoch(plan["samples_per_epoch"], 8)
    assert abs(total - 11250) <= steps_per_epoch(plan["samples_per_epoch"], 8)
    assert plan["lr"] == PAPER_LR and "paper's run length" in plan["reasons"]["epochs"]


def test_flags_are_kept_and_planned_around() -> None:
    flagged = {**DATA_PLAN, "reasons": {"samples_per_epoch": "set by flag"}}
    costs = RunCosts(step_s=0.5, validation_s=10.0, spent_s=30.0)
    plan, _ = fit_to_budget(flagged, 600.0, costs, 16, flags={"val_every": 1, "lr": 3e-4})
    # one 10-s validation per epoch of 8 steps: 540 s / (0.5 + 10 / 8) s per step = 308 steps = 38 epochs
    assert plan["samples_per_epoch"] == 64 and plan["epochs"] == 38
    assert "val_every" not in plan and "lr" not in plan  # the recipe applies the flags


def test_a_budget_too_small_to_converge_is_said() -> None:
    plan, warnings = fit_to_budget(DATA_PLAN, 60.0, RunCosts(step_s=2.0, validation_s=5.0, spent_s=10.0), 16)
    assert plan["epochs"] >= 1
    assert len(warnings) == 1 and "will not converge" in warnings[0] and "--budget" in warnings[0]


def test_a_budgeted_run_trains_exactly_as_its_plan_given_by_flags(tmp_path: Path) -> None:
    """Timing the steps uses copies and does not disturb the run: the same plan by flags, same weights."""
    from s2mnet.data.synthetic import make_synthetic_dataset
    from s2mnet.engine.config import TrainConfig
    from s2mnet.engine.train import train

    data = make_synthetic_dataset(tmp_path / "data", n=8, size=32, seed=0)
    tiny = {"size": 32, "batch_size": 4, "samples_per_epoch": 8, "mode": "resize"}
    budgeted = TrainConfig(
        data=data, out=tmp_path / "budget", device="cpu", plan_overrides=tiny, quiet=True, budget_s=8.0
    )
    train(budgeted)
    import json

    plan = json.loads((tmp_path / "budget" / "plan.json").read_text())
    assert plan["budget_s"] == 8.0 and plan["reasons"]["epochs"].startswith("0.133333-min budget")
    fixed = {**tiny, "epochs": plan["epochs"], "samples_per_epoch": plan["samples_per_epoch"]}
    train(
        TrainConfig(
            data=data,
            out=tmp_path / "flags",
            device="cpu",
            plan_overrides=fixed,
            quiet=True,
            val_every=plan["val_every"],
            lr=plan["lr"],
        )
    )
    a, b = (
        load_file(tmp_path / "budget" / "last.safetensors"),
        load_file(tmp_path / "flags" / "last.safetensors"),
    )
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_negative_budget_is_refused_before_torch_is_imported(tmp_path: Path) -> None:
    code = (
        "import sys; from s2mnet.cli import main; status = main(sys.argv[1:]); "
        "assert 'torch' not in sys.modules, 'torch was imported'; sys.exit(status)"
    )
    argv = ["train", "--data", str(tmp_path), "--out", str(tmp_path / "run"), "--budget", "-1"]
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, check=False)
    assert done.returncode == 2 and done.stderr.startswith("error: --budget -1: must lie in [0, 1e9]")


@pytest.mark.parametrize(
    ("device", "given", "expected"),
    [("cpu", None, 900.0), ("cpu", 0.0, None), ("cuda", None, None), ("cuda", 120.0, 120.0)],
)
def test_default_budget_is_15_minutes_on_a_cpu_and_none_on_a_gpu(device, given, expected) -> None:
    from s2mnet.engine.config import TrainConfig
    from s2mnet.engine.train import _budget_s

    config = TrainConfig(data=".", out=".", budget_s=given)
    assert _budget_s(config, torch.device(device)) == expected
    with_epochs = TrainConfig(data=".", out=".", budget_s=given, plan_overrides={"epochs": 3})
    assert _budget_s(with_epochs, torch.device(device)) is None


def test_precise_bn_replaces_running_statistics_by_the_exact_batch_average() -> None:
    """Two batches of one-channel images with known values: the re-estimated running mean is the mean
    of the batch means, the running variance the mean of the unbiased batch variances; weights unchanged."""
    from torch import nn

    from s2mnet.engine.trainer import Trainer
    from s2mnet.losses import create_loss
    from s2mnet.planning.recipe import add_training_recipe

    norm = nn.BatchNorm2d(1)
    model = nn.Sequential(norm, nn.Conv2d(1, 1, 1))
    weights = [p.detach().clone() for p in model.parameters()]
    first = torch.tensor([0.0, 2.0]).view(2, 1, 1, 1).expand(2, 1, 2, 2)  # mean 1, unbiased var 8/7
    second = torch.tensor([4.0, 4.0]).view(2, 1, 1, 1).expand(2, 1, 2, 2)  # mean 4, var 0
    loader = [{"image": first.contiguous()}, {"image": second.contiguous()}, {"image": first * 100}]
    plan = add_training_recipe({"epochs": 1, "reasons": {}})
    trainer = Trainer(model, create_loss("dicece", num_classes=1), plan, loader, None, torch.device("cpu"))
    trainer.recalibrate_batchnorm(2)
    assert torch.allclose(norm.running_mean, torch.tensor([2.5]))
    assert torch.allclose(norm.running_var, torch.tensor([(8 / 7 + 0.0) / 2]))
    assert norm.momentum == 0.1 and model.training
    assert all(torch.equal(a, b) for a, b in zip(weights, model.parameters(), strict=True))


def test_a_run_with_precise_bn_stores_it_in_its_plan(tmp_path: Path) -> None:
    import json

    from s2mnet.data.synthetic import make_synthetic_dataset
    from s2mnet.engine.config import TrainConfig
    from s2mnet.engine.train import train

    data = make_synthetic_dataset(tmp_path / "data", n=6, size=32, seed=0)
    tiny = {"size": 32, "batch_size": 2, "samples_per_epoch": 4, "mode": "resize", "epochs": 2}
    summary = train(
        TrainConfig(
            data=data, out=tmp_path / "run", device="cpu", plan_overrides=tiny, quiet=True, precise_bn=2
        )
    )
    plan = json.loads((tmp_path / "run" / "plan.json").read_text())
    assert plan["precise_bn"] == 2 and summary["epochs_run"] == 2
