"""Crash-safe training state: one safetensors file with every tensor and a JSON header for the rest.

``s2m train`` writes ``RUN/train_state.safetensors`` at the end of every epoch (after validation and
logging). It holds the model, the loss (MASL's learnable weights), the optimiser (AdamW moments), the
learning-rate schedule, the gradient scaler, epoch, step, the best Dice and its epoch (the early-stopping
state) and the log rows so far. ``s2m train --resume RUN`` continues from it.

Format: nested state dicts are flattened; every tensor is stored under a dotted name in the safetensors
file and replaced in the structure by ``{"__tensor__": name}``; dicts with non-string keys (the
optimiser's parameter indices) become ``{"__items__": [[key, value], ...]}``. The structure is stored as
JSON in the file's metadata, so a single file is written and loading never unpickles (safetensors +
``json.loads``). The write is atomic (:func:`s2mnet.io_utils.atomic_write_with`: temp file, fsync,
``os.replace``): a kill during a write leaves the previous state in place.

Random streams are not stored: every epoch re-seeds them from ``(seed, epoch, rank)``
(:func:`s2mnet.engine.distributed.seed_epoch`), and the data order and augmentation depend only on
``(seed, epoch, index)``, so the epoch after the stored one starts from exactly the streams an
uninterrupted run would use.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from s2mnet.errors import RunError
from s2mnet.io_utils import atomic_write_with

TRAIN_STATE = "train_state.safetensors"
#: Metadata key of the JSON structure and the format version (bumped when the layout changes).
STATE_KEY = "s2mnet_train_state"
STATE_FORMAT = 1


def save_training_state(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` (nested dicts/lists of tensors, numbers, strings) to ``path`` atomically."""
    tensors: dict[str, torch.Tensor] = {}
    structure = _flatten(state, "", tensors)
    header = {STATE_KEY: json.dumps({"format": STATE_FORMAT, "state": structure})}
    atomic_write_with(path, lambda tmp: save_file(tensors, str(tmp), metadata=header))


def load_training_state(path: str | Path) -> dict[str, Any]:
    """Read a state written by :func:`save_training_state`; a missing or damaged file is a RunError."""
    path = Path(path)
    if not path.is_file():
        raise RunError(f"{path}: no training state to resume from (the run stopped before its first epoch)")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            header = (handle.metadata() or {}).get(STATE_KEY)
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as exc:
        raise RunError(f"{path}: damaged training state, cannot resume ({_one_line(exc)})") from None
    if header is None:
        raise RunError(f"{path}: not an s2m training state (no {STATE_KEY} header)")
    try:
        stored = json.loads(header)
        if stored.get("format") != STATE_FORMAT:
            raise RunError(f"{path}: training-state format {stored.get('format')}, expected {STATE_FORMAT}")
        return _unflatten(stored["state"], tensors)
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise RunError(f"{path}: damaged training state header, cannot resume ({_one_line(exc)})") from None


def _flatten(value: Any, name: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, torch.Tensor):
        key = name or "tensor"
        tensors[key] = value.detach().to("cpu").contiguous().clone()
        return {"__tensor__": key}
    if isinstance(value, dict):
        if all(isinstance(key, str) for key in value):
            return {key: _flatten(item, f"{name}.{key}".lstrip("."), tensors) for key, item in value.items()}
        return {"__items__": [[key, _flatten(item, f"{name}.{key}", tensors)] for key, item in value.items()]}
    if isinstance(value, list | tuple):
        return [_flatten(item, f"{name}.{i}", tensors) for i, item in enumerate(value)]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"training state: cannot store {type(value).__name__} at {name!r}")


def _unflatten(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__tensor__"}:
            if value["__tensor__"] not in tensors:
                raise KeyError(f"tensor {value['__tensor__']} missing")
            return tensors[value["__tensor__"]]
        if set(value) == {"__items__"}:
            return {key: _unflatten(item, tensors) for key, item in value["__items__"]}
        return {key: _unflatten(item, tensors) for key, item in value.items()}
    if isinstance(value, list):
        return [_unflatten(item, tensors) for item in value]
    return value


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
