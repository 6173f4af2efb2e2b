"""Small helpers that every training command shares: the progress printer, JSON-ready values and the
library versions a run records (engine/train.py and engine/crossval.py).
"""

from __future__ import annotations

import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any


def printer(quiet: bool) -> Callable[[str], None]:
    """A ``say(message)`` that prints above tqdm's progress bars, or does nothing when ``quiet``."""
    if quiet:
        return lambda message: None
    from tqdm.auto import tqdm

    return lambda message: tqdm.write(message)


def jsonable(value: Any) -> Any:
    """``value`` with every :class:`~pathlib.Path` (in nested dicts, lists, tuples) turned into a string."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return str(value) if isinstance(value, Path) else value


def versions() -> dict[str, str]:
    """The versions a run records in ``run.json`` (s2mnet, torch, MONAI, numpy, Python)."""
    import monai
    import numpy as np
    import torch

    from s2mnet import __version__

    return {
        "s2mnet": __version__,
        "torch": torch.__version__,
        "monai": monai.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }
