"""Data files as they come: a BOM, a bad byte, a huge field, U+2028 inside a JSON string.

Each case is checked through the tasks that read such files (mc:, gsm8k, modular), against
line numbers counted by hand from the bytes written."""

from __future__ import annotations

import json

import pytest

from faithcheck.errors import BadInput
from faithcheck.tasks import get_task
from faithcheck.tasks._files import FIELD_LIMIT, csv_rows, jsonl_rows

BOM = b"\xef\xbb\xbf"


def mc_row(i: int, question: str | None = None) -> dict:
    return {"id": f"q{i}", "question": question or f"Which is letter {i}?", "choices": ["a", "b", "c"], "answer": "B"}


def test_a_bom_sticks_to_nothing(tmp_path):
    jl = tmp_path / "bom.jsonl"
    jl.write_bytes(BOM + "\n".join(json.dumps(mc_row(i)) for i in range(3)).encode())
    loaded = get_task(f"mc:{jl}").load(None, 0)
    assert sorted(i.id for i in loaded.items) == ["q0", "q1", "q2"] and loaded.skipped == ()
    with_id = tmp_path / "bom_id.csv"  # a leading `id` column must not become "\ufeffid"
    with_id.write_bytes(BOM + b"id,question,choices,answer\nx1,What?,a|b,A\nx2,Why?,a|b,B\n")
    assert sorted(i.id for i in get_task(f"mc:{with_id}").load(None, 0).items) == ["x1", "x2"]
    question_first = tmp_path / "bom_q.csv"  # nor hide a header whose first column is `question`
    question_first.write_bytes(BOM + b"question,choices,answer\nWhat?,a|b,A\n")
    (item,) = get_task(f"mc:{question_first}").load(None, 0).items
    assert item.question == "What?"


def test_a_bad_byte_costs_its_row_only_and_names_it(tmp_path):
    path = tmp_path / "bytes.jsonl"
    lines = [json.dumps(mc_row(i)).encode() for i in range(4)]
    lines[2] = lines[2].replace(b"letter", b"lett\xffer")
    path.write_bytes(b"\n".join(lines))
    loaded = get_task(f"mc:{path}").load(None, 0)
    assert sorted(i.id for i in loaded.items) == ["q0", "q1", "q3"]
    (skip,) = loaded.skipped
    assert skip.row == 3 and "not UTF-8" in skip.reason and "0xff" in skip.reason
    csv_path = tmp_path / "bytes.csv"
    csv_path.write_bytes(b"question,choices,answer\nok one,a|b,A\nbad \xfe,a|b,A\nok two,a|b,B\n")
    loaded = get_task(f"mc:{csv_path}").load(None, 0)
    assert sorted(i.question for i in loaded.items) == ["ok one", "ok two"]
    assert [(s.row, "not UTF-8" in s.reason) for s in loaded.skipped] == [(3, True)]


def test_large_fields_load_up_to_the_limit(tmp_path):
    big = "x" * 200_000  # over csv's default 128 KiB field limit
    path = tmp_path / "big.csv"
    path.write_text(f"question,choices,answer\n{big}?,a|b,A\nsmall?,a|b,B\n", encoding="utf-8")
    loaded = get_task(f"mc:{path}").load(None, 0)
    assert sorted(len(i.question) for i in loaded.items) == [6, len(big) + 1]
    too_big = tmp_path / "too_big.csv"
    too_big.write_text(f"question,choices,answer\n{'y' * (FIELD_LIMIT + 1)},a|b,A\nsmall?,a|b,B\n", encoding="utf-8")
    loaded = get_task(f"mc:{too_big}").load(None, 0)
    assert [i.question for i in loaded.items] == ["small?"]
    assert loaded.skipped[0].row == 2 and str(FIELD_LIMIT) in loaded.skipped[0].reason


def test_jsonl_splits_on_newline_only_and_rows_are_line_numbers(tmp_path):
    path = tmp_path / "u2028.jsonl"
    rows = [mc_row(0, "first\u2028still the first question?"), mc_row(1), "not json", mc_row(3, "para\u2029graph?")]
    text = "\n".join(r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in rows)
    path.write_text(text.replace("\n", "\n\n", 1) + "\r\n", encoding="utf-8")  # a blank line after the first row
    loaded = get_task(f"mc:{path}").load(None, 0)
    by_id = {i.id: i for i in loaded.items}
    assert by_id["q0"].question == "first\u2028still the first question?" and "q3" in by_id
    assert [(s.row, "bad JSON" in s.reason) for s in loaded.skipped] == [(4, True)]  # line 4 counted by hand


def test_gsm8k_and_modular_report_bad_rows_by_line_and_load_the_rest(tmp_path):
    gsm = tmp_path / "gsm" / "test.jsonl"
    gsm.parent.mkdir()
    good = {"question": "Tom has 2 apples and buys 3. How many?", "answer": "2 + 3 = 5\n#### 5"}
    gsm.write_bytes(BOM + json.dumps(good).encode() + b"\n{\"question\": \"\xff\"}\n" + json.dumps(good).encode())
    loaded = get_task(f"gsm8k:{gsm}").load(None, 0)
    assert len(loaded.items) == 2 and [s.row for s in loaded.skipped] == [2]
    assert sorted(i.id for i in loaded.items) == ["gsm8k-0001", "gsm8k-0003"]
    from faithcheck.tasks.modular import ModularTask

    mod = tmp_path / "mod.jsonl"
    mod.write_bytes(BOM + b'{"terms": [1, 2]}\n\xff\n{"terms": [3, 4]}\n')
    loaded = ModularTask(mod).load(None, 0)
    assert sorted(i.answer for i in loaded.items) == ["3", "7"] and [s.row for s in loaded.skipped] == [2]


def test_a_directory_is_not_a_data_file(tmp_path):
    with pytest.raises(BadInput, match="is a directory"):
        get_task(f"mc:{tmp_path}")
    with pytest.raises(BadInput, match="is a directory"):
        list(jsonl_rows(tmp_path))
    with pytest.raises(BadInput, match="no such file"):
        csv_rows(tmp_path / "absent.csv")
