"""Atomic writes and checkpoints: nothing half-written, nothing unsafe loaded, wrong weights refused."""

from __future__ import annotations

import json
import os
import stat

import pytest
import torch

from s2mnet.engine.checkpoint import load_model, load_weights, save_weights
from s2mnet.engine.rundir import write_run_config
from s2mnet.errors import RunError
from s2mnet.io_utils import atomic_path, atomic_write_json, atomic_write_text
from s2mnet.models import create_model


def test_atomic_write_replaces_and_uses_umask_permissions(tmp_path):
    target = tmp_path / "sub" / "out.json"
    atomic_write_json(target, {"a": 1})
    atomic_write_json(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 2}
    old_umask = os.umask(0o022)
    try:
        atomic_write_text(target, "x")
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.json"]  # no temporary left behind


def test_failed_write_keeps_the_previous_file(tmp_path):
    target = tmp_path / "weights.txt"
    target.write_text("previous")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights.txt"]


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "best.safetensors"
    bad.write_bytes(b"\x00\x01 not a checkpoint")
    with pytest.raises(RunError, match=r"best\.safetensors: not a readable safetensors checkpoint"):
        load_weights(bad)


def test_checkpoint_from_another_class_count_is_refused(tmp_path):
    torch.manual_seed(0)
    model = create_model("unet", in_channels=1, num_classes=2)
    save_weights(tmp_path / "best.safetensors", model.state_dict())
    write_run_config(tmp_path, {"model": {**model.config, "num_classes": 3}})
    with pytest.raises(RunError, match=r"best\.safetensors: weight .* has shape .*another class count"):
        load_model(tmp_path)
    write_run_config(tmp_path, {"model": model.config})
    loaded, _ = load_model(tmp_path)
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor)
    write_run_config(tmp_path, {"model": {**model.config, "name": "s2mnet"}})
    with pytest.raises(RunError, match="weights do not fit this architecture"):
        load_model(tmp_path)
