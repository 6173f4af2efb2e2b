"""Dataset presets for reproducing the paper (PAPER.md §4–5): layout, split, label mode, protocol, numbers.

``get_preset("drive")`` → :class:`Preset`; ``list_presets()`` → names. ``s2m reproduce`` runs a preset's
protocol (:mod:`s2mnet.reproduce`). The pairing itself is the generic one of
:func:`s2mnet.data.discover` — a preset only checks that the discovered cases look like its dataset.
"""

from s2mnet.presets.registry import (
    PRESETS,
    RECIPES,
    SCALES,
    PaperNumbers,
    Preset,
    check_data,
    get_preset,
    list_presets,
    plan_overrides,
    resolve_split,
)

__all__ = [
    "PRESETS",
    "RECIPES",
    "SCALES",
    "PaperNumbers",
    "Preset",
    "check_data",
    "get_preset",
    "list_presets",
    "plan_overrides",
    "resolve_split",
]
