"""Small statistics used by the benchmarks (scipy for the tests; the choices are documented here).

* Scaling exponent: least-squares slope of ``log y`` against ``log x`` (``y ∝ x^b`` → ``b``).
* Paired tests: :func:`scipy.stats.ttest_rel` (two-sided paired t-test) and :func:`scipy.stats.wilcoxon`
  (two-sided signed-rank test; exact distribution for small samples, zero differences dropped by
  scipy's default ``zero_method="wilcox"``). With fewer than 2 pairs, or all differences zero, a test is
  undefined and reported as ``None``.
* Bonferroni: ``min(1, p · m)`` over the ``m`` comparisons made (PAPER.md §4 uses 0.05/15).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def fit_exponent(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Slope of the least-squares line through ``(log x, log y)``; ``None`` with fewer than 2 usable points.

    Non-positive or non-finite values are left out (a skipped cell has no number).
    """
    pairs = [(a, b) for a, b in zip(x, y, strict=True) if _positive(a) and _positive(b)]
    if len({a for a, _ in pairs}) < 2:
        return None
    log_x, log_y = np.log([a for a, _ in pairs]), np.log([b for _, b in pairs])
    slope, _ = np.polyfit(log_x, log_y, 1)
    return float(slope)


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0.0 for a single value) of the finite values."""
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return math.nan, math.nan
    return float(np.mean(finite)), float(np.std(finite, ddof=1)) if len(finite) > 1 else 0.0


def paired_tests(a: Sequence[float], b: Sequence[float]) -> dict[str, float | int | None]:
    """Paired comparison of ``a`` (variant) against ``b`` (reference), pair by pair.

    Returns:
        ``{"n", "mean_diff" (mean of a − b), "t_p" (paired t-test), "wilcoxon_p"}``; a p-value is
        ``None`` when the test is undefined (fewer than 2 pairs, or no non-zero difference).
    """
    a_arr, b_arr = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a_arr.shape != b_arr.shape:
        raise ValueError(f"paired samples differ in length: {a_arr.shape} vs {b_arr.shape}")
    diff = a_arr - b_arr
    result: dict[str, float | int | None] = {
        "n": int(diff.size),
        "mean_diff": float(diff.mean()) if diff.size else None,
        "t_p": None,
        "wilcoxon_p": None,
    }
    if diff.size < 2 or not np.any(diff != 0):
        return result
    from scipy import stats  # imported here: the command line's --help must stay fast

    if np.ptp(diff) > 0:  # a constant non-zero difference has no variance: the t statistic is infinite
        result["t_p"] = float(stats.ttest_rel(a_arr, b_arr).pvalue)
    else:
        result["t_p"] = 0.0
    result["wilcoxon_p"] = float(stats.wilcoxon(a_arr, b_arr).pvalue)
    return result


def bonferroni(p: float | None, comparisons: int) -> float | None:
    """Bonferroni-corrected p-value ``min(1, p · m)``; ``None`` stays ``None``."""
    if p is None:
        return None
    if comparisons < 1:
        raise ValueError(f"comparisons must be ≥ 1, got {comparisons}")
    return min(1.0, p * comparisons)


def _positive(value: float | None) -> bool:
    return value is not None and math.isfinite(value) and value > 0
