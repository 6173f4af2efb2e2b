"""The data layer's vocabulary: a :class:`Case` (image, masks, FOV, channels, slice), the
:class:`DatasetIndex` that :func:`s2mnet.data.discover.discover` returns, and :class:`VolumeSlice`.

These are plain frozen records with no I/O, so every other data module (readers, formats, discovery,
splits, labels) can import them without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from s2mnet.data.formats.labels import LabelMap
from s2mnet.errors import DataError


@dataclass(frozen=True)
class VolumeSlice:
    """Where a 2-D case lies in its volume: ``axis`` (0..2), slice ``index``, whether it has foreground."""

    axis: int
    index: int
    foreground: bool = True


@dataclass(frozen=True)
class Case:
    """One training example: an image, the mask file(s) united into its target, an optional FOV mask."""

    case_id: str
    image: Path
    masks: tuple[Path, ...]
    fov: Path | None = None
    #: further channel files stacked after ``image`` (nnU-Net ``_0001``..., NIfTI modalities).
    channels: tuple[Path, ...] = ()
    #: for a slice of NIfTI volumes (``image``, ``channels``, ``masks[0]``): axis, index, foreground.
    slice: VolumeSlice | None = None
    #: the unit that splits keep together (a volume's id for its slices); ``None`` → the case itself.
    group: str | None = None
    #: how mask values or colours map to classes (nnU-Net labels, colour palette, NIfTI label values).
    labels: LabelMap | None = None


@dataclass
class DatasetIndex:
    """The result of :func:`discover`.

    Attributes:
        root: the dataset folder.
        cases: the pairs, sorted by ``case_id``.
        layout: short description, e.g. ``"images-masks"``, ``"images-masks-fov"``, ``"mixed"``,
            ``"case-folders"``.
        num_classes: 1 for binary masks, K for integer class maps 0..K-1 (inferred from a sample of
            masks; :func:`s2mnet.planning.fingerprint` checks every mask).
        known_split: the published split found in folder or file names, or ``None``.
        ignored: files deliberately left out (second-observer annotations, auxiliary files such as
            ``_superpixels``, field-of-view files that match no image).
        notes: one line per inference made (printed by ``s2m analyze``).
    """

    root: Path
    cases: list[Case]
    layout: str
    num_classes: int = 1
    known_split: dict | None = None
    ignored: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    classes: list[str] | None = None  # class names (nnU-Net dataset.json, palette.json), background first
    labels: LabelMap | None = None  # the label map shared by the cases, stored in run.json

    def __len__(self) -> int:
        return len(self.cases)

    def case(self, case_id: str) -> Case:
        """Return the case with this id (DataError when unknown)."""
        for case in self.cases:
            if case.case_id == case_id:
                return case
        raise DataError(f"{self.root}: no case {case_id!r} in this dataset")
