"""The training plan: one typed owner of every plan key, its type, its allowed values and its reason.

A plan is written by the planner (:func:`s2mnet.planning.planner.make_plan`: the data choices), completed
by the recipe (:func:`s2mnet.planning.recipe.add_training_recipe`: the optimisation choices), adjusted by
presets (:mod:`s2mnet.planning.presets`) and flags, stored as JSON in a run folder (``plan.json`` and
``run.json["plan"]``) and in exported ONNX files, and read back by the engine, ``s2m evaluate``,
``s2m predict`` and the onnxruntime predictor.

The JSON form (a plain dict, as stored) stays the interchange format; :class:`Plan` declares every key
once and :func:`validate_plan` checks a dict against it wherever a plan enters: after planning, after the
recipe, and when a run folder is read (so a ``plan.json`` with ``"size": 1e7`` is a one-line error, not an
allocation of terabytes). ``Plan.from_dict(d).reasons`` says why each value was chosen.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from s2mnet.errors import S2MError

_SIDE = (4, 16384)  # sizes and patch sizes, pixels per side


def _spec(kind: tuple[type, ...], choices: tuple = (), bounds: tuple = ()) -> dict[str, Any]:
    """Field metadata: ``kind`` (accepted JSON types), optional ``choices`` or inclusive ``bounds``."""
    return {"kind": kind, "choices": choices, "bounds": bounds}


@dataclass
class Plan:
    """Every key a plan may hold (``None``: not set, or not used by this mode).

    Data choices (the planner): ``mode`` resize | patch, ``tubular`` (thin structures: clDice reported),
    ``size`` (resize mode) / ``patch_size`` (patch mode), ``inference`` resize | sliding_window,
    ``overlap`` (sliding windows), ``preprocess`` none | green_clahe, ``use_fov``, ``in_channels``,
    ``num_classes`` (output channels; 1 = binary sigmoid), ``label_mode``, ``regions`` (multi-label:
    name → label values), ``skip_empty_slices``, ``slice_axis``, ``modalities``, ``classes``, ``labels``,
    ``loss``, ``batch_size``, ``epochs``, ``samples_per_epoch``, ``augment``, ``foreground_bias``,
    ``device`` (cpu | gpu: the budget planned for), ``sw_batch_size``.
    Recipe (:mod:`s2mnet.planning.recipe`): ``lr``, ``weight_decay``, ``warmup_epochs``, ``min_lr``,
    ``clip_grad``, ``patience``, ``min_epochs``, ``val_every``, ``precise_bn``. Budget
    (:mod:`s2mnet.planning.budget`): ``budget_s``, the wall time the run was planned for. ``reasons``:
    key → why it has its value.
    """

    mode: str | None = field(default=None, metadata=_spec(kind=(str,), choices=("resize", "patch")))
    tubular: bool | None = field(default=None, metadata=_spec(kind=(bool,)))
    size: int | list | None = field(default=None, metadata=_spec(kind=(int, list), bounds=_SIDE))
    patch_size: int | list | None = field(default=None, metadata=_spec(kind=(int, list), bounds=_SIDE))
    inference: str | None = field(
        default=None, metadata=_spec(kind=(str,), choices=("resize", "sliding_window"))
    )
    overlap: float | None = field(default=None, metadata=_spec(kind=(int, float), bounds=(0.0, 0.99)))
    preprocess: str | None = field(default=None, metadata=_spec(kind=(str,), choices=("none", "green_clahe")))
    use_fov: bool | None = field(default=None, metadata=_spec(kind=(bool,)))
    in_channels: int | None = field(default=None, metadata=_spec(kind=(int,), bounds=(1, 64)))
    num_classes: int | None = field(default=None, metadata=_spec(kind=(int,), bounds=(1, 1024)))
    label_mode: str | None = field(
        default=None, metadata=_spec(kind=(str,), choices=("binary", "multiclass", "multilabel"))
    )
    regions: dict | None = field(default=None, metadata=_spec(kind=(dict,)))
    skip_empty_slices: bool | None = field(default=None, metadata=_spec(kind=(bool,)))
    slice_axis: int | None = field(default=None, metadata=_spec(kind=(int,), bounds=(-3, 2)))
    modalities: list | None = field(default=None, metadata=_spec(kind=(list,)))
    classes: list | None = field(default=None, metadata=_spec(kind=(list,)))
    labels: dict | None = field(default=None, metadata=_spec(kind=(dict,)))
    loss: str | None = field(default=None, metadata=_spec(kind=(str,)))
    batch_size: int | None = field(default=None, metadata=_spec(kind=(int,), bounds=(1, 4096)))
    epochs: int | None = field(default=None, metadata=_spec(kind=(int,), bounds=(1, 100_000)))
    samples_per_epoch: int | None = field(default=None, metadata=_spec(kind=(int,), bounds=(1, 100_000_000)))
    augment: str | None = field(default=None, metadata=_spec(kind=(str,), choices=("none", "light", "full")))
    foreground_bias: float | None = field(default=None, metadata=_spec(kind=(int, float), bounds=(0.0, 1.0)))
    device: str | None = field(default=None, metadata=_spec(kind=(str,), choices=("cpu", "gpu")))
    sw_batch_size: int | None = field(default=None, metadata=_spec(kind=(int,), bounds=(1, 4096)))
    lr: float | None = field(default=None, metadata=_spec(kind=(int, float), bounds=(0.0, 10.0)))
    weight_decay: float | None = field(default=None, metadata=_spec(kind=(int, float), bounds=(0.0, 10.0)))
    warmup_epochs: int | None = field(default=None, metadata=_spec(kind=(int,), bounds=(0, 100_000)))
    min_lr: float | None = field(default=None, metadata=_spec(kind=(int, float), bounds=(0.0, 10.0)))
    clip_grad: float | None = field(default=None, metadata=_spec(kind=(int, float), bounds=(0.0, 1e6)))
    patience: int | None = field(default=None, metadata=_spec(kind=(int,), bounds=(0, 100_000)))
    min_epochs: int | None = field(default=None, metadata=_spec(kind=(int,), bounds=(0, 100_000)))
    val_every: int | None = field(default=None, metadata=_spec(kind=(int,), bounds=(1, 100_000)))
    precise_bn: int | None = field(default=None, metadata=_spec(kind=(int,), bounds=(0, 100_000)))
    budget_s: float | None = field(default=None, metadata=_spec(kind=(int, float), bounds=(0.0, 1e11)))
    reasons: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, plan: Mapping[str, Any], source: str = "plan") -> Plan:
        """The typed form of a stored plan, validated (:func:`validate_plan`)."""
        validate_plan(plan, source)
        return cls(**{key: value for key, value in plan.items() if key in _FIELDS})

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: the keys that are set, then ``reasons``."""
        values = {key: getattr(self, key) for key in _FIELDS if key != "reasons"}
        return {**{k: v for k, v in values.items() if v is not None}, "reasons": dict(self.reasons)}


