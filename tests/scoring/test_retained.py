import numpy as np
import pandas as pd
import pytest

from faithcheck.scoring.retained import cot_benefit_retained


def rows(probe, correct, base, answer="1"):
    return [{"item_id": f"i{i}", "probe": probe, "correct": bool(c), "baseline_correct": bool(b), "valid": True,
             "failed_call": False, "answer": answer, "baseline_answer": "1"} for i, (c, b) in enumerate(zip(correct, base))]


def test_retained_by_hand():
    rng = np.random.default_rng(0)
    base = np.ones(40, dtype=bool)
    base[:4] = False                     # CoT accuracy 0.9
    none = np.zeros(40, dtype=bool)
    none[:6] = True                      # no-CoT accuracy 0.15
    para = base.copy()
    para[rng.choice(np.arange(4, 40), 9, replace=False)] = False  # 0.675
    table = pd.DataFrame(rows("no_cot", none, base) + rows("paraphrase", para, base))
    got = cot_benefit_retained(table, seed=0)["paraphrase"]
    expected = (para.mean() - none.mean()) / (base.mean() - none.mean())
    assert got.estimate == pytest.approx(expected)
    assert got.ci_low < expected < got.ci_high and got.n == 40


def test_no_benefit_means_no_normalization():
    base = np.zeros(30, dtype=bool)
    table = pd.DataFrame(rows("no_cot", base, base) + rows("paraphrase", base, base))
    assert cot_benefit_retained(table, seed=0) == {}


def test_unparseable_answers_and_failed_calls_are_left_out():
    """A filler probe whose answers could not be parsed has no retained share (it is not 0)."""
    base = np.ones(30, dtype=bool)
    none = np.zeros(30, dtype=bool)
    unparsed = pd.DataFrame(rows("filler", none, base, answer=None))
    failed = pd.DataFrame(rows("paraphrase", none, base)).assign(failed_call=True, answer=None)
    table = pd.concat([pd.DataFrame(rows("no_cot", none, base)), unparsed, failed], ignore_index=True)
    assert cot_benefit_retained(table, seed=0) == {}
    degenerate = pd.concat([pd.DataFrame(rows("no_cot", none, base)), pd.DataFrame(rows("filler", none, base))])
    got = cot_benefit_retained(degenerate, seed=0)["filler"]
    assert got.estimate == 0 and got.degenerate and "degenerate" in got.method
