"""Unparseable answers and failed calls are outcomes of their own: counted, never scored as wrong,
and a probe whose answers are mostly unparseable says so. Each headline's test reads its own quantity."""

from __future__ import annotations

import pandas as pd
import pytest
from scipy import stats as sps

from faithcheck.probes import ProbeContext, get_probes
from faithcheck.scoring.outcomes import outcome_counts, outcome_kind
from faithcheck.scoring.summary import score_probes
from faithcheck.tasks import get_task


def row(item, probe, answer, *, base="7", params=None, valid=True, failed=False):
    return {"item_id": item, "probe": probe, "params": params or {}, "sample": 0, "baseline_answer": base,
            "baseline_correct": base == "7", "answer": answer, "correct": answer == "7",
            "same_as_baseline": answer is not None and answer == base, "valid": valid, "target": None,
            "follows_target": None, "checks": {}, "completion": "", "failed_call": failed}


def score(rows, probes):
    table = pd.DataFrame(rows)
    ctx = ProbeContext(get_task("modular"), 0, len)
    return score_probes(get_probes(probes), table, ctx)


def test_kinds_in_order_of_precedence():
    t = pd.DataFrame([row("a", "p", "7"), row("b", "p", None), row("c", "p", None, failed=True),
                      row("d", "p", "7", valid=False), row("e", "p", "7", base=None)])
    assert outcome_kind(t).tolist() == ["scored", "unparseable", "failed_call", "failed_check", "baseline_unparseable"]
    c = outcome_counts(t)
    assert (c["scored"], c["unparseable"], c["failed_calls"], c["failed_checks"], c["baseline_unparseable"]) == (1, 1, 1, 1, 1)


def test_unparseable_and_failed_are_left_out_of_the_rate():
    # 10 items: 6 answered right, 2 unparseable, 2 failed calls -> accuracy 6/6, not 6/10
    rows = [row(f"i{i}", "no_cot", "7") for i in range(6)]
    rows += [row(f"i{i}", "no_cot", None) for i in (6, 7)] + [row(f"i{i}", "no_cot", None, failed=True) for i in (8, 9)]
    m = score(rows, ["no_cot"])["no_cot"]
    assert m.headline.estimate == 1.0 and m.headline.n == 6
    assert m.counts["unparseable"] == 2 and m.counts["failed_calls"] == 2 and m.counts["scored"] == 6
    assert not any("could not be parsed" in n for n in m.notes)
    assert any("2 of 10 model calls failed" in n for n in m.notes)


def test_mostly_unparseable_says_so_instead_of_accuracy_0():
    """The issue's case: every filler answer was 'puis on'."""
    rows = [row(f"i{i}", "filler", None) for i in range(60)]
    m = score(rows, ["filler"])["filler"]
    assert m.headline.estimate is None and m.headline.n == 0 and m.headline.p_value is None
    assert m.notes and "60 of 60 answers could not be parsed" in m.notes[0] and "not an accuracy of 0" in m.notes[0]
    some = score([row(f"i{i}", "filler", None) for i in range(8)] + [row("x", "filler", "7"), row("y", "filler", "3")],
                 ["filler"])["filler"]
    assert some.headline.n == 2 and "read on the 2 that could" in some.notes[0]


def test_format_control_is_tested_on_the_same_answer_rate():
    """Headline: same answer after a layout rewrite; its test: the same answer with the unchanged CoT
    forced (early_answering at 100%), paired by item - not the accuracy McNemar."""
    rows = []
    for i in range(30):
        rows.append(row(f"i{i}", "early_answering", "7", params={"k": 4, "n_steps": 4, "fraction": 1.0}))
        rows.append(row(f"i{i}", "early_answering", "3", params={"k": 0, "n_steps": 4, "fraction": 0.0}))
        # 12 items change their answer under the format rewrite, all to another *correct-looking* wrong one
        rows.append(row(f"i{i}", "format_control", "3" if i < 12 else "7"))
    m = score(rows, ["early_answering", "format_control"])["format_control"]
    assert m.headline_name == "same_as_baseline" and m.headline.estimate == pytest.approx(18 / 30)
    assert m.headline.p_value == pytest.approx(sps.binomtest(12, 12, 0.5).pvalue)
    assert "same answer" in m.headline.test and "accuracy" not in m.headline.test
    ea = score(rows, ["early_answering"])["early_answering"]
    assert "same answer" in ea.headline.test and ea.headline.p_value == pytest.approx(sps.binomtest(30, 30, 0.5).pvalue)
    assert "accuracy" in ea.extras["accuracy_at_0"].test


def test_paraphrase_without_any_control_carries_no_test():
    m = score([row(f"i{i}", "paraphrase", "7", params={"scope": "whole"}) for i in range(5)], ["paraphrase"])["paraphrase"]
    assert m.headline.p_value is None and m.headline.test is None
