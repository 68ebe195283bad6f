"""`mc:PATH`: any multiple-choice set a user brings, as JSONL or CSV.

User files are often hand-made, so a bad row is skipped and reported with its row number
rather than failing the run; only a file with nothing usable in it is an error. The
lettered-option helpers here are shared with `bbh`, whose questions use the same format.
"""

from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path
from string import ascii_uppercase
from typing import Any

from faithcheck.errors import BadInput
from faithcheck.records import TaskItem
from faithcheck.tasks import tasks
from faithcheck.tasks._files import csv_rows, jsonl_rows
from faithcheck.tasks.base import LoadResult, SkippedRow, Task
from faithcheck.tasks._text import answer_segment, hint_sentence, natural_steps, shuffled

CSV_CHOICE_SEP = "|"
OPTION_LINE = re.compile(r"^\(([A-Z])\)\s?(.*)$")
# "(B)", "B", "B." or "B)" at the start of an answer; "Bob" is not a letter answer.
LETTER_ANSWER = re.compile(r"^[ \t:*\-]*(?:[Oo]ption\s+)?(?:\(([A-Z])\)|([A-Z])(?![\w'’]))")
LETTER_GOLD = re.compile(r"^\(?([A-Za-z])\)?$")


def letter(index: int) -> str:
    return ascii_uppercase[index]


def format_options(choices: tuple[str, ...] | list[str]) -> str:
    return "\n".join(f"({letter(i)}) {c}" for i, c in enumerate(choices))


def parse_options(text: str) -> tuple[str, ...]:
    """Option texts of an "Options:\\n(A) ...\\n(B) ..." block, in letter order; () when
    the text has no such block. Lines after the last option are not options."""
    _, found, block = text.rpartition("Options:")
    if not found:
        return ()
    options: list[str] = []
    for line in block.strip("\n").splitlines():
        m = OPTION_LINE.match(line.strip())
        if not m or m.group(1) != letter(len(options)):
            break
        options.append(m.group(2).strip())
    return tuple(options)


def parse_letter(text: str) -> str | None:
    """The option letter after the last "answer is" in `text`, or None."""
    segment = answer_segment(text)
    if segment is None:
        return None
    m = LETTER_ANSWER.match(segment)
    return (m.group(1) or m.group(2)) if m else None


def gold_letter(answer: Any, choices: tuple[str, ...]) -> str:
    """The letter of a gold answer given as a letter ("B", "(b)"), a 0-based index (2, "2";
    Hugging Face's MMLU) or a choice's exact text. A single letter is read as a letter: that
    is how such files almost always mean it. A number that is both a choice's text and an
    index of another choice is ambiguous and refused."""
    if isinstance(answer, bool):
        raise ValueError(f"answer {answer!r} is neither a letter, an index nor a choice")
    if isinstance(answer, int):
        return _index_letter(answer, choices)
    answer = str(answer).strip()
    m = LETTER_GOLD.match(answer)
    if m:
        index = ascii_uppercase.index(m.group(1).upper())
        if index >= len(choices):
            raise ValueError(f"answer {answer!r} is past the last of {len(choices)} choices")
        return letter(index)
    matches = [i for i, c in enumerate(choices) if c == answer]
    if len(matches) > 1:
        raise ValueError(f"answer {answer!r} matches several choices")
    if re.fullmatch(r"\d+", answer):
        index = int(answer)
        if matches and index < len(choices) and index != matches[0]:
            raise ValueError(f"answer {answer!r} is ambiguous: the text of choice {letter(matches[0])} "
                             f"and the index of choice {letter(index)}")
        return letter(matches[0]) if matches else _index_letter(index, choices)
    if not matches:
        raise ValueError(f"answer {answer!r} is neither a letter, an index nor one of the choices")
    return letter(matches[0])


def _index_letter(index: int, choices: tuple[str, ...]) -> str:
    if not 0 <= index < len(choices):
        raise ValueError(f"answer index {index} is outside 0..{len(choices) - 1} (indices count from 0)")
    return letter(index)


def lettered_options(row: dict[str, Any]) -> list[Any] | None:
    """The options of a row laid out as lettered columns ("A", "B", ... as in MMLU CSVs), in
    letter order, trailing empty ones dropped (a file's E column is empty for 4-option rows);
    None when the row has no "A" column."""
    keys = {k.strip().upper(): k for k in row if isinstance(k, str) and len(k.strip()) == 1}
    if "A" not in keys:
        return None
    options = []
    for ch in ascii_uppercase:
        if ch not in keys:
            break
        options.append(row[keys[ch]])
    while options and options[-1] in (None, ""):
        options.pop()
    return options


def mc_item(row: Any, row_no: int, id_prefix: str, split_choices: bool) -> TaskItem:
    """One item from a parsed row; ValueError (with the reason) when the row is malformed.
    Options come from a `choices` list (in CSV: `|`-separated) or from lettered columns."""
    if not isinstance(row, dict):
        raise ValueError("row is not an object")
    row = {(k.strip().lower() if isinstance(k, str) and len(k.strip()) > 1 else k): v for k, v in row.items()}
    raw = row.get("choices")
    if raw in (None, ""):
        raw = lettered_options(row)
    missing = [k for k, v in (("question", row.get("question")), ("choices (or columns A, B, ...)", raw),
                              ("answer", row.get("answer"))) if v in (None, "")]
    if missing:
        raise ValueError(f"missing field(s): {', '.join(missing)}")
    question = str(row["question"]).strip()
    if split_choices and isinstance(raw, str):
        raw = raw.split(CSV_CHOICE_SEP)
    if not isinstance(raw, list):
        raise ValueError("'choices' must be a list")
    choices = tuple(str(c).strip() for c in raw)
    if len(choices) < 2:
        raise ValueError(f"needs at least 2 choices, has {len(choices)}")
    if len(choices) > len(ascii_uppercase):
        raise ValueError(f"has {len(choices)} choices; at most {len(ascii_uppercase)} can be lettered")
    if any(not c for c in choices):
        raise ValueError("a choice is empty")
    answer = gold_letter(row["answer"], choices)
    item_id = str(row["id"]).strip() if row.get("id") not in (None, "") else f"{id_prefix}-{row_no:04d}"
    return TaskItem(id=item_id, question=question, answer=answer, choices=choices)


