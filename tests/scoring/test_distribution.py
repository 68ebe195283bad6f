"""The distribution-shift measures on hand-made tables: failed calls and failed checks left out."""

from __future__ import annotations

import pandas as pd
import pytest

from faithcheck.scoring.distribution import answer_distribution, distribution_shift, mode_mass, total_variation


def test_total_variation_and_mode_mass_by_hand():
    p, q = answer_distribution(["A", "A", "B", "C"]), answer_distribution(["B", "B", None, None])
    assert p == {"A": 0.5, "B": 0.25, "C": 0.25}
    # |0.5 - 0| + |0.25 - 0.5| + |0.25 - 0| + |0 - 0.5| = 1.5, halved
    assert total_variation(p, q) == pytest.approx(0.75)
    assert total_variation(p, p) == 0 and total_variation({"A": 1.0}, {"B": 1.0}) == 1
    assert mode_mass(p, q) == 0 and mode_mass(q, p) == pytest.approx((0.25 + 0) / 2)  # q's modes: B and no answer


def _outcome(item, probe, answer, valid=True, failed=False, params=None):
    return {"item_id": item, "probe": probe, "params": params or {}, "answer": answer, "valid": valid, "failed_call": failed}


def test_failed_calls_and_invalid_variants_are_left_out():
    baseline = pd.DataFrame([{"item_id": "a", "answer": x, "failed_call": f}
                             for x, f in (("1", False), ("1", False), ("2", True))]
                            + [{"item_id": "b", "answer": "5", "failed_call": True}])
    outcomes = pd.DataFrame([
        _outcome("a", "p", "1"), _outcome("a", "p", "3"),
        _outcome("a", "p", "3", failed=True), _outcome("a", "p", "9", valid=False),
        _outcome("b", "p", "5"),  # b has no usable baseline sample: not scored
    ])
    shift = distribution_shift(outcomes, baseline, seed=0)["p"]
    # a: P = {1: 1} (the failed "2" dropped), Q = {1: 1/2, 3: 1/2}: TV 1/2, mass on "1" 1/2
    assert shift["answer_tv_distance"].estimate == pytest.approx(0.5) and shift["answer_tv_distance"].n == 1
    assert shift["baseline_mode_mass"].estimate == pytest.approx(0.5)


def test_variants_are_compared_one_by_one_then_averaged_per_item():
    baseline = pd.DataFrame([{"item_id": i, "answer": "x", "failed_call": False} for i in ("a", "b")])
    outcomes = pd.DataFrame([
        _outcome("a", "p", "x", params={"k": 1}), _outcome("a", "p", "y", params={"k": 2}),  # TVs 0 and 1 -> 1/2
        _outcome("b", "p", "y", params={"k": 1}), _outcome("b", "p", "y", params={"k": 1}),  # one variant: TV 1
    ])
    est = distribution_shift(outcomes, baseline, seed=0)["p"]["answer_tv_distance"]
    assert est.estimate == pytest.approx((0.5 + 1.0) / 2) and est.n == 2 and est.ci_low <= est.estimate <= est.ci_high
