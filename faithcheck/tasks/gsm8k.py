"""`gsm8k`: grade-school maths word problems with a few-shot worked-solution prompt.

GSM8K is the standard natural-language CoT benchmark: its answers are single numbers,
so an answer can be checked exactly whatever the CoT looks like. This module also owns
the gold-solution handling; the text helpers it shares with `bbh` and `mc` (numbers, the
final-answer statement, steps) live in `tasks/_text.py`.
"""

from __future__ import annotations

import json
import re
from functools import cached_property
from pathlib import Path
from typing import Any

from faithcheck.errors import BadInput
from faithcheck.paths import shared_datasets
from faithcheck.records import TaskItem
from faithcheck.tasks import tasks
from faithcheck.tasks._text import (  # re-exported: bbh, mc and tests import them from here
    NUMBER, answer_segment, find_answer, fraction_text, hint_sentence, natural_steps, normalise_number,
    number_answer, offset_number, read_json_rows, shuffled,
)
from faithcheck.tasks._files import jsonl_rows
from faithcheck.tasks.base import LoadResult, SkippedRow, Task

N_EXEMPLARS = 4
ZERO_SHOT_INSTRUCTION = "Solve it step by step, and end with \"The answer is N.\" where N is a number."
GOLD_MARK = "####"
CALCULATOR_NOTE = re.compile(r"<<[^<>]*>>")
__all__ = [
    "GSM8KTask", "NUMBER", "answer_segment", "exemplar_text", "hint_sentence", "natural_steps", "normalise_number",
    "offset_number", "read_json_rows", "shuffled", "worked_solution",
]


def worked_solution(row: dict[str, Any]) -> tuple[str, str]:
    """(CoT, normalised answer) from a GSM8K row's `answer` field: calculator notes removed,
    lines joined into sentences. It is how a careful person writes the solution, which
    makes it both the few-shot exemplar text and natural CoT for probe tests."""
    solution, mark, gold = str(row["answer"]).rpartition(GOLD_MARK)
    if not mark:
        raise ValueError(f"answer has no {GOLD_MARK!r} line")
    answer = normalise_number(gold)
    if answer is None:
        raise ValueError(f"gold {gold.strip()!r} after {GOLD_MARK!r} is not a number")
    sentences = []
    for line in CALCULATOR_NOTE.sub("", solution).splitlines():
        line = " ".join(line.split())
        if line:
            sentences.append(line if line[-1] in ".!?:" else line + ".")
    return " ".join(sentences), answer


def exemplar_text(row: dict[str, Any]) -> str:
    cot, answer = worked_solution(row)
    return f"Question: {row['question']}\nAnswer: {cot} The answer is {answer}.\n\n"


