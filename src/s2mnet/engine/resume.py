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

Reading tells the truth: a state of the wrong structure (valid JSON, not what ``s2m train`` writes) is
refused by :func:`check_training_state` (:func:`load_resumable_state`, called by
:func:`s2mnet.engine.config.resume_config`); a missing state says whether the run stopped before its first
epoch finished or was killed while writing the state after epoch N (``last.safetensors`` records N), and
the partial temporary file such a kill leaves is removed.

Random streams are not stored: every epoch re-seeds them from ``(seed, epoch, rank)``
(:func:`s2mnet.engine.distributed.seed_epoch`), and the data order and augmentation depend only on
``(seed, epoch, index)``, so the epoch after the stored one starts from exactly the streams an
uninterrupted run would use.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from s2mnet.engine.checkpoint import save_safetensors
from s2mnet.engine.rundir import LAST_WEIGHTS
from s2mnet.errors import RunError, S2MError
from s2mnet.io_utils import atomic_write_with, parse_json

#: Metadata key of the JSON structure and the format version (bumped when the layout changes).
STATE_KEY = "s2mnet_train_state"
STATE_FORMAT = 1


def save_training_state(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` (nested dicts/lists of tensors, numbers, strings) to ``path`` atomically."""
    tensors: dict[str, torch.Tensor] = {}
    structure = _flatten(state, "", tensors)
    header = {STATE_KEY: json.dumps({"format": STATE_FORMAT, "state": structure})}
    atomic_write_with(path, lambda tmp: save_safetensors(tensors, tmp, header))


def load_training_state(path: str | Path) -> dict[str, Any]:
    """Read a state written by :func:`save_training_state`; a missing or damaged file is a RunError."""
    path = Path(path)
    if not path.is_file():
        raise RunError(_missing_state(path))
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            header = (handle.metadata() or {}).get(STATE_KEY)
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as exc:
        raise RunError(f"{path}: damaged training state, cannot resume ({_one_line(exc)})") from None
    if header is None:
        raise RunError(f"{path}: not an s2m training state (no {STATE_KEY} header)")
    try:
        stored = parse_json(header, f"{path} (training-state header)", RunError)
        if stored.get("format") != STATE_FORMAT:
            raise RunError(f"{path}: training-state format {stored.get('format')}, expected {STATE_FORMAT}")
        return _unflatten(stored["state"], tensors)
    except (KeyError, TypeError, AttributeError, ValueError, RecursionError) as exc:
        raise RunError(f"{path}: damaged training state header, cannot resume ({_one_line(exc)})") from None


def load_resumable_state(path: str | Path) -> dict[str, Any]:
    """:func:`load_training_state` plus :func:`check_training_state`: the state ``s2m train`` wrote.

    Raises:
        RunError: a missing (saying why), damaged or wrongly structured state, naming the file.
    """
    state = load_training_state(path)
    check_training_state(state, Path(path))
    return state


#: What :class:`~s2mnet.engine.trainer.Trainer` stores (``Trainer.state_dict``): sub-dicts and counters.
_TRAINER_DICTS = ("model", "loss", "optimizer", "scheduler", "scaler")
_TRAINER_COUNTERS = ("epoch", "step", "best_epoch")
_MAX_COUNTER = 10**9


def check_training_state(state: Any, path: Path) -> None:
    """Refuse a state of the wrong structure (valid JSON, but not what ``s2m train`` writes).

    ``trainer`` holds the dicts ``model``, ``loss``, ``optimizer``, ``scheduler``, ``scaler`` and the
    counts ``epoch``, ``step``, ``best_epoch`` and ``best_dice``; ``rows`` is a list of log rows.

    Raises:
        RunError: naming the file and the first wrong key.
    """

    def wrong(what: str) -> RunError:
        return RunError(f"{path}: damaged training state ({what}), cannot resume")

    if not isinstance(state, dict) or not isinstance(state.get("trainer"), dict):
        raise wrong("no 'trainer' section")
    trainer = state["trainer"]
    for key in _TRAINER_DICTS:
        if not isinstance(trainer.get(key), dict):
            raise wrong(f"'trainer.{key}' missing or not a dict")
    for key in _TRAINER_COUNTERS:
        value = trainer.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_COUNTER:
            raise wrong(f"'trainer.{key}' = {value!r} is not a count")
    best = trainer.get("best_dice")
    if isinstance(best, bool) or not isinstance(best, int | float) or math.isnan(best) or best > 1:
        raise wrong(f"'trainer.best_dice' = {best!r} is not a Dice score")
    rows = state.get("rows")
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise wrong("'rows' missing or not a list of log rows")
    elapsed = state.get("elapsed_s", 0.0)
    if isinstance(elapsed, bool) or not isinstance(elapsed, int | float) or not math.isfinite(elapsed):
        raise wrong(f"'elapsed_s' = {elapsed!r} is not a duration")


def _missing_state(path: Path) -> str:
    """The truth about a missing state: never started an epoch, or killed while writing the state.

    Temporary files a killed write left behind (``.train_state.safetensors.*.tmp*``) are removed.
    """
    removed = 0
    for stale in path.parent.glob(f".{path.name}.*.tmp*"):
        if stale.is_file():
            stale.unlink(missing_ok=True)
            removed += 1
    leftover = f"; {removed} partial temporary file(s) removed" if removed else ""
    epoch = _finished_epoch(path.parent / LAST_WEIGHTS)
    if epoch is None:
        return (
            f"{path}: no training state to resume from: the run stopped before its first epoch finished"
            f"{leftover}; start it again (s2m train ... --overwrite)"
        )
    return (
        f"{path}: missing although epoch {epoch} finished ({LAST_WEIGHTS} exists): the run was killed while "
        f"writing its training state{leftover}; it cannot be resumed; start it again with --overwrite "
        f"({LAST_WEIGHTS} of epoch {epoch} stays usable until then)"
    )


def _finished_epoch(weights: Path) -> int | str | None:
    """The epoch recorded in a weights file's header, ``"?"`` when unreadable, ``None`` when absent."""
    if not weights.is_file():
        return None
    try:
        with safe_open(str(weights), framework="pt", device="cpu") as handle:
            meta = parse_json((handle.metadata() or {}).get("s2mnet", "{}"), weights, RunError)
        epoch = meta.get("epoch") if isinstance(meta, dict) else None
        return epoch if isinstance(epoch, int) and not isinstance(epoch, bool) else "?"
    except (SafetensorError, OSError, ValueError, S2MError):
        return "?"


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
