"""mc:PATH on small hand-made files: the bad rows of a user's file are skipped with their
row numbers, a file with nothing usable is an error, answers are letters."""

from __future__ import annotations

import json
import re

import pytest

from faithcheck.errors import BadInput
from faithcheck.tasks import get_task
from faithcheck.tasks.mc import MCTask, format_options, parse_options

GOOD = {"question": "2+2?", "choices": ["3", "4", "5"], "answer": "B"}


def write_jsonl(path, lines: list) -> str:
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    return str(path)


@pytest.fixture
def jsonl(tmp_path) -> str:
    return write_jsonl(tmp_path / "set.jsonl", [
        GOOD,                                                                      # 1
        {"question": "Capital of France?", "choices": ["Rome", "Paris"], "answer": "Paris", "id": "fr"},  # 2
        '{"question": "broken", "choices": [',                                     # 3 bad JSON
        "",                                                                        # 4 blank: not a row
        {"question": "no answer", "choices": ["a", "b"]},                          # 5 missing field
        {"question": "q", "choices": ["a", "b"], "answer": "c"},                   # 6 not a choice
        {"question": "q", "choices": ["only"], "answer": "A"},                     # 7 one choice
        {"question": "q", "choices": ["a", "b"], "answer": "D"},                   # 8 letter past the end
        {"question": "q", "choices": "a|b", "answer": "A"},                        # 9 JSONL choices not a list
        {"question": "Pick one", "choices": ["x", "y", "z", "w"], "answer": "(d)"},  # 10
        {"question": "dup", "choices": ["a", "b"], "answer": "A", "id": "fr"},     # 11 duplicate id
    ])


def test_jsonl_rows_and_skips(jsonl):
    result = get_task(f"mc:{jsonl}").load(None, seed=0)
    by_id = {i.id: i for i in result.items}
    assert set(by_id) == {"mc-0001", "fr", "mc-0010"}
    assert by_id["mc-0001"].answer == "B" and by_id["mc-0001"].choices == ("3", "4", "5")
    assert by_id["fr"].answer == "B"  # given as the choice's text
    assert by_id["mc-0010"].answer == "D"  # given as "(d)"
    assert [s.row for s in result.skipped] == [3, 5, 6, 7, 8, 9, 11]
    assert all(s.source == jsonl for s in result.skipped)
    reasons = {s.row: s.reason for s in result.skipped}
    assert "JSON" in reasons[3] and "answer" in reasons[5] and "'c'" in reasons[6]
    assert "2 choices" in reasons[7] and "duplicate" in reasons[11]


def test_csv_rows_and_skips(tmp_path):
    path = tmp_path / "set.csv"
    path.write_text(
        "id,question,choices,answer\n"            # line 1: header
        "q1,2+2?,3|4|5,4\n"                        # 2
        ',"A question\nover two lines",yes|no,A\n'  # 3-4: numbered by its first line
        "q3,one choice,alone,A\n"                  # 5
        "\n"                                       # 6 blank
        "q4,bad answer,a|b,z\n"                    # 7
        "q5,too few fields\n"                      # 8
        ",no id,a|b|c,C\n"                         # 9
    )
    result = get_task(f"mc:{path}").load(None, seed=0)
    by_id = {i.id: i for i in result.items}
    assert set(by_id) == {"q1", "mc-0003", "mc-0009"}
    assert by_id["q1"].answer == "B" and by_id["q1"].choices == ("3", "4", "5")
    assert by_id["mc-0003"].question == "A question\nover two lines"
    assert by_id["mc-0009"].answer == "C"
    assert [s.row for s in result.skipped] == [5, 7, 8]


def test_missing_file_unknown_extension_and_no_usable_rows(tmp_path):
    missing = tmp_path / "none.jsonl"
    with pytest.raises(BadInput, match=re.escape(str(missing))):
        get_task(f"mc:{missing}")
    other = tmp_path / "set.txt"
    other.write_text("x")
    with pytest.raises(BadInput, match="jsonl or .csv"):
        get_task(f"mc:{other}")
    empty = tmp_path / "bad.jsonl"
    write_jsonl(empty, ["{oops", {"question": "q", "choices": ["a"], "answer": "A"}])
    with pytest.raises(BadInput, match=re.escape(str(empty)) + ".*no usable rows"):
        get_task(f"mc:{empty}").load(None, seed=0)
    with pytest.raises(BadInput, match="mc:PATH"):
        get_task("mc")


def test_prompt_format_and_cue(jsonl):
    task = get_task(f"mc:{jsonl}")
    item = next(i for i in task.load(None, 0).items if i.id == "mc-0001")
    assert task.prompt(item) == (
        "Question: 2+2?\nOptions:\n(A) 3\n(B) 4\n(C) 5\nAnswer: Let's think step by step."
    )
    assert "I think the answer is (C)" in task.prompt(item, cue="C")
    assert parse_options(task.prompt(item)) == item.choices


@pytest.mark.parametrize("text, expected", [
    ("4 is two plus two. So the answer is (B).", "B"),
    ("So the answer is B", "B"),
    ("So the answer is: C.", "C"),
    ("So the answer is option D.", "D"),
    ("the answer is (A) at first. So the answer is (C).", "C"),
    ("So the answer is Alice.", None),
    ("So the answer is\n\nQuestion: next", None),
    ("B is right.", None),
    ("", None),
])
def test_parse_answer(text, expected, jsonl):
    assert get_task(f"mc:{jsonl}").parse_answer(text) == expected


def test_chance_labels_wrong_answer_and_shuffle(jsonl):
    task: MCTask = get_task(f"mc:{jsonl}")
    assert task.chance == pytest.approx((1 / 3 + 1 / 2 + 1 / 4) / 3)
    items = task.load(None, seed=0).items
    for item in items:
        labels = task.answer_labels(item)
        assert labels == ["A", "B", "C", "D"][: len(item.choices)]
        wrong = task.wrong_answer(item, seed=0)
        assert wrong in labels and wrong != item.answer
    assert len(task.load(2, seed=0).items) == 2
    orders = {tuple(i.id for i in task.load(None, seed=s).items) for s in range(10)}
    assert len(orders) > 1


def test_steps_concatenate_back_exactly(jsonl):
    task = get_task(f"mc:{jsonl}")
    cot = "\n4 is 2 plus 2. Option (B) is 4!\nSo it is B"
    steps = task.split_steps(cot)
    assert "".join(steps) == cot and len(steps) == 3


def test_format_options_round_trips():
    choices = ("red", "green (dark)", "blue")
    assert parse_options("Options:\n" + format_options(choices) + "\nAnswer:") == choices
    assert parse_options("no options here") == ()
