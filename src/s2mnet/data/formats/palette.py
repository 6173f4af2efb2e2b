"""Multi-class masks drawn in colours, with a palette file naming the classes.

Schema (``palette.json`` in the dataset folder): a JSON object mapping each class name to its RGB
colour, background first::

    {"background": [0, 0, 0], "instrument_shaft": [255, 0, 0], "instrument_wrist": [0, 255, 0]}

Class ``i`` is the ``i``-th entry; the background must be ``[0, 0, 0]`` or come first. Masks are matched
colour by colour (exact match, alpha ignored; grey masks count as ``[v, v, v]``); a colour that is not in
the palette is a :class:`DataError` naming the file, the colour and its pixel count. JPEG masks are
refused (compression changes colours). A palette with one class besides the background is a binary task.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from s2mnet.data.formats.labels import LabelMap
from s2mnet.data.naming import LOSSY_EXTENSIONS, image_extension
from s2mnet.errors import DataError
from s2mnet.io_utils import read_json

PALETTE_FILE = "palette.json"


def load_palette(path: str | Path) -> LabelMap:
    """Read a palette file (schema in the module docstring) into a :class:`LabelMap` with colours.

    Raises:
        DataError: unreadable JSON, a colour that is not three integers 0..255, a repeated colour, or
            fewer than two classes, naming the file.
    """
    path = Path(path)
    data = read_json(path, DataError, what="palette")
    if not isinstance(data, dict) or len(data) < 2:
        raise DataError(
            f'{path}: a palette maps at least two class names to colours, e.g. {{"background": [0, 0, 0]}}'
        )
    colours = []
    for name, colour in data.items():
        valid = isinstance(colour, list) and len(colour) == 3
        if not valid or not all(
            isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in colour
        ):
            raise DataError(
                f"{path}: class {name!r} needs an [r, g, b] colour of integers 0..255, not {colour!r}"
            )
        colours.append(tuple(colour))
    if len(set(colours)) < len(colours):
        raise DataError(f"{path}: two classes share one colour")
    names = list(data)
    if (0, 0, 0) in colours and colours[0] != (0, 0, 0):  # black is the background wherever it is listed
        first = colours.index((0, 0, 0))
        names.insert(0, names.pop(first))
        colours.insert(0, colours.pop(first))
    return LabelMap(tuple(names), colours=tuple(colours))


def apply_palette(index):
    """Attach the dataset folder's ``palette.json`` to every case of a discovered index.

    Returns the index unchanged when the folder has no palette; otherwise a copy whose cases carry the
    palette (masks are then decoded colour by colour) and whose ``num_classes``/``classes`` come from it.

    Raises:
        DataError: a bad palette file, or a JPEG mask (lossy colours).
    """
    path = Path(index.root) / PALETTE_FILE
    if not path.is_file():
        return index
    palette = load_palette(path)
    lossy = [m for case in index.cases for m in case.masks if image_extension(m) in LOSSY_EXTENSIONS]
    if lossy:
        raise DataError(f"{lossy[0]}: colour-palette masks must be lossless (PNG, TIFF, BMP), not JPEG")
    cases = [dataclasses.replace(case, labels=palette) for case in index.cases]
    notes = [
        *index.notes,
        f"colour palette {PALETTE_FILE}: {len(palette.names)} classes ({', '.join(palette.names)})",
    ]
    return dataclasses.replace(
        index,
        cases=cases,
        num_classes=palette.num_classes,
        classes=list(palette.names),
        labels=palette,
        notes=notes,
    )


def write_colour_mask(path: Path, classes, plan: dict) -> None:
    """Save a class-index mask as an RGB PNG in the palette colours stored in the run's plan.

    Raises:
        DataError: the run was not trained with a colour palette.
    """
    import numpy as np
    from PIL import Image

    from s2mnet.io_utils import atomic_write_with

    if not (plan.get("labels") or {}).get("colours"):
        raise DataError(f"{path}: --colours needs a run trained with a {PALETTE_FILE} colour palette")
    picture = Image.fromarray(LabelMap.from_json(plan["labels"]).decode(np.asarray(classes), colours=True))
    atomic_write_with(path, lambda tmp: picture.save(tmp, format="PNG"))
