"""Mixed precision: SSTM's FFTs run in float32 under autocast; AMP on CPU falls back to float32."""

from __future__ import annotations

import pytest
import torch

from s2mnet.models import create_model
from s2mnet.models.sstm import SpectralBranch


def test_spectral_branch_under_bf16_autocast_is_the_float32_result() -> None:
    """Under autocast the band filter computes in float32 and only the result is cast back to bf16."""
    torch.manual_seed(0)
    branch = SpectralBranch(4, k=8)
    with torch.no_grad():
        branch.weight.uniform_(0.5, 1.5)
        x = torch.randn(2, 4, 16, 12).bfloat16()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = branch(x)
        reference = branch(x.float())  # the same bf16 inputs, float32 everywhere
    assert mixed.dtype == torch.bfloat16
    assert torch.equal(mixed, reference.bfloat16())


def test_every_fft_of_the_model_sees_float32_under_autocast(monkeypatch: pytest.MonkeyPatch) -> None:
    """Spy on rfft2: inside S2M-Net under bf16 autocast its input is float32 and autocast is off."""
    seen: list[tuple[torch.dtype, bool]] = []
    rfft2 = torch.fft.rfft2

    def spy(x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        seen.append((x.dtype, torch.is_autocast_enabled("cpu")))
        return rfft2(x, *args, **kwargs)

    monkeypatch.setattr(torch.fft, "rfft2", spy)
    model = create_model("s2mnet", in_channels=3, num_classes=1).eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.randn(1, 3, 32, 32))
    assert out.shape == (1, 1, 32, 32)
    assert seen, "the model ran no FFT"
    assert all(dtype == torch.float32 and not autocast for dtype, autocast in seen), seen


def test_amp_is_ignored_on_cpu() -> None:
    """``amp="bf16"`` on a CPU trainer trains in float32 (the caller prints a warning)."""
    from s2mnet.engine.config import TrainConfig
    from s2mnet.engine.trainer import Trainer
    from s2mnet.planning.recipe import add_training_recipe

    plan = add_training_recipe({"epochs": 1}, TrainConfig(data=".", out="."))
    batches = [{"image": torch.randn(2, 1, 8, 8), "mask": torch.ones(2, 1, 8, 8)}]
    loss = torch.nn.BCEWithLogitsLoss()
    loss.parameter_groups = lambda: []  # type: ignore[method-assign]
    trainer = Trainer(
        torch.nn.Conv2d(1, 1, 3, padding=1), loss, plan, batches, None, torch.device("cpu"), "bf16"
    )
    assert trainer.amp == "none"
    assert trainer.train_epoch()["train_loss"] > 0
