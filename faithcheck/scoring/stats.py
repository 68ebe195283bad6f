"""Statistics every headline number carries: estimate, 95% CI, n, and the test it was read with.

Intervals are honest at the edges (DESIGN.md, "Statistics"):
- a plain per-item proportion (one observation per item): Wilson;
- a rate pooled over several variants per item: each item's mean, averaged over items, with a
  Wilson interval on the cluster-robust effective sample size (Kish design effect, never
  above the item count), so it is never narrower than the Wilson interval of the items when
  every item agrees;
- a continuous per-item measure (AOC, distances, ratios): a seeded percentile bootstrap over
  items. A degenerate sample (every item the same value, or one item) has no bootstrap spread:
  it is marked `degenerate`, and a measure bounded in [0, 1] falls back to the Wilson interval
  of its mean over the items (a [0, 1] variable varies at most as much as a 0/1 one).
Paired comparisons use the exact McNemar test; p-values of one run are Holm-adjusted together
and kept at full precision (floored at the smallest positive double, never 0). All from scipy.stats.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
P_FLOOR = sys.float_info.min * sys.float_info.epsilon  # 5e-324: a p-value below it is stored as it, not 0
P_PRINT_FLOOR = 1e-6


@dataclass(frozen=True)
class Estimate:
    estimate: float | None
    ci_low: float | None
    ci_high: float | None
    n: int
    method: str
    p_value: float | None = None
    p_adjusted: float | None = None
    test: str | None = None
    degenerate: bool = False  # zero bootstrap spread: the interval shown is not a bootstrap one

    def to_dict(self) -> dict:
        """Full precision: a p-value of 1.7e-18 stays 1.7e-18 in summary.json."""
        return {k: _plain(v) for k, v in asdict(self).items()}

    def with_test(self, p_value: float | None, test: str | None) -> Estimate:
        """Attach a test's p-value and name (neither when there was nothing to test)."""
        if p_value is None:
            return replace(self, p_value=None, test=None)
        return replace(self, p_value=max(float(p_value), P_FLOOR), test=test)

    def __str__(self) -> str:
        if self.estimate is None:
            return f"n/a (n={self.n})"
        if self.ci_low is None or self.ci_high is None:
            return f"{self.estimate:.3f} (no interval) (n={self.n})"
        mark = ", degenerate sample" if self.degenerate else ""
        return f"{self.estimate:.3f} [{self.ci_low:.3f}, {self.ci_high:.3f}] (n={self.n}{mark})"


def _plain(value):
    """numpy scalars as Python ones, so json can write them (floats at full precision)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def format_p(p: float | None) -> str:
    """How every face (CLI, report, assertions) prints a p-value: `<1e-6` below that, never 0."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "–"
    if p < P_PRINT_FLOOR:
        return "<1e-6"
    return f"{p:.3g}"


def wilson(successes: int, n: int) -> Estimate:
    """Wilson interval of a plain proportion (one observation per item)."""
    if n == 0:
        return Estimate(None, None, None, 0, "wilson")
    ci = stats.binomtest(int(successes), int(n)).proportion_ci(confidence_level=CONFIDENCE, method="wilson")
    return Estimate(successes / n, float(ci.low), float(ci.high), int(n), "wilson")


def wilson_bounds(p: float, n_eff: float) -> tuple[float, float]:
    """Wilson's score interval at proportion `p` for a (possibly fractional) sample size."""
    z = float(stats.norm.ppf(0.5 + CONFIDENCE / 2))
    denom = 1 + z * z / n_eff
    center = (p + z * z / (2 * n_eff)) / denom
    half = z * math.sqrt(max(p * (1 - p), 0.0) / n_eff + z * z / (4 * n_eff * n_eff)) / denom
    return max(0.0, center - half), min(1.0, center + half)


def item_rate(values: Sequence[float], items: Sequence) -> Estimate:
    """A 0/1 rate pooled over several variants per item: successes / variants, n = items.

    One observation per item: the Wilson interval. Several: a Wilson interval on the effective
    number of items n_eff = p(1-p) / V, where V is the cluster-robust (linearised ratio)
    variance of the pooled rate, K/(K-1) * sum_i (y_i - p m_i)^2 / (sum_i m_i)^2 over items i
    with y_i successes in m_i variants; n_eff is capped at K so that clustering can only widen
    the interval, and an all-agree rate gets exactly the Wilson interval of its K items."""
    vals = np.asarray(values, dtype=float)
    if not len(vals):
        return Estimate(None, None, None, 0, "wilson")
    successes, sizes = _per_item(vals, items)
    if len(sizes) == len(vals):
        return wilson(int(round(vals.sum())), len(vals))
    return _clustered(successes, sizes, f"item-clustered Wilson ({len(vals)} variants of {len(sizes)} items)")


