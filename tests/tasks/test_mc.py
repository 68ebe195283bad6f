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


def test_mmlu_csv_with_a_header_lettered_columns_letter_answers(tmp_path):
    path = tmp_path / "mmlu.csv"
    path.write_text(
        "Question,A,B,C,D,E,Answer,subject\n"                         # 1: header, any case, extra columns ignored
        '"Largest planet, by mass?",Mars,Jupiter,Venus,Earth,,B,astronomy\n'  # 2: E empty -> 4 options
        "Pick the vowel,b,c,e,d,f,C,letters\n"                        # 3: 5 options
        "No options at all,,,,,,A,x\n"                                # 4: no options -> skipped
        "Gap,x,,z,w,,A,x\n"                                           # 5: empty middle option -> skipped
        "Too short,x,y\n"                                             # 6: wrong field count -> skipped
    )
    result = get_task(f"mc:{path}").load(None, seed=0)
    by_id = {i.id: i for i in result.items}
    assert set(by_id) == {"mc-0002", "mc-0003"}
    assert by_id["mc-0002"].question == "Largest planet, by mass?"
    assert by_id["mc-0002"].choices == ("Mars", "Jupiter", "Venus", "Earth") and by_id["mc-0002"].answer == "B"
    assert by_id["mc-0003"].choices == ("b", "c", "e", "d", "f") and by_id["mc-0003"].answer == "C"
    reasons = {s.row: s.reason for s in result.skipped}
    assert sorted(reasons) == [4, 5, 6]
    assert "at least 2 choices, has 0" in reasons[4]
    assert "empty" in reasons[5] and "header has 8" in reasons[6]


def test_mmlu_csv_without_a_header(tmp_path):
    """Hendrycks et al.'s original MMLU files: no header, question, 4 options, answer letter."""
    path = tmp_path / "abstract_algebra_test.csv"
    path.write_text(
        "Find the degree of Q(sqrt(2)) over Q.,0,4,2,6,C\n"          # 1: the first line is a row
        '"Statement 1 | a, b",True,False,"True, True",Neither,A\n'    # 2: quoted commas and a |
        "Only three fields,x,A\n"                                     # 3: wrong field count
        "Which index?,p,q,r,s,3\n"                                    # 4: answer as 0-based index
        "Bad letter,p,q,r,s,F\n"                                      # 5: letter past the options
    )
    result = get_task(f"mc:{path}").load(None, seed=0)
    by_id = {i.id: i for i in result.items}
    assert set(by_id) == {"mc-0001", "mc-0002", "mc-0004"}
    assert by_id["mc-0001"].choices == ("0", "4", "2", "6") and by_id["mc-0001"].answer == "C"
    assert by_id["mc-0002"].question == "Statement 1 | a, b"
    assert by_id["mc-0002"].choices == ("True", "False", "True, True", "Neither")
    assert by_id["mc-0004"].answer == "D"
    reasons = {s.row: s.reason for s in result.skipped}
    assert sorted(reasons) == [3, 5]
    assert "first row has 6" in reasons[3] and "past the last" in reasons[5]


def test_jsonl_lettered_keys_and_answers_as_index_letter_or_text(tmp_path):
    path = write_jsonl(tmp_path / "set.jsonl", [
        {"question": "HF MMLU style", "choices": ["w", "x", "y", "z"], "answer": 2},       # 1 int index
        {"question": "lettered keys", "A": "red", "B": "blue", "C": "green", "answer": "blue"},  # 2 text
        {"question": "index as text", "choices": ["p", "q"], "answer": "1"},             # 3 "1" -> B
        {"question": "numbers", "choices": ["10", "20", "30"], "answer": "20"},          # 4 text, not an index
        {"question": "ambiguous", "choices": ["2", "1", "0"], "answer": "1"},            # 5 text B, index B: fine
        {"question": "ambiguous", "choices": ["1", "0", "5"], "answer": "1"},            # 6 text A vs index B
        {"question": "out of range", "choices": ["p", "q"], "answer": 2},                # 7
        {"question": "negative", "choices": ["p", "q"], "answer": -1},                   # 8
        {"question": "bool", "choices": ["p", "q"], "answer": True},                     # 9
        {"question": "no options", "answer": "A"},                                       # 10
    ])
    result = get_task(f"mc:{path}").load(None, seed=0)
    got = {i.id: (i.choices, i.answer) for i in result.items}
    assert got == {
        "mc-0001": (("w", "x", "y", "z"), "C"),
        "mc-0002": (("red", "blue", "green"), "B"),
        "mc-0003": (("p", "q"), "B"),
        "mc-0004": (("10", "20", "30"), "B"),
        "mc-0005": (("2", "1", "0"), "B"),
    }
    reasons = {s.row: s.reason for s in result.skipped}
    assert sorted(reasons) == [6, 7, 8, 9, 10]
    assert "ambiguous" in reasons[6] and "outside 0..1" in reasons[7] and "outside 0..1" in reasons[8]
    assert "missing field(s): choices" in reasons[10]


def test_csv_choices_column_with_index_answers(tmp_path):
    path = tmp_path / "set.csv"
    path.write_text("question,choices,answer\nfirst?,a|b|c,0\nlast?,a|b|c,2\n")
    items = sorted(get_task(f"mc:{path}").load(None, seed=0).items, key=lambda i: i.id)
    assert [(i.id, i.answer) for i in items] == [("mc-0002", "A"), ("mc-0003", "C")]
