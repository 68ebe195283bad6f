"""Planted mistakes in the arithmetic chat models write: LaTeX operators and whole chains,
the planted value recomputed against that very expression, and where the change leads."""

from __future__ import annotations

import random
from fractions import Fraction

import pytest

from faithcheck.rewriters.rules import arithmetic_correct, carried_values, corrupt_step, expressions, last_expression


@pytest.mark.parametrize("step, true", [
    ("So, Ahito ran 52 - 8 - 28 = 16 miles.", 16),          # a chain: (52 - 8) - 28, not 8 - 28
    ("Micah ran \\(3.5 \\times 8 = 28\\) miles.", 28),
    ("\\[ \\frac{3}{4} \\times 120 = 90 \\]", 90),
    ("That is 120 \\div 4 \\cdot 3 = 90.", 90),               # left to right: (120 / 4) * 3
    ("Total: 2 + 3 \\times 4 = 14", 14),                      # precedence
    ("Each costs $12 * 3 = $36.", 36),
    ("It costs 2 x $1.50 = $3.", 3),
    ("He keeps 20% * 50 = 10 of them.", 10),
    ("(5 + 3) * 2 = 16 boxes", 16),
    ("So 1,200 - 800 = 400 dollars.", 400),
])
def test_the_whole_expression_is_evaluated(step, true):
    e = last_expression(step)
    assert e is not None and e.true == true
    assert arithmetic_correct(step) is True


def test_a_wrong_stated_value_is_seen():
    assert arithmetic_correct("So 52 - 8 - 28 = 14.") is False
    assert arithmetic_correct("No arithmetic here.") is None


@pytest.mark.parametrize("step", [
    "So, Ahito ran 52 - 8 - 28 = 16 miles.", "Micah ran \\(3.5 \\times 8 = 28\\) miles.",
    "\\[ \\frac{3}{4} \\times 120 = 90 \\]", "Wrongly, 52 - 8 - 28 = 15 miles.",
])
def test_planted_values_differ_from_the_true_value_of_that_expression(step):
    for seed in range(30):
        new, planted, checks = corrupt_step(step, random.Random(seed), modular=False)
        e = last_expression(new)
        assert checks["provably_wrong"] and e.stated == Fraction(planted) and e.stated != e.true
        assert e.true == last_expression(step).true  # only the result changed
        assert planted in new


def test_a_step_without_a_calculation_cannot_be_corrupted_provably():
    got = corrupt_step("The statement is True.", random.Random(0), modular=False)
    assert got is None
    _, _, checks = corrupt_step("She has 5 apples.", random.Random(0), modular=False)
    assert checks["provably_wrong"] is False  # a changed number with nothing to recompute: not a checked mistake


def test_the_planted_change_is_carried_to_the_answer():
    steps = ("Micah ran 3.5 * 8 = 28 miles. ", "Together 8 + 28 = 36. ", "So Ahito ran 52 - 36 = 16 miles. ")
    changed = carried_values(steps, 0, Fraction(28), Fraction(30))
    assert changed[Fraction(28)] == 30 and changed[Fraction(36)] == 38 and changed[Fraction(16)] == 14


def test_gsm8k_implied_answer(tmp_path):
    import json

    from faithcheck.tasks.gsm8k import GSM8KTask

    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps({"question": "q", "answer": "#### 16"}) + "\n")
    task = GSM8KTask(path)
    steps = ("Micah ran \\(3.5 \\times 8 = 28\\) miles. ", "So Ahito ran 52 - 8 - 28 = 16 miles. ")
    assert task.implied_answer(None, 0, "30", steps, "16") == "14"
    assert task.implied_answer(None, 1, "18", steps, "16") == "18"
    assert task.implied_answer(None, 0, "30", steps, "99") is None  # the change never reaches that answer
    assert expressions("no numbers") == []
