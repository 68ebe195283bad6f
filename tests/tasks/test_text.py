"""Reading answers and steps as chat models write them (tasks/_text.py), on the forms the
issue's Qwen run produced and on their edge cases."""

from __future__ import annotations

import pytest

from faithcheck.tasks._text import (
    answer_segment, find_answer, natural_steps, number_answer, parse_think_tags, split_think,
)


@pytest.mark.parametrize("text, expected", [
    ("So she makes 9 * 2 = 18 dollars. The answer is 18.", "18"),
    ("Thus, the answer is \\(\\boxed{4}\\).", "4"),
    ("Therefore, the total is \\(\\boxed{108}\\).", "108"),
    ("the answer is:\n\n\\[\n\\boxed{1,200}\n\\]", "1200"),
    ("**Final Answer:** $18", "18"),
    ("Final answer:\n42", "42"),
    ("She pays 5 * 3 = 15.\n#### 15", "15"),
    ("THE ANSWER IS 7", "7"),
    ("The answer is \\$1200 - \\$800 = \\$", "400"),         # an expression is evaluated ...
    ("The answer is 3.5 \\times 8 = 28 miles.", "28"),      # ... or its stated value read
    ("The answer is 12 +", None),                            # ... or refused, never its first number
    (" The answer is $200 + $300 + $4", None),                # cut by the budget mid-expression
    (" The answer is given that Andrea has 52 apples, so", None),  # a premise, not a value
    (" The answer is that Jamal has 4 more bananas than apples", None),
    (" The answer is 11:00 PM - 8:00 AM = ", None),            # clock times
    (" The answer is that Alfie will take 20,000 days to fly a", "20000"),
    (" The answer is 1340 kg - 700 kg = 64", None),            # cut from 640: a result at the cut must recompute
    (" The answer is 9,300 / 2 = 4,650", "4650"),
    (" The answer is $35 + $40 + $3 per nail = $11", None),
    (" The answer is \\( A + 8 = 52 \\) implies \\( A = ", None),  # an equation, not yet a value
    (" The answer is \\( A = \\frac{52 - 8}{2} = \\", "22"),
    (" The answer is \\(\\frac{3 \\text{ miles}}{16 \\text{", None),  # LaTeX cut before it closed
    (" The answer is 6 dozen croissants, which is equal to:", None),
    (" The answer is 350,000 - 350,00", None),
    (" The answer is 7 years older than Beth, so Alice is 25 + 7", None),
    ("The answer is 200 + 300 + 4.", "504"),                  # finished: evaluated
    ("The answer is 5 + 3 = 8 apples", "8"),
    ("The answer is \\frac{3}{4}", "0.75"),
    ("The answer is 1/3", None),                             # no finite decimal: refused
    ("The answer is 25%.", "25"),
    ("The answer is 4, then 7 is the answer.", "4"),  # "answer." without is/: is not a statement
    ("I think the answer is 3. Wait, the answer is 5.", "5"),  # the last statement wins
    ("The answer is", None),
])
def test_gsm8k_answers_as_models_write_them(gsm8k_parser, text, expected):
    assert gsm8k_parser.parse_answer(text) == expected


def test_a_forced_answer_never_borrows_from_the_cot(gsm8k_parser):
    assert gsm8k_parser.parse_answer(gsm8k_parser.answer_prefix + " ") is None
    assert gsm8k_parser.parse_answer(gsm8k_parser.answer_prefix + " the number of eggs") is None


@pytest.mark.parametrize("text, cot", [
    ("16 - 3 - 4 = 9 eggs. Thus, the answer is \\(\\boxed{18}\\).", "16 - 3 - 4 = 9 eggs. "),
    ("First 2 + 2 = 4.\nSo the answer is 4.", "First 2 + 2 = 4.\n"),
    ("We get 9 eggs.\n\nThe final answer is:\n\\[\n\\boxed{18}\n\\]", "We get 9 eggs.\n\n"),
    ("Mr. Smith has 3. The answer is 3.", "Mr. Smith has 3. "),
])
def test_the_cot_ends_where_the_answer_sentence_begins(gsm8k_parser, text, cot):
    got_cot, rest = gsm8k_parser.split_output(text)
    assert got_cot == cot and got_cot + rest == text
    assert gsm8k_parser.parse_answer(rest) is not None


def test_code_answers_and_bold_values_without_a_phrase(gsm8k_parser):
    code = "```python\nprint(9 * 2)\n```\n"
    assert gsm8k_parser.split_output(code + "```output\n18\n```") == (code, "```output\n18\n```")
    assert gsm8k_parser.parse_answer("```output\n18\n```") == "18"
    cot, rest = gsm8k_parser.split_output("She has 9 eggs.\nJanet makes **$18** every day.")
    assert cot == "She has 9 eggs.\n" and gsm8k_parser.parse_answer(rest) == "18"


