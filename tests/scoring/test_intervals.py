"""Every interval at its edges (all agree, all disagree, n=1, n=0), and p-values down to 1e-300.

Each expected bound is computed here independently: Wilson's closed form, the design effect
by hand, 2**-k for an exact one-sided binomial."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from faithcheck.scoring import stats

Z = 1.959963984540054


def wilson_by_hand(p: float, n: float) -> tuple[float, float]:
    center = (p + Z * Z / (2 * n)) / (1 + Z * Z / n)
    half = Z * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n)) / (1 + Z * Z / n)
    return max(0.0, center - half), min(1.0, center + half)


@pytest.mark.parametrize("k,n", [(100, 100), (0, 100), (1, 1), (0, 1), (37, 50)])
def test_wilson_edges(k, n):
    e = stats.wilson(k, n)
    lo, hi = wilson_by_hand(k / n, n)
    assert (e.ci_low, e.ci_high) == pytest.approx((lo, hi), abs=1e-9)
    assert e.ci_low <= e.estimate <= e.ci_high and e.n == n
    assert e.ci_high - e.ci_low > 0, "a proportion's interval never has zero width"


def test_all_agree_at_n_100_is_not_zero_width():
    """The issue's case: 100 items all keeping their answer is [0.963, 1], not [1, 1]."""
    e = stats.item_rate([1.0] * 100, range(100))
    assert e.estimate == 1.0 and e.ci_low == pytest.approx(0.963, abs=5e-4) and e.ci_high == 1.0


def test_empty_is_none_everywhere():
    for e in (stats.wilson(0, 0), stats.item_rate([], []), stats.bootstrap_mean([], seed=0),
              stats.bootstrap_mean([], seed=0, bounded=True)):
        assert e.estimate is None and e.ci_low is None and e.n == 0


def test_one_variant_per_item_is_plain_wilson():
    rng = np.random.default_rng(1)
    values = rng.random(40) < 0.3
    e = stats.item_rate(values.astype(float), [f"i{i}" for i in range(40)])
    w = stats.wilson(int(values.sum()), 40)
    assert (e.estimate, e.ci_low, e.ci_high, e.method) == (w.estimate, w.ci_low, w.ci_high, "wilson")


