"""Statistics every headline number carries: estimate, 95% CI, n, and a paired test.

Proportions get Wilson intervals; per-item means (AOC, rates over several variants of
an item) get a seeded bootstrap over items; paired comparisons use the exact McNemar
test; p-values of one run are Holm-adjusted together. All from scipy.stats.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np
from scipy import stats

CONFIDENCE = 0.95


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

    def to_dict(self) -> dict:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}

    def with_test(self, p_value: float | None, test: str) -> Estimate:
        return replace(self, p_value=p_value, test=test)

    def __str__(self) -> str:
        if self.estimate is None:
            return f"n/a (n={self.n})"
        return f"{self.estimate:.3f} [{self.ci_low:.3f}, {self.ci_high:.3f}] (n={self.n})"


def wilson(successes: int, n: int) -> Estimate:
    if n == 0:
        return Estimate(None, None, None, 0, "wilson")
    ci = stats.binomtest(int(successes), int(n)).proportion_ci(confidence_level=CONFIDENCE, method="wilson")
    return Estimate(successes / n, float(ci.low), float(ci.high), n, "wilson")


def bootstrap_mean(values: Sequence[float], seed: int, n_resamples: int = 2000) -> Estimate:
    """Mean over items with a seeded percentile bootstrap (values: one per item)."""
    arr = np.asarray(values, dtype=float)
    n = len(arr)
    if n == 0:
        return Estimate(None, None, None, 0, "bootstrap")
    mean = float(arr.mean())
    if n == 1 or np.all(arr == arr[0]):
        return Estimate(mean, mean, mean, n, "bootstrap")
    res = stats.bootstrap(
        (arr,), np.mean, n_resamples=n_resamples, confidence_level=CONFIDENCE, method="percentile",
        rng=np.random.default_rng(seed),
    )
    return Estimate(mean, float(res.confidence_interval.low), float(res.confidence_interval.high), n, "bootstrap")


def mcnemar_exact(before: Sequence[bool], after: Sequence[bool]) -> float:
    """Exact McNemar test: binomial test on the discordant pairs (two-sided)."""
    b = np.asarray(before, dtype=bool)
    a = np.asarray(after, dtype=bool)
    b_only = int(np.sum(b & ~a))
    a_only = int(np.sum(~b & a))
    if b_only + a_only == 0:
        return 1.0
    return float(stats.binomtest(b_only, b_only + a_only, 0.5).pvalue)


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
