"""The two records of a preset: :class:`Preset` (one benchmark of the paper) and :class:`PaperNumbers`.

Their values live in ``presets.toml`` beside this module and are read by
:func:`s2mnet.planning.presets.registry.load_presets`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

#: method.md §4: small datasets expanded ×30 per epoch (the ``paper`` scale's "virtual epoch").
PAPER_VIRTUAL_EPOCH_FACTOR = 30
#: method.md §5 columns besides S2M-Net (the named "best other" differs per dataset).
BASELINE_COLUMNS = ("U-Net", "TransUNet", "Swin-Unet")


@dataclass(frozen=True)
class PaperNumbers:
    """Dice (%) the paper reports (method.md §5, ICML version, mean of 5 runs).

    Attributes:
        s2mnet: S2M-Net's Dice.
        baselines: every baseline of the row, ``{name: Dice}``.
        per_class: per-class Dice where the paper gives it (it gives none: multi-class rows are means).
    """

    s2mnet: float
    baselines: dict[str, float]
    per_class: dict[str, float] = field(default_factory=dict)

    def best_baseline(self) -> tuple[str, float]:
        """The strongest baseline of the row (which may beat S2M-Net, as on CVC-ColonDB)."""
        name = max(self.baselines, key=self.baselines.__getitem__)
        return name, self.baselines[name]


@dataclass(frozen=True)
class Preset:
    """One benchmark of the paper.

    Attributes:
        name: registry key (``s2m reproduce NAME``).
        title: the dataset's name in the paper (method.md §5).
        modality: imaging modality.
        layout: the publisher's layout (what ``--data`` may point at), and the copies also accepted.
        label_mode: ``binary``, ``multiclass`` or ``multilabel`` (:mod:`s2mnet.data.labels`).
        classes: foreground class names.
        split_file: JSON file in ``s2mnet/planning/presets/splits/`` (:func:`resolve_split`).
        protocol: ``resize`` (352² resized images) or ``fundus`` (patches, green channel + CLAHE).
        name_pattern: regular expression every image file stem must match (:func:`check_data`).
        example_names: shown in the error when the folder does not look like this dataset.
        paper: the paper's numbers.
        labels: extra plan settings of the label mode (``label_mode``/``regions``), if any.
        ready: False for registry entries whose data format or label mode is completed elsewhere.
        notes: caveats shown in the docs and the result row.
        epoch_factor: ``paper`` scale samples per epoch = this × the training cases (method.md §4's ×30
            "virtual epoch" of small datasets; 1 for BraTS, whose tens of thousands of slices are not small).
    """

    name: str
    title: str
    modality: str
    layout: str
    label_mode: str
    classes: tuple[str, ...]
    split_file: str
    protocol: str
    name_pattern: str
    example_names: str
    paper: PaperNumbers
    labels: dict[str, Any] = field(default_factory=dict)
    ready: bool = True
    notes: str = ""
    epoch_factor: int = PAPER_VIRTUAL_EPOCH_FACTOR

    def split_spec(self) -> dict[str, Any]:
        """The shipped split file, parsed."""
        splits = resources.files("s2mnet.planning.presets").joinpath("splits")
        text = splits.joinpath(self.split_file).read_text("utf-8")
        return json.loads(text)