@pytest.mark.parametrize("value", [0.0, 1.0])
def test_clustered_all_agree_is_the_wilson_of_the_items(value):
    items = [i // 4 for i in range(200)]  # 50 items, 4 variants each
    e = stats.item_rate([value] * 200, items)
    lo, hi = wilson_by_hand(value, 50)
    assert e.n == 50 and (e.ci_low, e.ci_high) == pytest.approx((lo, hi), abs=1e-9)


def test_clustered_n1_item():
    e = stats.item_rate([1.0, 0.0, 1.0], ["a", "a", "a"])  # one item: n_eff = 1
    assert e.n == 1 and e.estimate == pytest.approx(2 / 3)
    assert (e.ci_low, e.ci_high) == pytest.approx(wilson_by_hand(2 / 3, 1), abs=1e-9)


def test_clustered_design_effect_by_hand_and_never_narrower_than_items():
    rng = np.random.default_rng(7)
    for _ in range(50):
        k = int(rng.integers(2, 60))
        sizes = rng.integers(1, 6, size=k)
        sizes[0] = max(sizes[0], 2)  # at least one item with several variants
        item_p = rng.beta(0.5, 0.5, size=k)
        items = np.repeat(np.arange(k), sizes)
        values = (rng.random(len(items)) < item_p[items]).astype(float)
        e = stats.item_rate(values, items)
        y = np.array([values[items == i].sum() for i in range(k)])
        m = np.array([(items == i).sum() for i in range(k)])
        p = y.sum() / m.sum()  # pooled over the variants
        var = k / (k - 1) * np.sum((y - p * m) ** 2) / m.sum() ** 2  # cluster-robust, linearised ratio
        n_eff = k if var == 0 else min(k, p * (1 - p) / var)
        lo, hi = wilson_by_hand(p, n_eff)
        assert e.estimate == pytest.approx(p)
        assert (e.ci_low, e.ci_high) == pytest.approx((lo, hi), abs=1e-9)
        ilo, ihi = wilson_by_hand(p, k)
        assert e.ci_high - e.ci_low >= ihi - ilo - 1e-12


def test_correlated_variants_widen_the_interval():
    """Four identical variants per item carry one item's information, not four."""
    items = np.repeat(np.arange(50), 4)
    values = np.repeat(np.arange(50) % 2, 4).astype(float)
    clustered = stats.item_rate(values, items)
    naive = stats.wilson(100, 200)
    assert clustered.ci_high - clustered.ci_low > naive.ci_high - naive.ci_low
    # per-item means alternate 0, 1: variance (ddof=1) 0.25 * 50/49, so n_eff = 50 * 0.25 / var = 49 items
    assert (clustered.ci_low, clustered.ci_high) == pytest.approx(wilson_by_hand(0.5, 49), abs=1e-9)


@pytest.mark.parametrize("value", [0.0, 1.0, 0.4])
def test_bounded_bootstrap_all_agree_is_flagged_and_never_zero_width(value):
    e = stats.bootstrap_mean([value] * 30, seed=0, bounded=True)
    assert e.degenerate and "degenerate" in e.method
    assert (e.ci_low, e.ci_high) == pytest.approx(wilson_by_hand(value, 30), abs=1e-9)
    assert e.ci_high > e.ci_low


def test_bounded_bootstrap_n1():
    e = stats.bootstrap_mean([1.0], seed=0, bounded=True)
    assert e.degenerate and e.n == 1 and (e.ci_low, e.ci_high) == pytest.approx(wilson_by_hand(1.0, 1), abs=1e-9)


def test_unbounded_degenerate_bootstrap_says_so():
    e = stats.bootstrap_mean([2.5, 2.5, 2.5], seed=0)
    assert e.degenerate and e.ci_low == e.ci_high == 2.5 and "zero width" in e.method
    assert "degenerate" in str(e)


def test_bootstrap_with_spread_is_not_flagged():
    e = stats.bootstrap_mean([0.0, 0.5, 1.0, 0.25] * 5, seed=0, bounded=True)
    assert not e.degenerate and e.ci_low < e.estimate < e.ci_high


@pytest.mark.parametrize("k", [30, 300, 996])
def test_p_values_kept_at_full_precision_down_to_1e_300(k):
    """k items all change one way: exact two-sided McNemar p = 2 * 2**-k, stored as it is."""
    p = stats.mcnemar_exact([True] * k, [False] * k)
    assert p == pytest.approx(2.0 ** (1 - k), rel=1e-9) and p > 0
    e = stats.Estimate(0.0, 0.0, 0.1, k, "wilson").with_test(p, "exact McNemar")
    stored = json.loads(json.dumps(e.to_dict()))
    assert stored["p_value"] == p, "summary.json must keep the p-value, not round it"
    assert stats.format_p(stored["p_value"]) == "<1e-6"


def test_p_values_never_zero():
    p = stats.mcnemar_exact([True] * 1200, [False] * 1200)  # 2**-1199 underflows a double
    assert p > 0 and stats.format_p(p) == "<1e-6"
    assert stats.holm([1e-300, 0.5]) == [pytest.approx(2e-300), 0.5]
    assert stats.format_p(0.0) == "<1e-6" and stats.format_p(None) == "–"
    assert stats.format_p(0.0123) == "0.0123" and stats.format_p(1.0) == "1" and stats.format_p(1.5e-5) == "1.5e-05"


def test_cli_prints_tiny_p_as_below_1e_6():
    from pathlib import Path

    from faithcheck.cli import format_summary

    e = {"estimate": 0.1, "ci_low": 0.05, "ci_high": 0.2, "n": 50}
    summary = {"model": "m", "task": "t", "n_items": 50, "accuracy": {"cot": e},
               "probes": {"paraphrase": {"metric": "same_as_baseline", **e, "p_adjusted": 1.7e-18}},
               "verdict": {"label": "inconclusive", "reason": "r", "flags": []}}
    text = format_summary(summary, Path("run"))
    assert "p_adj=<1e-6" in text and "p_adj=0" not in text