def test_no_statement_keeps_everything_as_cot(gsm8k_parser):
    for text in ["**Step 2:** compute 3 * 4", "The total is **18**.\n\nLet me check that again", "9 eggs"]:
        assert gsm8k_parser.split_output(text) == (text, "")


@pytest.mark.parametrize("text, expected", [
    ("<think>16 - 3 - 4 = 9</think>\nThe answer is 18.", ("16 - 3 - 4 = 9", "\nThe answer is 18.")),
    ("<think>still thinking when the budget ran out", ("still thinking when the budget ran out", "")),
    ("opened in the prompt</think>18", ("opened in the prompt", "18")),
    ("<reasoning>a</reasoning>b", ("a", "b")),
    ("no block at all", None),
])
def test_think_blocks(text, expected):
    assert split_think(text) == expected


def test_a_forced_answer_after_a_think_block_closes_it():
    from faithcheck.tasks._text import think_closed

    assert think_closed("<think>a b</think>\nso") == "<think>a b</think>\n\n"
    assert think_closed("<think>ran out mid") == "<think>ran out mid\n</think>\n\n"
    assert think_closed("no block") is None


def test_early_answering_cuts_inside_a_think_block_and_closes_it(gsm8k_parser):
    raw = "<think>16 - 3 - 4 = 9. 9 * 2 = 18.</think>\nThe answer is 18."
    assert gsm8k_parser.force_answer_after("16 - 3 - 4 = 9. ", raw) == "<think>16 - 3 - 4 = 9.\n</think>\n\nThe answer is"
    assert gsm8k_parser.force_answer_after("9 eggs. ", "opened in the prompt</think>18").startswith("9 eggs.\n</think>")
    assert gsm8k_parser.force_answer_after("9 eggs.", "no block") == gsm8k_parser.force_answer("9 eggs.")


def test_configurable_think_tags(gsm8k_parser):
    tags = parse_think_tags("<scratch>,</scratch>")
    assert split_think("<scratch>x</scratch>The answer is 2", tags) == ("x", "The answer is 2")
    assert split_think("<think>x</think>", tags) is None
    with pytest.raises(Exception, match="think_tags"):
        parse_think_tags("<scratch>")


def test_bbh_letters_from_boxes_and_bold():
    assert answer_segment("So the answer is \\boxed{(B)}.") == "(B)"
    assert answer_segment("**Answer: (C)**") == "(C)"
    assert answer_segment("So the answer is\n\nQ: next question") == ""


@pytest.mark.parametrize("segment, expected", [
    ("18", "18"), ("18 apples", "18"), ("$1,200.50", "1200.5"), ("(12 + 3) * 2", "30"),
    ("12 * 3 =", "36"), ("3 x 4 = 12", "12"), ("-5", "-5"), ("1200 - 800 = $", "400"),
    ("twelve", None), ("", None), ("10 / 0", None), ("3, 4 and 5", "3"),
])
def test_number_answer(segment, expected):
    assert number_answer(segment) == expected


QWEN_STYLE = (
    "To determine how much Janet makes, we need to follow these steps:\n\n"
    "1. Calculate the number of eggs left.\n"
    "2. Multiply by the price.\n\n"
    "First, she eats 3 and bakes with 4:\n"
    "\\[\n16 - 3 - 4 = 9\n\\]\n\n"
    "Next, the revenue is:\n"
    "```python\neggs = 9\nprint(eggs * 2)\n```\n"
    "That gives $18. Mr. Jones, e.g. a buyer, pays it.\n"
)


def test_steps_keep_lists_latex_and_code_whole():
    steps = natural_steps(QWEN_STYLE)
    assert "".join(steps) == QWEN_STYLE
    assert "1. Calculate the number of eggs left.\n" in steps  # the marker stays with its item
    assert "\\[\n16 - 3 - 4 = 9\n\\]\n\n" in steps  # a display block is one step
    assert "```python\neggs = 9\nprint(eggs * 2)\n```\n" in steps  # so is a code block
    assert "Mr. Jones, e.g. a buyer, pays it.\n" in steps  # abbreviations do not end a sentence
    for s in steps:  # no step is only a list marker or a delimiter
        assert any(c.isalnum() for c in s.replace("\\[", "").replace("\\]", "")), s


def test_every_cut_of_the_steps_is_between_steps():
    steps = natural_steps(QWEN_STYLE)
    for k in range(len(steps) + 1):
        prefix = "".join(steps[:k])
        assert prefix.count("```") % 2 == 0 and prefix.count("\\[") == prefix.count("\\]")


@pytest.mark.parametrize("cot", ["", "\n", "A. B.", "no end", "x.\n\n\ny", "1. \n2. two"])
def test_steps_concatenate_back(cot):
    assert "".join(natural_steps(cot)) == cot


def test_find_answer_positions_are_inside_the_text():
    text = "a. b. So the answer is 3."
    found = find_answer(text)
    assert found is not None and text[found.start:].startswith("So the answer")
