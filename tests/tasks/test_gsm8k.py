"""gsm8k on the real data: loading, the few-shot prompt, and answer parsing on real worked
solutions (a measured rate, not a hand-picked example)."""

from __future__ import annotations

import json
import re

import pytest

from faithcheck.errors import BadInput
from faithcheck.paths import shared_datasets
from faithcheck.tasks import get_task
from faithcheck.tasks.gsm8k import GSM8KTask, natural_steps, normalise_number, worked_solution

GSM8K = shared_datasets() / "gsm8k"
needs_data = pytest.mark.skipif(
    not (GSM8K / "test.jsonl").is_file() or not (GSM8K / "train.jsonl").is_file(),
    reason=f"GSM8K data not found at {GSM8K} (test.jsonl and train.jsonl)",
)


def train_rows(n: int) -> list[dict]:
    with (GSM8K / "train.jsonl").open(encoding="utf-8") as f:
        return [json.loads(next(f)) for _ in range(n)]


def raw_gold(row: dict) -> str:
    return row["answer"].rsplit("####", 1)[1].strip().replace(",", "")


@pytest.fixture(scope="module")
def task() -> GSM8KTask:
    if not (GSM8K / "test.jsonl").is_file():
        pytest.skip(f"GSM8K data not found at {GSM8K}")
    return get_task("gsm8k")


@pytest.mark.parametrize("text, expected", [
    ("18", "18"), ("1,000", "1000"), ("$5.00", "5"), ("3.50", "3.5"), ("70.0", "70"),
    ("-4", "-4"), ("-0", "0"), ("twelve", None), ("", None), ("nan", None),
])
def test_normalise_number(text, expected):
    assert normalise_number(text) == expected


@needs_data
def test_loads_every_test_row_with_stable_ids(task):
    result = task.load(None, seed=0)
    assert len(result.items) == 1319 and result.skipped == ()
    ids = [i.id for i in result.items]
    assert len(set(ids)) == len(ids)
    first = next(i for i in result.items if i.id == "gsm8k-0001")
    assert first.question.startswith("Janet") and first.answer == "18"


@needs_data
def test_load_is_a_seeded_shuffle(task):
    a, b, c = task.load(20, seed=1), task.load(20, seed=1), task.load(20, seed=2)
    assert len(a.items) == 20
    assert [i.id for i in a.items] == [i.id for i in b.items]
    assert [i.id for i in a.items] != [i.id for i in c.items]
    assert [i.id for i in a.items] != sorted(i.id for i in a.items)


@needs_data
def test_prompt_has_four_cleaned_exemplars_and_ends_where_the_cot_starts(task):
    item = task.load(1, seed=0).items[0]
    prompt = task.prompt(item)
    assert prompt.endswith(f"Question: {item.question}\nAnswer:")
    assert prompt.count("Question: ") == 5
    assert "<<" not in prompt and ">>" not in prompt and "####" not in prompt
    for row in train_rows(4):
        assert f"Question: {row['question']}\nAnswer: " in prompt
        assert f"The answer is {raw_gold(row)}.\n\n" in prompt
    # the exemplars teach the same phrase the answer is forced with
    assert prompt.count(task.answer_prefix.strip()) == 4


@needs_data
def test_cue_adds_a_suggested_answer(task):
    item = task.load(1, seed=0).items[0]
    assert "I think the answer is 7" in task.prompt(item, cue="7")
    assert "I think the answer is" not in task.prompt(item)


def test_zero_shot_without_train_file_and_bad_rows_skipped(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text(
        json.dumps({"question": "What is 2+2?", "answer": "2+2=<<2+2=4>>4\n#### 4"}) + "\n"
        + json.dumps({"question": "No gold?", "answer": "just text"}) + "\n"
        + json.dumps({"question": "Gold not a number?", "answer": "x\n#### many"}) + "\n"
    )
    task = get_task(f"gsm8k:{path}")
    result = task.load(None, seed=0)
    assert [i.answer for i in result.items] == ["4"]
    assert [(s.row, s.source) for s in result.skipped] == [(2, str(path)), (3, str(path))]
    assert task.prompt(result.items[0]) == "Question: What is 2+2?\nAnswer:"


def test_missing_file_is_bad_input(tmp_path):
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(BadInput, match=re.escape(str(missing))):
        get_task(f"gsm8k:{missing}")


@needs_data
def test_worked_solutions_parse_to_their_gold():
    """Over the first 200 training solutions: with the exemplar's closing sentence the
    parse must be exact; from the bare CoT (last number) it must mostly be right."""
    task = get_task("gsm8k")
    rows = train_rows(200)
    bare_hits = 0
    for row in rows:
        cot, answer = worked_solution(row)
        assert answer == normalise_number(raw_gold(row))
        assert "<<" not in cot and "####" not in cot and "\n" not in cot
        assert task.parse_answer(f"{cot} The answer is {answer}.") == answer
        bare_hits += task.parse_answer(cot) == answer
    # measured 195/200: a few solutions end on a number other than the answer
    assert bare_hits / len(rows) >= 0.95, f"only {bare_hits}/200 bare CoTs end on their answer"


@pytest.mark.parametrize("text, expected", [
    ("She makes 9 * 2 = $18. The answer is $18.", "18"),
    ("The answer is 1,250.00 dollars", "1250"),
    ("I think the answer is 5. No wait, the answer is 7.", "7"),
    ("So 16-3-4=9 eggs are left", "9"),
    ("The answer is -3.", "-3"),
    ("He had 12 apples. The answer is", None),
    ("The answer is unknown.", None),
    ("no numbers at all", None),
    ("", None),
])
def test_parse_answer(text, expected, gsm8k_parser):
    assert gsm8k_parser.parse_answer(text) == expected


@needs_data
def test_steps_concatenate_back_exactly(task):
    for row in train_rows(200):
        cot, _ = worked_solution(row)
        for text in (cot, " " + cot, "\n" + row["answer"]):
            steps = task.split_steps(text)
            assert "".join(steps) == text
            assert all(s.strip() for s in steps)
    first, _ = worked_solution(train_rows(1)[0])
    assert task.split_steps(first) == [
        "Natalia sold 48/2 = 24 clips in May. ", "Natalia sold 48+24 = 72 clips altogether in April and May.",
    ]


def test_natural_steps_keep_leading_whitespace_with_content():
    assert natural_steps("\nA. B.") == ["\nA. ", "B."]
    assert natural_steps("") == []
    assert natural_steps("  ") == ["  "]


@needs_data
def test_wrong_answer_is_a_nearby_other_number(task):
    items = task.load(50, seed=0).items
    for item in items:
        wrong = task.wrong_answer(item, seed=3)
        assert wrong is not None and wrong != item.answer
        assert 0 < abs(float(wrong) - float(item.answer)) <= 3
        assert float(wrong) >= 0 or float(item.answer) < 0
        assert task.wrong_answer(item, seed=3) == wrong
    assert len({task.wrong_answer(items[0], seed=s) for s in range(20)}) > 1