class GSM8KTask(Task):
    chance = 0.0
    supports_turns = True
    answer_prefix = " The answer is"
    cot_tokens = 256
    answer_tokens = 12
    cot_stop = ("\n\nQuestion:", "\nQuestion:")

    def __init__(self, path: Path | None = None):
        self.path = Path(path) if path else shared_datasets() / "gsm8k" / "test.jsonl"
        self.name = "gsm8k" if path is None else f"gsm8k:{self.path}"
        if not self.path.is_file():
            raise BadInput(f"{self.path}: no such file (the gsm8k task reads a JSONL of question/answer rows)")
        self.train_path = self.path.parent / "train.jsonl"

    @cached_property
    def exemplar_rows(self) -> tuple[dict[str, Any], ...]:
        """The first rows of train.jsonl beside the data file (none: zero-shot). Read with
        plain json because only a few lines of a large file are needed."""
        if not self.train_path.is_file():
            return ()
        rows = []
        with self.train_path.open(encoding="utf-8") as f:
            for line_no, line in enumerate(f, start=1):
                if len(rows) == N_EXEMPLARS:
                    break
                try:
                    row = json.loads(line)
                    worked_solution(row)
                    rows.append(row)
                except (ValueError, KeyError, TypeError) as e:
                    raise BadInput(f"{self.train_path}: row {line_no}: unusable exemplar ({e})") from None
        return tuple(rows)

    @cached_property
    def few_shot(self) -> str:
        return "".join(exemplar_text(row) for row in self.exemplar_rows)

    @cached_property
    def all_items(self) -> LoadResult:
        same_file = self.train_path.is_file() and self.path.resolve() == self.train_path.resolve()
        first_row = N_EXEMPLARS + 1 if same_file else 1  # never test on a prompt's own exemplar
        items, skipped = [], []
        for row_no, row in jsonl_rows(self.path):  # a bad line costs that row, named by its line number
            if row_no < first_row:
                continue
            try:
                if isinstance(row, ValueError):
                    raise row
                if not isinstance(row, dict):
                    raise ValueError("not a JSON object")
                question = row.get("question")
                if not isinstance(question, str) or not question.strip():
                    raise ValueError("missing 'question'")
                if row.get("answer") is None:
                    raise ValueError("missing 'answer'")
                cot, answer = worked_solution(row)
            except ValueError as e:
                skipped.append(SkippedRow(str(self.path), row_no, str(e)))
                continue
            items.append(TaskItem(
                id=f"gsm8k-{row_no:04d}", question=question.strip(), answer=answer,
                metadata={"reference_cot": cot},
            ))
        if not items:
            raise BadInput(f"{self.path}: no usable rows")
        return LoadResult(tuple(items), tuple(skipped))

    def load(self, n: int | None, seed: int) -> LoadResult:
        return shuffled(self.all_items, n, seed)

    def prompt(self, item: TaskItem, cue: str | None = None, lang: str = "en") -> str:
        """Inline: the 4-shot prompt ending in "Answer:"; turns: the question alone (the
        exemplars are earlier turns); zero_shot: the question and how to state the answer."""
        question = item.question if cue is None else f"{item.question} {hint_sentence(cue)}"
        if self.prompting == "turns":
            return f"Question: {question}"
        if self.prompting == "zero_shot":
            return f"Question: {question}\n{ZERO_SHOT_INSTRUCTION}"
        return f"{self.few_shot}Question: {question}\nAnswer:"

    def exemplar_turns(self) -> tuple[tuple[str, str], ...]:
        turns: list[tuple[str, str]] = []
        for row in self.exemplar_rows:
            cot, answer = worked_solution(row)
            turns += [("user", f"Question: {row['question']}"), ("assistant", f"{cot} The answer is {answer}.")]
        return tuple(turns)

    def parse_answer(self, text: str) -> str | None:
        """The number of the last final-answer statement ("answer is", \\boxed{}, "Final
        answer:", "####"; an expression there is evaluated or refused); without one, the last
        number in the text. None when the statement gives no number (a forced answer that
        was never given must not borrow a number from the CoT)."""
        found = find_answer(text)
        if found is not None:
            return number_answer(found.segment, found.open_end)
        numbers = NUMBER.findall(text)
        return normalise_number(numbers[-1]) if numbers else None

    def split_steps(self, cot: str) -> list[str]:
        return natural_steps(cot)

    def wrong_answer(self, item: TaskItem, seed: int) -> str | None:
        return offset_number(item.answer, f"{seed}/{item.id}")

    def implied_answer(self, item: TaskItem, step_index: int, planted: str, steps: tuple[str, ...] = (),
                       baseline: str | None = None) -> str | None:
        """The answer the CoT implies once `planted` replaces the result of the calculation at
        `step_index`: the change carried through the later calculations that use it
        (`rules.carried_values`). None when it never reaches the baseline's answer."""
        from decimal import Decimal
        from fractions import Fraction

        from faithcheck.rewriters.rules import carried_values, last_expression

        if not steps or baseline is None or not 0 <= step_index < len(steps):
            return None
        e = last_expression(steps[step_index])
        if e is None:
            return None
        changed = carried_values(steps, step_index, e.stated, Fraction(Decimal(planted)))
        value = changed.get(Fraction(Decimal(baseline)))
        return None if value is None else fraction_text(value)


@tasks.register("gsm8k", "grade-school maths word problems (GSM8K test set), 4-shot worked solutions")
def gsm8k(arg: str = "") -> GSM8KTask:
    """`gsm8k`, or `gsm8k:PATH` to a JSONL of {"question", "answer": "...\\n#### N"} rows."""
    return GSM8KTask(Path(arg)) if arg else GSM8KTask()
