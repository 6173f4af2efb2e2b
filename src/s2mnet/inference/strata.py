"""Figures split by whether an image's truth holds foreground (docs/evaluation.md, "Images without
foreground").

On small test sets where some images have an empty truth (BUSI's normal images), a mean Dice mixes two
different questions: is the lesion found and outlined, and is nothing predicted where there is nothing? An
empty prediction on an empty truth scores Dice 1 (the empty-mask policy), so a model that predicts
nothing at all can reach a respectable mean. These figures keep the two apart and put the all-empty
prediction beside them:

* ``foreground_images``: ``n``, mean ``dice`` over the images whose truth holds foreground, ``found``
  (images whose Dice exceeds :data:`FOUND_DICE`) and ``missed`` (the others);
* ``empty_images``: ``n``, mean ``dice`` over the images with an empty truth, and ``false_positives``
  (images where the prediction is not empty);
* ``all_empty_prediction``: the same figures for predicting nothing on every image (overall Dice = the
  share of empty-truth images, foreground Dice 0, nothing found, no false positives).
"""

from __future__ import annotations

from collections.abc import Sequence

#: A lesion counts as found when the image's Dice exceeds this: the prediction overlaps the lesion by
#: more than a stray pixel or a neighbouring false alarm would (Dice 0.1 ≈ a tenth of the lesion found).
#: One definition for ``s2m evaluate`` and the claims lab (docs/evaluation.md).
FOUND_DICE = 0.1


def empty_truth_split(rows: Sequence[dict]) -> dict | None:
    """The figures of the module docstring from per-case rows (``dice``, ``truth_pixels``, ``pred_pixels``).

    Returns ``None`` when every image has foreground (nothing to split).
    """
    foreground = [row for row in rows if row["truth_pixels"] > 0]
    empty = [row for row in rows if row["truth_pixels"] == 0]
    if not empty or not rows:
        return None
    found = sum(row["dice"] > FOUND_DICE for row in foreground)
    return {
        "foreground_images": {
            "n": len(foreground),
            "dice": _mean([row["dice"] for row in foreground]),
            "found": found,
            "missed": len(foreground) - found,
        },
        "empty_images": {
            "n": len(empty),
            "dice": _mean([row["dice"] for row in empty]),
            "false_positives": sum(row["pred_pixels"] > 0 for row in empty),
        },
        "all_empty_prediction": {
            "dice": len(empty) / len(rows),
            "foreground_dice": 0.0 if foreground else None,
            "found": 0,
            "false_positives": 0,
        },
    }


def split_lines(split: dict | None) -> list[str]:
    """One or two lines for reports and the console (empty when there is no split)."""
    if not split:
        return []
    lesion, empty, trivial = split["foreground_images"], split["empty_images"], split["all_empty_prediction"]
    lines = [
        f"images with foreground: {lesion['n']}, Dice {_shown(lesion['dice'])}, found {lesion['found']} "
        f"of {lesion['n']} (Dice > {FOUND_DICE:g}); images with an empty truth: {empty['n']}, false "
        f"positives on {empty['false_positives']} of them",
        f"predicting nothing on every image: Dice {trivial['dice']:.4f} overall, "
        f"{_shown(trivial['foreground_dice'])} on images with foreground, found 0, false positives 0",
    ]
    return lines


def _mean(values: Sequence[float]) -> float | None:
    return float(sum(values) / len(values)) if values else None


def _shown(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
