"""Run-level statistics of ``s2m bench ablation`` (:mod:`s2mnet.bench.stats`), checked by hand."""

from __future__ import annotations

import math

import pytest
from scipy import stats as scipy_stats

from s2mnet.bench.stats import (
    hierarchical_bootstrap_ci,
    holm,
    paired_run_test,
    t_interval,
    tost_paired,
    verdict,
)


def test_bootstrap_of_constant_differences_is_that_constant() -> None:
    ci = hierarchical_bootstrap_ci({1: [0.02, 0.02], 2: [0.02]}, n=500)
    assert ci["n_seeds"] == 2
    assert ci["mean"] == pytest.approx(0.02) and ci["low"] == pytest.approx(0.02)
    assert ci["high"] == pytest.approx(0.02)
    assert hierarchical_bootstrap_ci({})["mean"] is None


def test_bootstrap_resamples_seeds() -> None:
    # Two seeds with constant cases, means 1 and 3: a replicate's mean is 1, 2 or 3 with probability
    # 1/4, 1/2, 1/4, so the 2.5 % and 97.5 % quantiles are 1 and 3 and about half the replicates are 2.
    ci = hierarchical_bootstrap_ci({1: [1.0, 1.0, 1.0], 2: [3.0, 3.0]}, n=4000, seed=1)
    assert ci["mean"] == pytest.approx(2.0)
    assert ci["low"] == pytest.approx(1.0) and ci["high"] == pytest.approx(3.0)


def test_bootstrap_resamples_cases_within_a_seed() -> None:
    # One seed with cases 0 and 1: the resampled mean is 0, 0.5 or 1 (probabilities 1/4, 1/2, 1/4).
    ci = hierarchical_bootstrap_ci({7: [0.0, 1.0]}, n=4000, seed=2)
    assert ci["mean"] == pytest.approx(0.5)
    assert (ci["low"], ci["high"]) == pytest.approx((0.0, 1.0))
    narrow = hierarchical_bootstrap_ci({7: [0.0, 1.0]}, n=4000, seed=2, level=0.4)
    assert (narrow["low"], narrow["high"]) == pytest.approx((0.5, 0.5))  # the middle 40 % are all 0.5
    again = hierarchical_bootstrap_ci({7: [0.0, 1.0]}, n=4000, seed=2)
    assert again == ci  # reproducible


def test_paired_run_test_by_hand() -> None:
    # differences 1, 2, 3, 4: mean 2.5, sd sqrt(5/3), t = 2.5 / (sd / 2) on 3 degrees of freedom
    result = paired_run_test([1.0, 2.0, 3.0, 4.0], [0.0] * 4)
    t = 2.5 / (math.sqrt(5 / 3) / 2)
    assert result["primary"] == "t" and result["n"] == 4 and result["df"] == 3
    assert result["t"] == pytest.approx(t)
    assert result["p"] == pytest.approx(2 * scipy_stats.t.sf(t, 3))
    assert result["wilcoxon_p"] is None  # fewer than 5 pairs
    half_width = scipy_stats.t.ppf(0.975, 3) * math.sqrt(5 / 3) / 2  # 3.182 · 0.6455 = 2.054
    assert result["ci"] == pytest.approx([2.5 - half_width, 2.5 + half_width])
    five = paired_run_test([1.0, 2.0, 3.0, 4.0, 5.0], [0.0] * 5)
    assert five["wilcoxon_p"] == pytest.approx(2 / 32)  # all five signed ranks positive, exact
    assert paired_run_test([1.0], [0.0])["p"] is None
    assert paired_run_test([1.0, 2.0], [0.5, 1.5])["p"] == 0.0  # constant non-zero difference
    assert paired_run_test([1.0, 2.0], [1.0, 2.0])["p"] == 1.0  # no difference at all


def test_simultaneous_t_interval_by_hand() -> None:
    # differences 1, 2, 3, 4 (mean 2.5, se sqrt(5/3)/2), 10 comparisons: level 1 − 0.05/10 = 0.995, so the
    # two-sided quantile is t_{0.9975, 3} = 7.453 and the interval is 2.5 ± 7.453 · 0.6455 = [−2.31, 7.31]
    low, high = t_interval([1.0, 2.0, 3.0, 4.0], 1.0 - 0.05 / 10)
    half_width = scipy_stats.t.ppf(0.9975, 3) * math.sqrt(5 / 3) / 2
    assert half_width == pytest.approx(4.811, abs=1e-3)
    assert (low, high) == pytest.approx((2.5 - half_width, 2.5 + half_width))
    assert t_interval([1.0, 2.0, 3.0, 4.0]) == pytest.approx(
        paired_run_test([1.0, 2.0, 3.0, 4.0], [0.0] * 4)["ci"]
    )
    assert t_interval([0.2, 0.2], 0.99) == pytest.approx([0.2, 0.2])  # identical differences: zero width
    assert t_interval([0.2]) == [None, None]
    with pytest.raises(ValueError):
        t_interval([1.0, 2.0], 1.0)


def test_holm_by_hand() -> None:
    # sorted 0.01, 0.03, 0.04 → 3·0.01, max(0.03, 2·0.03), max(0.06, 1·0.04)
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, None, 0.9]) == [pytest.approx(1.0), None, pytest.approx(1.0)]
    assert holm([0.02]) == [pytest.approx(0.02)]


def test_tost_by_hand() -> None:
    deltas = [0.001, -0.002, 0.003, 0.0]
    mean, se = 0.0005, scipy_stats.tstd(deltas) / 2
    result = tost_paired(deltas, margin=0.01)
    assert result["p_lower"] == pytest.approx(scipy_stats.t.sf((mean + 0.01) / se, 3))
    assert result["p_upper"] == pytest.approx(scipy_stats.t.cdf((mean - 0.01) / se, 3))
    assert result["p"] == pytest.approx(max(result["p_lower"], result["p_upper"])) and result["p"] < 0.05
    assert tost_paired([0.05, 0.06, 0.04], margin=0.01)["p"] > 0.5  # far outside the margin
    assert tost_paired([0.005, 0.005], margin=0.01)["p"] == 0.0  # constant, inside
    assert tost_paired([0.02, 0.02], margin=0.01)["p"] == 1.0  # constant, outside
    assert tost_paired([0.0])["p"] is None


def test_verdict_rules() -> None:
    assert verdict(0.01, (0.01, 0.03), 0.9, 5) == "different"
    assert verdict(0.01, (-0.01, 0.03), 0.9, 5) == "inconclusive"  # CI includes 0
    assert verdict(0.6, (-0.004, 0.003), 0.01, 5) == "equivalent"
    assert verdict(0.6, (-0.02, 0.03), 0.2, 5) == "inconclusive"
    assert verdict(0.001, (0.1, 0.2), 0.001, 2) == "not testable"
    assert verdict(0.01, (-0.006, -0.002), 0.01, 3) == "different, within the margin"
    assert verdict(None, (None, None), None, 3) == "inconclusive"
