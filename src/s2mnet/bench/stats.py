"""Small statistics used by the benchmarks (scipy for the tests; the choices are documented here).

* Scaling exponent: least-squares slope of ``log y`` against ``log x`` (``y ∝ x^b`` → ``b``).
* Paired tests: :func:`scipy.stats.ttest_rel` (two-sided paired t-test) and :func:`scipy.stats.wilcoxon`
  (two-sided signed-rank test; exact distribution for small samples, zero differences dropped by
  scipy's default ``zero_method="wilcox"``). With fewer than 2 pairs, or all differences zero, a test is
  undefined and reported as ``None``.
* Bonferroni: ``min(1, p · m)`` over the ``m`` comparisons made (method.md §4 uses 0.05/15).

With the training run as the unit (``s2m bench ablation``):

* :func:`crossed_bootstrap_ci` (primary): percentile CI of the mean paired difference when every seed is
  scored on the same test cases; one replicate resamples the seeds and, once, the test cases, and applies
  that one case resample to every drawn seed (seeds and cases are crossed factors).
* :func:`hierarchical_bootstrap_ci`: the nested version, resampling seeds, then the test cases within
  each drawn seed independently; right when the replicates have disjoint test cases (cross-validation
  folds), too narrow when they share them (the case variance is averaged over the seeds).
* :func:`paired_run_test`: paired t-test over the per-seed means (primary), Wilcoxon signed-rank as a
  secondary check when there are ≥ 5 pairs.
* :func:`holm`: Holm's step-down adjustment over a family of p-values.
* :func:`tost_paired`: equivalence by two one-sided paired t-tests against ``±margin``.
* :func:`paper_delta_test`: one-sample t-test of "the mean difference equals the paper's Δ".
* :func:`verdict`: "different" / "equivalent" / "inconclusive" / "not testable" from those.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

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


def hierarchical_bootstrap_ci(
    deltas_by_seed: Mapping[Any, Sequence[float]], n: int = 10_000, seed: int = 0, level: float = 0.95
) -> dict[str, float | int | None]:
    """Two-stage bootstrap CI of the mean paired difference.

    One replicate draws as many seeds as there are, with replacement, then for each drawn seed as many of
    its cases as it has, with replacement (a seed drawn twice gets two independent case draws); its
    statistic is the mean over the drawn seeds of the mean of their drawn cases. The CI is the percentile
    interval of ``n`` replicates.

    Args:
        deltas_by_seed: seed → per-case differences (variant − reference) of that seed's paired runs.
        n: bootstrap replicates.
        seed: seed of the generator (the CI is reproducible).
        level: coverage (0.95).

    Returns:
        ``{"n_seeds", "mean"`` (mean over seeds of the per-seed mean), ``"low", "high"}``; ``None`` values
        without any seed with cases.
    """
    groups = [np.asarray(v, dtype=float) for v in deltas_by_seed.values() if len(v)]
    result: dict[str, float | int | None] = {"n_seeds": len(groups), "mean": None, "low": None, "high": None}
    if not groups:
        return result
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(groups), size=(n, len(groups)))
    replicate = np.zeros((n, len(groups)))
    for index, cases in enumerate(groups):
        slots = picks == index
        draws = rng.integers(0, cases.size, size=(int(slots.sum()), cases.size))
        replicate[slots] = cases[draws].mean(axis=1)
    stats_ = replicate.mean(axis=1)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(stats_, [alpha, 1.0 - alpha])
    result.update(mean=float(np.mean([g.mean() for g in groups])), low=float(low), high=float(high))
    return result


def crossed_bootstrap_ci(
    deltas: Sequence[Sequence[float]], n: int = 10_000, seed: int = 0, level: float = 0.95
) -> dict[str, float | int | None]:
    """Crossed bootstrap CI of the mean paired difference (seeds × shared test cases).

    ``deltas[i][j]`` is the difference (variant − reference) of pair ``i`` on test case ``j``; every pair
    has the same cases in the same order. One replicate draws as many pairs as there are and as many cases
    as there are, both with replacement, and its statistic is the mean of ``deltas`` over the drawn rows
    and the drawn columns (one case resample shared by every drawn pair). The CI is the percentile
    interval of ``n`` replicates.

    Args:
        deltas: pairs × cases differences (a rectangular table).
        n: bootstrap replicates.
        seed: seed of the generator (the CI is reproducible).
        level: coverage (0.95).

    Returns:
        ``{"n_seeds", "n_cases", "mean", "low", "high"}``; ``None`` values without any difference.
    """
    table = np.asarray(deltas, dtype=float)
    if table.ndim != 2 or table.size == 0:
        return {"n_seeds": len(deltas), "n_cases": 0, "mean": None, "low": None, "high": None}
    rows, cols = table.shape
    rng = np.random.default_rng(seed)
    row_counts = np.zeros((n, rows))
    col_counts = np.zeros((n, cols))
    np.add.at(row_counts, (np.arange(n)[:, None], rng.integers(0, rows, size=(n, rows))), 1.0)
    np.add.at(col_counts, (np.arange(n)[:, None], rng.integers(0, cols, size=(n, cols))), 1.0)
    replicates = ((row_counts @ table) * col_counts).sum(axis=1) / (rows * cols)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(replicates, [alpha, 1.0 - alpha])
    return {
        "n_seeds": rows,
        "n_cases": cols,
        "mean": float(table.mean()),
        "low": float(low),
        "high": float(high),
    }


def paper_delta_test(deltas: Sequence[float], paper_delta: float) -> dict[str, Any]:
    """Two-sided one-sample t-test of H0 "the mean run-level difference equals ``paper_delta``".

    The paired t-test of the differences minus the paper's Δ (n − 1 degrees of freedom). A small p rules
    the paper's effect size out at the budget of the runs; it says nothing about longer training. With
    identical differences (sd 0): p = 0 if they differ from ``paper_delta``, else 1.

    Returns:
        ``{"n", "paper_delta", "mean", "t", "p"}``; ``t`` and ``p`` are ``None`` with fewer than 2 pairs.
    """
    d = np.asarray(deltas, dtype=float) - float(paper_delta)
    result: dict[str, Any] = {
        "n": int(d.size),
        "paper_delta": float(paper_delta),
        "mean": float(d.mean() + paper_delta) if d.size else None,
        "t": None,
        "p": None,
    }
    if d.size < 2:
        return result
    sd = float(d.std(ddof=1))
    if sd == 0.0:
        result["p"] = 0.0 if d[0] != 0 else 1.0
        return result
    from scipy import stats

    t = float(d.mean() / (sd / math.sqrt(d.size)))
    result.update(t=t, p=float(2.0 * stats.t.sf(abs(t), d.size - 1)))
    return result


def t_interval(diffs: Sequence[float], level: float = 0.95) -> list[float | None]:
    """Two-sided t interval of the mean of paired differences (n − 1 degrees of freedom).

    With ``level = 1 − 0.05 / m`` it is the Bonferroni-simultaneous 95 % interval of m comparisons: all m
    intervals cover their true mean differences at once with probability ≥ 95 %.

    Returns:
        ``[low, high]``; ``[None, None]`` with fewer than 2 differences (zero width if they are identical).
    """
    diff = np.asarray(diffs, dtype=float)
    if diff.size < 2:
        return [None, None]
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    from scipy import stats

    mean = float(diff.mean())
    quantile = float(stats.t.ppf(0.5 + level / 2.0, diff.size - 1))
    half_width = quantile * float(diff.std(ddof=1)) / math.sqrt(diff.size)
    return [mean - half_width, mean + half_width]


def paired_run_test(a: Sequence[float], b: Sequence[float]) -> dict[str, Any]:
    """Paired test with the training run as the unit: ``a[i]`` and ``b[i]`` are the mean test Dice of the
    variant's and the reference's runs of pair ``i``.

    The paired t-test is primary (``p``); the Wilcoxon signed-rank p-value is added as a check when there
    are ≥ 5 pairs (below that its smallest two-sided p is ≥ 0.125 and it cannot decide anything). ``ci`` is
    the t interval of the mean difference (n − 1 degrees of freedom): with 3–5 seeds it is the honest
    width; a percentile bootstrap over so few seeds is narrower by construction (it resamples a handful
    of values and uses normal, not t, quantiles).

    Returns:
        ``{"n", "mean_diff", "sd_diff", "t", "df", "p"`` (t-test, primary), ``"ci"`` ([low, high], 95 %),
        ``"wilcoxon_p", "primary": "t"}``; ``None`` where undefined (fewer than 2 pairs; a t-test on
        identical differences: p = 0 if they are non-zero, 1 if zero, and a zero-width CI).
    """
    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    result: dict[str, Any] = {
        "n": int(diff.size),
        "mean_diff": float(diff.mean()) if diff.size else None,
        "sd_diff": float(diff.std(ddof=1)) if diff.size > 1 else None,
        "t": None,
        "df": int(diff.size - 1) if diff.size > 1 else None,
        "p": None,
        "ci": [None, None],
        "wilcoxon_p": None,
        "primary": "t",
    }
    if diff.size < 2:
        return result
    from scipy import stats

    sd = float(diff.std(ddof=1))
    mean = float(diff.mean())
    result["ci"] = t_interval(diff, 0.95)
    if sd == 0.0:
        result["p"] = 0.0 if diff[0] != 0 else 1.0
    else:
        t = float(mean / (sd / math.sqrt(diff.size)))
        result.update(t=t, p=float(2.0 * stats.t.sf(abs(t), diff.size - 1)))
    if diff.size >= 5 and np.any(diff != 0):
        result["wilcoxon_p"] = float(stats.wilcoxon(diff).pvalue)
    return result


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values (same order; ``None`` stays ``None`` and is not counted).

    With the m defined p-values sorted, ``p_(i)`` becomes ``max_{j ≤ i} min(1, (m − j + 1) · p_(j))``.
    """
    defined = sorted((p, i) for i, p in enumerate(pvalues) if p is not None)
    adjusted: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(defined):
        running = max(running, min(1.0, (len(defined) - rank) * p))
        adjusted[i] = running
    return adjusted


