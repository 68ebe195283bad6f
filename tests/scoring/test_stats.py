import math

import numpy as np
import pytest

from faithcheck.scoring import stats


def test_wilson_matches_closed_form():
    k, n, z = 37, 50, 1.959963984540054
    p = k / n
    center = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    e = stats.wilson(k, n)
    assert e.estimate == pytest.approx(0.74)
    assert e.ci_low == pytest.approx(center - half, abs=1e-9)
    assert e.ci_high == pytest.approx(center + half, abs=1e-9)
    assert e.n == 50


def test_wilson_empty_is_none():
    assert stats.wilson(0, 0).estimate is None


def test_mcnemar_exact_by_hand():
    # 8 pairs only-before, 2 pairs only-after: two-sided binomial p = 2 * P(X <= 2 | n=10, 1/2)
    before = [True] * 8 + [False] * 2 + [True] * 5
    after = [False] * 8 + [True] * 2 + [True] * 5
    expected = 2 * sum(math.comb(10, i) for i in range(3)) / 2**10
    assert stats.mcnemar_exact(before, after) == pytest.approx(expected)
    assert stats.mcnemar_exact([True, False], [True, False]) == 1.0


def test_holm_worked_example():
    # p = (0.01, 0.04, 0.03, 0.005), m = 4: sorted 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1 -> max(0.06, 0.04)=0.06
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([None, 0.5]) == [None, 0.5]


def test_aoc_extremes_and_trapezoid():
    assert stats.aoc([0, 0.5, 1], [1, 1, 1]) == pytest.approx(0.0)
    assert stats.aoc([0, 0.5, 1], [0, 0, 0]) == pytest.approx(1.0)
    # same only at the end: area under = 0.25 (one triangle over [0.5, 1]) -> AOC 0.75
    assert stats.aoc([1, 0, 0.5], [1, 0, 0]) == pytest.approx(0.75)


def test_bootstrap_is_seeded_and_covers_mean():
    rng = np.random.default_rng(0)
    values = rng.random(60)
    a = stats.bootstrap_mean(values, seed=3)
    b = stats.bootstrap_mean(values, seed=3)
    assert (a.ci_low, a.ci_high) == (b.ci_low, b.ci_high)
    assert a.ci_low < values.mean() < a.ci_high
    # the percentile CI is close to the normal-approximation one for a mean of 60 uniforms
    se = values.std(ddof=1) / math.sqrt(60)
    assert a.ci_high - a.ci_low == pytest.approx(2 * 1.96 * se, rel=0.2)


def test_required_n_grows_as_gap_shrinks():
    assert stats.required_n(0.5, 0.6) > stats.required_n(0.5, 0.8) > 0
