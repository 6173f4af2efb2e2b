"""Dataset presets for reproducing the paper (method.md §4–5): layout, split, label mode, protocol, numbers.

``get_preset("drive")`` → :class:`Preset`; ``list_presets()`` → names. ``s2m reproduce`` runs a preset's
protocol (:mod:`s2mnet.reproduce`). The pairing itself is the generic one of
:func:`s2mnet.data.discover` — a preset only checks that the discovered cases look like its dataset.

The presets are data: ``presets.toml`` (one table per preset, with the paper's numbers), loaded and
validated by :mod:`~s2mnet.planning.presets.registry` into :class:`Preset`/:class:`PaperNumbers`
(:mod:`~s2mnet.planning.presets.entries`); scales and recipes in :mod:`~s2mnet.planning.presets.scales`;
the folder checks and splits in :mod:`~s2mnet.planning.presets.checks`.
"""

from s2mnet.planning.presets.registry import (
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
