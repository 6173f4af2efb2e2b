"""The planning stage: a dataset's fingerprint, the training plan it implies (every choice with its reason),
the optimisation recipe that completes it, and the paper's dataset presets.

Planning reads the data stage and nothing above it (docs/architecture.md).
"""

from __future__ import annotations

import importlib
from typing import Any

# ``fingerprint`` is both a module and its main function (see s2mnet.data's ``discover``).
from s2mnet.planning.fingerprint import fingerprint as fingerprint

_EXPORTS = {
    "Plan": "s2mnet.planning.plan",
    "make_plan": "s2mnet.planning.planner",
    "format_fingerprint": "s2mnet.planning.planner",
    "validate_plan": "s2mnet.planning.plan",
    "format_plan": "s2mnet.planning.plan",
    "plan_summary": "s2mnet.planning.plan",
    "add_training_recipe": "s2mnet.planning.recipe",
}

__all__ = sorted([*_EXPORTS, "fingerprint"])


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 's2mnet.planning' has no attribute {name!r}")
