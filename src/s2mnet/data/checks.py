"""Warnings (not errors) about degenerate data: masks that leave a model nothing to learn, and
predictions that are trivial.

Data (from a fingerprint, :func:`s2mnet.planning.fingerprint.fingerprint`, which stores them as
``fp["warnings"]``; ``s2m analyze`` prints them, ``s2m train`` should too):

* every mask is empty (no foreground pixel): a model can only learn to predict nothing;
* only one class appears (multi-class masks with a single foreground class, or classes that never appear);
* most masks cover nearly the whole image (≥ :data:`FULL_FRACTION`): inverted masks are the usual cause.

Predictions (``s2m predict`` and ``s2m evaluate``, :func:`prediction_warnings`): (nearly) empty or
(nearly) all foreground on most images, the signature of a collapsed or mismatched model.

Each warning is one line without the ``warning:`` prefix; the commands print ``warning: <text>`` on
standard error.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: A mask or prediction covering at least this share of its image counts as "nearly the whole image".
FULL_FRACTION = 0.95
#: A prediction covering at most this share of its image counts as "(nearly) empty".
EMPTY_FRACTION = 0.001
#: Warn when more than this share of the cases is degenerate ("most cases").
MOST = 0.5


def degenerate_data_warnings(fp: dict) -> list[str]:
    """Warnings about a dataset's masks, computed from its fingerprint.

    Args:
        fp: a fingerprint dict (``cases``, ``empty_mask_share``, ``per_case[i]["foreground"]``,
            ``num_classes`` and, for multi-class data, ``classes_present``).

    Returns:
        One line per problem found (empty when the data looks usable).

    Example (how ``s2m train`` prints them)::

        for line in degenerate_data_warnings(fp):
            print(f"warning: {line}", file=sys.stderr)
    """
    cases = int(fp.get("cases") or 0)
    if cases == 0:
        return []
    root = fp.get("root", "dataset")
    fractions = [float(row.get("foreground", 0.0)) for row in fp.get("per_case") or []]
    warnings = []
    if float(fp.get("empty_mask_share", 0.0)) >= 1.0:
        warnings.append(
            f"{root}: all {cases} masks are empty (no foreground pixel); a model can only learn to predict "
            "nothing; check the mask files and their encoding (docs/data.md)"
        )
    else:
        full = sum(fraction >= FULL_FRACTION for fraction in fractions)
        if fractions and full > MOST * len(fractions):
            warnings.append(
                f"{root}: {full} of {len(fractions)} masks cover >= {FULL_FRACTION:.0%} of their image; "
                "are foreground and background swapped (inverted masks)?"
            )
    num_classes = int(fp.get("num_classes") or 1)
    present = fp.get("classes_present")
    if num_classes > 1 and present is not None:
        foreground = sorted(int(c) for c in present if int(c) > 0)
        missing = [c for c in range(1, num_classes) if c not in foreground]
        if len(foreground) == 1 and num_classes > 2:
            warnings.append(
                f"{root}: only class {foreground[0]} appears in the masks of a {num_classes}-class dataset; "
                f"class(es) {_listed(missing)} never appear"
            )
        elif foreground and missing:
            warnings.append(f"{root}: class(es) {_listed(missing)} never appear in any mask")
    return warnings


def mask_fractions(masks: Sequence[np.ndarray]) -> list[float]:
    """Foreground share of each mask (``(H, W)`` maps: any non-zero value; ``(C, H, W)``: any region)."""
    result = []
    for mask in masks:
        foreground = np.asarray(mask) > 0
        if foreground.ndim == 3:
            foreground = foreground.any(axis=0)
        result.append(float(foreground.mean()) if foreground.size else 0.0)
    return result


def prediction_warnings(
    fractions: Sequence[float], truth_fractions: Sequence[float] | None = None
) -> list[str]:
    """Warnings when predictions are (nearly) empty or (nearly) all foreground on most images.

    Args:
        fractions: foreground share of each predicted mask (:func:`mask_fractions`).
        truth_fractions: the ground truth's shares (``s2m evaluate``), to say how many truths are empty
            or full too.

    Returns:
        At most one line (empty predictions or full predictions), or none.
    """
    total = len(fractions)
    if total == 0:
        return []
    empty = sum(fraction <= EMPTY_FRACTION for fraction in fractions)
    full = sum(fraction >= FULL_FRACTION for fraction in fractions)
    if empty > MOST * total:
        truth = ""
        if truth_fractions is not None:
            truth = f" (the ground truth is empty on {sum(f == 0 for f in truth_fractions)})"
        return [
            f"the predictions are (nearly) empty on {empty} of {total} images{truth}; the model may have "
            "collapsed to background, or the images differ from its training data"
        ]
    if full > MOST * total:
        truth = ""
        if truth_fractions is not None:
            truth = f" ({sum(f >= FULL_FRACTION for f in truth_fractions)} of the ground-truth masks do)"
        return [
            f"the predictions cover >= {FULL_FRACTION:.0%} of the image on {full} of {total} images{truth}; "
            "the model may have collapsed to foreground, or the images differ from its training data"
        ]
    return []


def _listed(values: Sequence[int], limit: int = 8) -> str:
    shown = ", ".join(str(v) for v in values[:limit])
    return shown + (", …" if len(values) > limit else "")
