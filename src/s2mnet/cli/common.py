"""Helpers shared by the ``s2m`` commands: common flags, ``KEY=VALUE`` parsing, checks, metric lines."""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from typing import Any

from s2mnet.errors import S2MError


def add_common_run_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:N")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier s2m output in --out (other files there are kept)",
    )
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors")


def key_values(pairs: Sequence[str], flag: str) -> dict[str, Any]:
    """``["k=1", "name=\"x\""]`` → ``{"k": 1, "name": "x"}`` (values parsed as JSON, else kept as text)."""
    result: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise S2MError(f"{flag} {pair}: expected KEY=VALUE")
        try:
            result[key] = json.loads(value)
        except (json.JSONDecodeError, RecursionError):  # not JSON (or nested beyond reason): the text
            result[key] = value
    return result


def check_positive(args: argparse.Namespace, names: Sequence[str]) -> None:
    for name in names:
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise S2MError(f"--{name.replace('_', '-')} {value}: must be a positive integer")


#: A range ``(low, high, low_included)`` for :func:`check_ranges`.
Range = tuple[float, float, bool]


def check_ranges(args: argparse.Namespace, ranges: dict[str, Range]) -> None:
    """Check numeric flags before any work is timed: finite (no ``nan``, ``inf``, ``1e400``) and in range.

    Args:
        args: the parsed flags.
        ranges: ``{dest: (low, high, low_included)}``; ``high`` is always included; flags left at ``None``
            are skipped.

    Raises:
        S2MError: one line naming the flag, its value and the allowed range.
    """
    for name, (low, high, low_included) in ranges.items():
        value = getattr(args, name, None)
        if value is None:
            continue
        flag = f"--{name.replace('_', '-')}"
        if not math.isfinite(value):
            raise S2MError(f"{flag} {value}: must be a finite number")
        if value > high or value < low or (value == low and not low_included):
            shown = f"{'[' if low_included else '('}{_number(low)}, {_number(high)}]"
            raise S2MError(f"{flag} {_number(value)}: must lie in {shown}")


def _number(value: float) -> str:
    """``-1``, ``0.5``, ``1e9`` (short, as a user would type it)."""
    if float(value).is_integer() and abs(value) < 1e7:
        return str(int(value))
    return f"{value:g}".replace("e+0", "e").replace("e+", "e")


def format_metrics(metrics: dict[str, Any]) -> str:
    """The headline metrics as one aligned block (mean ± std over images)."""
    lines = []
    for name in ("dice", "iou", "precision", "recall", "hd95", "assd", "cldice"):
        if isinstance(metrics.get(name), int | float):
            std = metrics.get(f"{name}_std")
            spread = f" ± {std:.4f}" if isinstance(std, int | float) else ""
            lines.append(f"  {name:<10} {metrics[name]:.4f}{spread}")
    count = metrics.get("n_cases")
    header = "metrics" + (f" over {count} images" if count is not None else "") + " (mean per image):"
    return "\n".join([header, *lines])