_FIELDS = {item.name: item for item in dataclasses.fields(Plan)}

#: The data-plan keys that flags and presets may set (``s2m train --size``, ``--plan key=value``...).
PLAN_KEYS = (
    "mode",
    "tubular",
    "size",
    "patch_size",
    "inference",
    "overlap",
    "preprocess",
    "use_fov",
    "in_channels",
    "num_classes",
    "label_mode",
    "regions",
    "skip_empty_slices",
    "loss",
    "batch_size",
    "epochs",
    "samples_per_epoch",
    "augment",
    "foreground_bias",
)


def validate_plan(
    plan: Any,
    source: str | Path = "plan",
    error: type[S2MError] = S2MError,
    prefix: str = "",
    strict: bool = True,
) -> dict[str, Any]:
    """Check a plan dict against :class:`Plan`: JSON type, allowed values and bounds of every key.

    ``size`` / ``patch_size`` may be one side or ``[height, width]``. ``None`` values are not checked
    (readers use their defaults).

    Args:
        plan: the dict (as stored in ``plan.json`` / ``run.json``, or as built by the planner).
        source: what to name in the error (a file path, ``"plan"``).
        error: the exception type to raise (``RunError`` for run folders).
        prefix: prepended to key names in messages (``"plan."`` inside ``run.json``).
        strict: refuse unknown keys (plans we build); stored plans of other versions may carry more.

    Returns:
        ``plan``, unchanged.

    Raises:
        error: one line naming the source, the key and the problem.
    """
    if not isinstance(plan, Mapping):
        raise error(f"{source}: the plan must be a JSON object, not {type(plan).__name__}")
    for key, value in plan.items():
        spec = _FIELDS.get(key)
        if spec is None:
            if strict:
                raise error(f"{source}: unknown plan key '{prefix}{key}'")
            continue
        if value is None:
            continue
        if key == "reasons":
            if not isinstance(value, Mapping):
                raise error(f"{source}: '{prefix}reasons' must be an object")
            continue
        _check_value(value, spec.metadata, f"{source}: '{prefix}{key}' = {value!r}", error)
    return dict(plan) if not isinstance(plan, dict) else plan


def _check_value(value: Any, meta: Mapping[str, Any], shown: str, error: type[S2MError]) -> None:
    kind, choices, bounds = meta["kind"], meta["choices"], meta["bounds"]
    if isinstance(value, list) and list in kind and bounds:  # [height, width]
        if len(value) != 2:
            raise error(f"{shown} is not a size in pixels ({bounds[0]}..{bounds[1]}, or [height, width])")
        for side in value:
            _check_value(side, {**meta, "kind": (int,)}, shown, error)
        return
    # bool is an int in Python: accept it only where a bool is expected
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in kind):
        names = " or ".join(k.__name__ for k in kind)
        raise error(f"{shown} must be {names}")
    if choices and value not in choices:
        raise error(f"{shown} must be one of {', '.join(repr(c) for c in choices)}")
    if bounds and not bounds[0] <= value <= bounds[1]:
        raise error(f"{shown} is outside [{bounds[0]}, {bounds[1]}]")


def plan_summary(plan: dict) -> str:
    """One line for logs: the main choices of a plan."""
    if plan["mode"] == "patch":
        geometry = f"patch {plan['patch_size']} + sliding window"
    else:
        geometry = f"resize {plan['size']}"
    return (
        f"{geometry}, preprocess {plan['preprocess']}, in_channels {plan['in_channels']}, "
        f"classes {plan['num_classes']}, batch {plan['batch_size']}, epochs {plan['epochs']}, "
        f"{plan['samples_per_epoch']} samples/epoch{', FOV' if plan['use_fov'] else ''}"
    )


def format_plan(plan: dict[str, Any]) -> str:
    """The plan as aligned ``key: value  (reason)`` lines, as printed by ``s2m train``."""
    reasons = plan.get("reasons", {})
    lines = ["plan:"]
    for key, value in plan.items():
        if key == "reasons":
            continue
        reason = reasons.get(key)
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        lines.append((f"  {key:<18} {shown:<16}" + (f" ({reason})" if reason else "")).rstrip())
    return "\n".join(lines)
