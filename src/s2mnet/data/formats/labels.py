"""How the values or colours stored in a mask file map to class indices (:class:`LabelMap`).

Three sources give a label map (docs/data.md, "Formats"): an nnU-Net ``dataset.json`` (``labels``:
name → integer value), a colour palette (``palette.json``: name → ``[r, g, b]``), and the label values
found in NIfTI label volumes. Class ``i`` is the ``i``-th entry sorted by value (colour palettes: in the
file's order, background first); a map with two classes is a binary task (one sigmoid channel).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from s2mnet.errors import DataError

_MAX_LISTED = 6


@dataclass(frozen=True)
class LabelMap:
    """Class names and, for each class index, its stored grey value or RGB colour.

    Attributes:
        names: class names, index = class; ``names[0]`` is the background.
        values: the integer stored for each class (nnU-Net labels, NIfTI label volumes), or ``None``.
        colours: the ``(r, g, b)`` colour of each class (palette masks), or ``None``.
    """

    names: tuple[str, ...]
    values: tuple[int, ...] | None = None
    colours: tuple[tuple[int, int, int], ...] | None = None

    @property
    def num_classes(self) -> int:
        """The model's output channels: 1 for background + one class (binary), else the class count."""
        return 1 if len(self.names) == 2 else len(self.names)

    def to_json(self) -> dict:
        """JSON form stored in ``run.json["labels"]`` (read back by :meth:`from_json`)."""
        result: dict = {"names": list(self.names)}
        if self.values is not None:
            result["values"] = list(self.values)
        if self.colours is not None:
            result["colours"] = [list(c) for c in self.colours]
        return result

    @classmethod
    def from_json(cls, data: dict) -> LabelMap:
        """Inverse of :meth:`to_json`."""
        colours = data.get("colours")
        return cls(
            tuple(data["names"]),
            tuple(int(v) for v in data["values"]) if data.get("values") is not None else None,
            tuple((int(r), int(g), int(b)) for r, g, b in colours) if colours is not None else None,
        )

    def encode(self, raw: np.ndarray, path: str | Path) -> np.ndarray:
        """Stored mask (grey ``(H, W)`` or colour ``(H, W, C)``) → class indices ``(H, W)`` uint8.

        Raises:
            DataError: a value or colour that is not in the map, naming the file, the value and its
                pixel count.
        """
        if self.colours is not None:
            keys, table = _colour_keys(raw, path), [(r << 16) | (g << 8) | b for r, g, b in self.colours]
            describe = _describe_colour
            source = "the palette"
        else:
            keys = raw[..., 0] if raw.ndim == 3 else raw
            if np.issubdtype(keys.dtype, np.floating) and not np.all(keys == np.round(keys)):
                raise DataError(f"{path}: label values are not integers")
            keys, table = keys.astype(np.int64), list(self.values or range(len(self.names)))
            describe = str
            source = "the dataset's labels"
        found, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
        lookup = {int(k): i for i, k in enumerate(table)}
        unknown = [(int(k), int(c)) for k, c in zip(found, counts, strict=True) if int(k) not in lookup]
        if unknown:
            shown = ", ".join(f"{describe(k)} ({c} px)" for k, c in unknown[:_MAX_LISTED])
            more = f", … ({len(unknown) - _MAX_LISTED} more)" if len(unknown) > _MAX_LISTED else ""
            known = ", ".join(f"{n}={describe(k)}" for n, k in zip(self.names, table, strict=True))
            raise DataError(f"{path}: values not in {source}: {shown}{more} (known: {known})")
        classes = np.array([lookup[int(k)] for k in found], np.uint8)
        return classes[inverse.reshape(keys.shape)]

    def decode(self, classes: np.ndarray, colours: bool = False) -> np.ndarray:
        """Class indices ``(…)`` → stored values (``colours=False``) or RGB colours ``(…, 3)`` uint8."""
        classes = np.asarray(classes, np.int64)
        if colours:
            if self.colours is None:
                raise DataError("this run's labels have no colour palette")
            return np.asarray(self.colours, np.uint8)[classes]
        values = np.asarray(self.values if self.values is not None else range(len(self.names)), np.int64)
        return values[classes]


def _colour_keys(raw: np.ndarray, path: str | Path) -> np.ndarray:
    """``(H, W)`` grey or ``(H, W, C)`` colour(+alpha) → packed ``r << 16 | g << 8 | b`` integers."""
    if raw.dtype != np.uint8:
        raise DataError(f"{path}: colour-palette masks must be 8-bit images, not {raw.dtype}")
    if raw.ndim == 2:
        raw = np.repeat(raw[..., None], 3, axis=-1)
    elif raw.shape[-1] in (1, 2):
        raw = np.repeat(raw[..., :1], 3, axis=-1)
    rgb = raw[..., :3].astype(np.int64)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def _describe_colour(key: int) -> str:
    return f"[{key >> 16}, {(key >> 8) & 255}, {key & 255}]"