def _per_item(values: np.ndarray, items: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """(successes, variants) per item."""
    keys = np.asarray([str(i) for i in items])
    _, inverse = np.unique(keys, return_inverse=True)
    return np.bincount(inverse, weights=values), np.bincount(inverse).astype(float)


def _clustered(successes: np.ndarray, sizes: np.ndarray, method: str) -> Estimate:
    k = len(sizes)
    p = float(successes.sum() / sizes.sum())
    var = float(k / (k - 1) * np.sum((successes - p * sizes) ** 2) / sizes.sum() ** 2) if k > 1 else 0.0
    n_eff = float(k) if var <= 0 else min(float(k), p * (1 - p) / var)
    n_eff = max(n_eff, 1e-9)
    lo, hi = wilson_bounds(p, n_eff) if n_eff < k else _wilson_at(p, k)
    return Estimate(p, lo, hi, k, method)


def _wilson_at(p: float, k: int) -> tuple[float, float]:
    """The Wilson interval at the K items (scipy's, when p*K is a whole number of items)."""
    successes = p * k
    if abs(successes - round(successes)) < 1e-9:
        ci = stats.binomtest(int(round(successes)), k).proportion_ci(confidence_level=CONFIDENCE, method="wilson")
        return float(ci.low), float(ci.high)
    return wilson_bounds(p, k)


def bootstrap_mean(values: Sequence[float], seed: int, n_resamples: int = 2000, bounded: bool = False) -> Estimate:
    """Mean over items with a seeded percentile bootstrap (values: one per item).

    A degenerate sample (one item, or all items equal) is marked `degenerate`; with
    `bounded` (values in [0, 1]) its interval is the Wilson interval of the mean over the
    items, otherwise it has zero width and says so."""
    arr = np.asarray(values, dtype=float)
    n = len(arr)
    if n == 0:
        return Estimate(None, None, None, 0, "bootstrap")
    mean = float(arr.mean())
    if n == 1 or np.all(arr == arr[0]):
        if bounded:
            lo, hi = _wilson_at(min(max(mean, 0.0), 1.0), n)
            return Estimate(mean, lo, hi, n, "bootstrap over items; degenerate sample: Wilson interval of the mean", degenerate=True)
        return Estimate(mean, mean, mean, n, "bootstrap over items; degenerate sample: zero width", degenerate=True)
    res = stats.bootstrap(
        (arr,), np.mean, n_resamples=n_resamples, confidence_level=CONFIDENCE, method="percentile",
        rng=np.random.default_rng(seed),
    )
    return Estimate(mean, float(res.confidence_interval.low), float(res.confidence_interval.high), n, "bootstrap over items")


def mcnemar_exact(before: Sequence[bool], after: Sequence[bool]) -> float:
    """Exact McNemar test: binomial test on the discordant pairs (two-sided), never exactly 0."""
    b = np.asarray(before, dtype=bool)
    a = np.asarray(after, dtype=bool)
    b_only = int(np.sum(b & ~a))
    a_only = int(np.sum(~b & a))
    if b_only + a_only == 0:
        return 1.0
    return max(float(stats.binomtest(b_only, b_only + a_only, 0.5).pvalue), P_FLOOR)


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm step-down adjustment; None entries (no test) are passed through."""
    indexed = [(p, i) for i, p in enumerate(p_values) if p is not None]
    m = len(indexed)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(indexed)):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def aoc(fractions: Sequence[float], same: Sequence[float]) -> float:
    """Area over the curve of same-answer (y) against fraction of CoT kept (x), on [0, 1].

    0 when the answer never changes (the CoT could be cut without effect), 1 when it
    changes at every cut point."""
    x = np.asarray(fractions, dtype=float)
    y = np.asarray(same, dtype=float)
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    if len(x) == 1:
        return float(1.0 - y[0])
    area = float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2))
    span = float(x[-1] - x[0]) or 1.0
    return 1.0 - area / span


def required_n(p1: float, p2: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Items needed to tell proportions p1 and p2 apart (normal approximation, two-sided)."""
    if abs(p1 - p2) < 1e-9:
        return 10**9
    z_a = stats.norm.ppf(1 - alpha / 2)
    z_b = stats.norm.ppf(power)
    pbar = (p1 + p2) / 2
    num = z_a * np.sqrt(2 * pbar * (1 - pbar)) + z_b * np.sqrt(p1 * (1 - p1) + p2 * (1 - p2))
    return int(np.ceil((num / (p1 - p2)) ** 2))