def tost_paired(deltas: Sequence[float], margin: float = 0.01) -> dict[str, Any]:
    """Equivalence test (two one-sided paired t-tests) of the mean difference against ``±margin``.

    ``p_lower`` tests H0: mean ≤ −margin (t = (mean + margin) / se, upper tail), ``p_upper`` tests H0:
    mean ≥ +margin (t = (mean − margin) / se, lower tail); equivalence p = max of the two. With identical
    differences (se = 0): p = 0 inside the margin, 1 outside.

    Returns:
        ``{"n", "mean", "margin", "p_lower", "p_upper", "p"}``; p-values ``None`` with fewer than 2 pairs.
    """
    d = np.asarray(deltas, dtype=float)
    result: dict[str, Any] = {
        "n": int(d.size),
        "mean": float(d.mean()) if d.size else None,
        "margin": margin,
        "p_lower": None,
        "p_upper": None,
        "p": None,
    }
    if d.size < 2:
        return result
    from scipy import stats

    se = float(d.std(ddof=1)) / math.sqrt(d.size)
    mean = float(d.mean())
    if se == 0.0:
        p_lower = 0.0 if mean > -margin else 1.0
        p_upper = 0.0 if mean < margin else 1.0
    else:
        p_lower = float(stats.t.sf((mean + margin) / se, d.size - 1))
        p_upper = float(stats.t.cdf((mean - margin) / se, d.size - 1))
    result.update(p_lower=p_lower, p_upper=p_upper, p=max(p_lower, p_upper))
    return result


def verdict(
    p_holm: float | None,
    ci: tuple[float | None, float | None],
    tost_p_holm: float | None,
    n_pairs: int,
    alpha: float = 0.05,
    min_pairs: int = 3,
) -> str:
    """The verdict of one comparison from the run-level statistics alone.

    * ``"not testable"``: fewer than ``min_pairs`` converged pairs;
    * ``"different"``: Holm-adjusted paired-test p < alpha and the CI excludes 0 (the report passes the
      hull of the bootstrap and t CIs);
    * ``"equivalent"``: Holm-adjusted TOST p < alpha (the difference is within the margin);
    * ``"different, within the margin"``: both (a detected difference smaller than the margin);
    * ``"inconclusive"``: otherwise.
    """
    if n_pairs < min_pairs:
        return "not testable"
    low, high = ci
    excludes_zero = low is not None and high is not None and (low > 0 or high < 0)
    different = p_holm is not None and p_holm < alpha and excludes_zero
    equivalent = tost_p_holm is not None and tost_p_holm < alpha
    if different and equivalent:
        return "different, within the margin"
    if different:
        return "different"
    if equivalent:
        return "equivalent"
    return "inconclusive"


def _positive(value: float | None) -> bool:
    return value is not None and math.isfinite(value) and value > 0