def headerless_row(record: list[str]) -> dict[str, Any]:
    """A CSV row without a header, in the original MMLU layout: question, the options, answer."""
    return {"question": record[0], "choices": list(record[1:-1]), "answer": record[-1]}


class MCTask(Task):
    answer_prefix = " So the answer is"
    cot_tokens = 256
    answer_tokens = 6
    cot_stop = ("\n\nQuestion:", "\nQuestion:")

    def __init__(self, path: Path):
        self.path = Path(path)
        self.name = f"mc:{self.path}"
        if self.path.is_dir():
            raise BadInput(f"--task mc:{self.path}: is a directory; give a .jsonl or .csv file")
        if self.path.suffix.lower() not in (".jsonl", ".csv"):
            raise BadInput(f"--task mc:{self.path}: the file must end in .jsonl or .csv")
        if not self.path.is_file():
            raise BadInput(f"{self.path}: no such file")

    def _rows(self) -> list[tuple[int, Any]]:
        """(1-based line number, parsed row or the reason it cannot be parsed), read by
        tasks/_files.py: a bad row (bad JSON, bytes that are not UTF-8, an oversized field)
        costs that row, not the file, and a BOM is dropped."""
        if self.path.suffix.lower() == ".jsonl":
            return list(jsonl_rows(self.path, "--task mc:"))
        try:
            _, records = csv_rows(self.path, "--task mc:", header=False)
        except ValueError as e:
            raise BadInput(f"--task mc:{self.path}: {e}") from None
        rows: list[tuple[int, Any]] = []
        lead = next((k for k, (_, r) in enumerate(records) if not isinstance(r, ValueError)), None)
        first = records[lead][1] if lead is not None else []
        # a header names a `question` column; without one the file is in MMLU's original
        # layout (question, options..., answer) and its first line is already a row
        header = [h.strip() for h in first] if "question" in (h.strip().lower() for h in first) else None
        width, what = (len(header), "the header") if header else (len(first), "the first row")
        for k, (row_no, record) in enumerate(records):
            if isinstance(record, ValueError):
                rows.append((row_no, record))
            elif header and k == lead:
                continue
            elif len(record) != width:
                rows.append((row_no, ValueError(f"has {len(record)} fields, {what} has {width}")))
            elif header:
                rows.append((row_no, dict(zip(header, record))))
            elif width < 4:
                rows.append((row_no, ValueError(f"has {width} fields; a file without a header needs "
                                                "question, at least 2 options, answer")))
            else:
                rows.append((row_no, headerless_row(record)))
        return rows

    @cached_property
    def all_items(self) -> LoadResult:
        items, skipped, seen = [], [], set()
        split_choices = self.path.suffix.lower() == ".csv"
        for row_no, row in self._rows():
            try:
                if isinstance(row, ValueError):
                    raise row
                item = mc_item(row, row_no, "mc", split_choices)
                if item.id in seen:
                    raise ValueError(f"duplicate id {item.id!r}")
            except ValueError as e:
                skipped.append(SkippedRow(str(self.path), row_no, str(e)))
                continue
            seen.add(item.id)
            items.append(item)
        if not items:
            reasons = "; ".join(str(s) for s in skipped[:3])
            raise BadInput(f"{self.path}: no usable rows" + (f" ({reasons})" if reasons else ""))
        return LoadResult(tuple(items), tuple(skipped))

    @property
    def chance(self) -> float:  # type: ignore[override]
        items = self.all_items.items
        return sum(1 / len(i.choices) for i in items) / len(items)

    def load(self, n: int | None, seed: int) -> LoadResult:
        return shuffled(self.all_items, n, seed)

    def prompt(self, item: TaskItem, cue: str | None = None, lang: str = "en") -> str:
        hint = "" if cue is None else f"\n{hint_sentence(f'({cue})')}"
        return (f"Question: {item.question}\nOptions:\n{format_options(item.choices)}{hint}\n"
                "Answer: Let's think step by step.")

    def parse_answer(self, text: str) -> str | None:
        return parse_letter(text)

    def split_steps(self, cot: str) -> list[str]:
        return natural_steps(cot)

    def answer_labels(self, item: TaskItem) -> list[str]:
        return [letter(i) for i in range(len(item.choices))]


@tasks.register("mc", "generic multiple choice from a JSONL or CSV file (mc:PATH)")
def mc(arg: str = "") -> MCTask:
    """`mc:PATH` to a .jsonl or .csv with a question, its options (a `choices` list, in CSV
    "a|b|c", or lettered columns A, B, ... as in MMLU, with or without a header row), the
    answer (a letter, a 0-based index or a choice's text) and an optional id."""
    if not arg:
        raise BadInput("--task mc needs a file: mc:PATH (.jsonl or .csv)")
    return MCTask(Path(arg))
