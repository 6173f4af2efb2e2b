"""Checkpoints: safetensors weights (no pickle: loading never executes code), written atomically, and
the model of a run folder (file names: :mod:`s2mnet.engine.rundir`).

Loading checks that the weights fit the architecture named in ``run.json``; a checkpoint from another
architecture or class count is refused with a one-line :class:`~s2mnet.errors.RunError`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from s2mnet.engine.rundir import RUN_CONFIG, read_run_config, weights_path
from s2mnet.errors import RunError, first_line
from s2mnet.io_utils import atomic_write_with


def save_weights(
    path: str | Path, state: dict[str, torch.Tensor], metadata: dict[str, Any] | None = None
) -> None:
    """Save a tensor dict as safetensors, atomically.

    Args:
        path: destination ``.safetensors`` file.
        state: name → tensor (e.g. ``model.state_dict()``); tensors are made contiguous on CPU.
        metadata: small JSON-serialisable dict stored in the file header (as one JSON string).
    """
    tensors = {name: t.detach().to("cpu").contiguous() for name, t in state.items()}
    header = {"s2mnet": json.dumps(metadata or {})}
    atomic_write_with(path, lambda tmp: save_file(tensors, str(tmp), metadata=header))


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a safetensors file into CPU tensors; a missing or corrupt file is a :class:`RunError`."""
    path = Path(path)
    if not path.is_file():
        raise RunError(f"{path}: checkpoint not found")
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise RunError(f"{path}: not a readable safetensors checkpoint ({exc})") from None


def load_state_into(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str | Path) -> None:
    """Load ``state`` into ``model`` strictly, refusing another architecture or class count clearly."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        detail = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise RunError(f"{source}: weights do not fit this architecture ({detail})")
    for name, tensor in state.items():
        if tensor.shape != expected[name].shape:
            raise RunError(
                f"{source}: weight {name} has shape {tuple(tensor.shape)} but the model expects "
                f"{tuple(expected[name].shape)} (another class count or architecture?)"
            )
    model.load_state_dict(state, strict=True)


def load_model(run_dir: str | Path, which: str = "best", device: str | torch.device = "cpu"):
    """Rebuild a run's model and load its weights, ready for inference (``eval()`` mode).

    Args:
        run_dir: a folder written by ``s2m train``.
        which: ``"best"`` (best validation Dice) or ``"last"``.
        device: where to put the model.

    Returns:
        ``(model, run_config)``.
    """
    from s2mnet.models import create_model

    run_dir = Path(run_dir)
    config = read_run_config(run_dir)  # validated (rundir.validate_run_config): counts, sizes, paths
    if not isinstance(config.get("model"), dict):
        raise RunError(f"{run_dir / RUN_CONFIG}: no 'model' section; cannot rebuild the model")
    try:
        model = create_model(**config["model"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise RunError(f"{run_dir / RUN_CONFIG}: cannot rebuild the model ({first_line(exc)})") from None
    weights = weights_path(run_dir, which)
    load_state_into(model, load_weights(weights), weights)
    return model.to(device).eval(), config
