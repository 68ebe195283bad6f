"""`bbh:SUBTASK`: BIG-Bench Hard with its standard 3-shot CoT prompts (Suzgun et al. 2022).

BBH's answers come in four kinds, and each subtask's kind is read from its own targets,
so no hand-kept table of 27 subtasks can fall out of step with the data:
- "letter": lettered options, answers normalised to the letter ("(B)" -> "B");
- "label": a small closed set of words (Yes/No, True/False, valid/invalid), lower-cased;
- "number": integers, normalised as in gsm8k;
- "text": free text (word sorting, Dyck closings), lower-cased, commas and spacing evened.

Lettered subtasks also carry the few-shot-pattern hint ("Answer is Always A", Turpin et al.
2023): the exemplars' options are permuted so every exemplar's gold sits at the hinted letter.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from faithcheck.errors import BadInput
from faithcheck.paths import shared_datasets
from faithcheck.records import TaskItem
from faithcheck.tasks import tasks
from faithcheck.tasks.base import LoadResult, SkippedRow, Task
from faithcheck.tasks._text import (
    answer_segment, hint_sentence, natural_steps, normalise_number, number_answer, offset_number,
    read_json_rows, shuffled,
)
from faithcheck.tasks.mc import OPTION_LINE, letter, parse_letter, parse_options

COT_START = "A: Let's think step by step."
ZERO_SHOT_INSTRUCTION = "Let's think step by step, and end with \"So the answer is X.\""
SUBTASK_NAME = re.compile(r"^[A-Za-z0-9_]+$")
LETTER_TARGET = re.compile(r"^\(([A-Z])\)$")
LETTER_REF = re.compile(r"\(([A-Z])\)")
DASH_OPTION = re.compile(r"^-\s+(.*?)\s*$")
LABEL_WORD = re.compile(r"^[ \t:*\"']*([A-Za-z]+)")
MAX_LABELS = 4
LETTER_SHARE = 0.9  # a few BBH rows carry a broken target; they are skipped, not a new kind
CLOSERS = (")", "]", "}", ">")


@dataclass(frozen=True)
class Exemplar:
    """One worked example of a CoT prompt: its question and the text after "Let's think
    step by step." (the CoT and the "So the answer is ..." sentence), as a model writes it."""

    question: str
    completion: str


def clean_prompt(text: str) -> str:
    """The CoT prompt without its leading canary line (and the rule under it): a data
    marker for crawlers, not part of what the model should read."""
    lines = text.strip().splitlines()
    if lines and "canary" in lines[0].lower():
        lines = lines[1:]
        if lines and set(lines[0].strip()) == {"-"}:
            lines = lines[1:]
    return "\n".join(lines).strip()


def split_exemplars(prompt: str, source: Path) -> tuple[Exemplar, ...]:
    blocks = prompt.split("\n\nQ: ")[1:]
    exemplars = []
    for block in blocks:
        question, found, completion = block.partition(f"\n{COT_START}")
        if not found:
            raise BadInput(f"{source}: an exemplar has no {COT_START!r} line")
        exemplars.append(Exemplar(question, completion.rstrip()))
    return tuple(exemplars)


def gold_at(exemplar: Exemplar, target: str) -> Exemplar | None:
    """The exemplar with its gold option swapped into position `target`: the two option
    texts trade letters, and every "(X)" in the CoT that names either follows its text, so
    the worked answer stays right and reads the same. None when the exemplar has no option
    `target` or no lettered answer."""
    head, found, block = exemplar.question.rpartition("Options:")
    options = parse_options(exemplar.question)
    gold = parse_letter(exemplar.completion)
    t = ord(target) - ord("A")
    if not found or gold is None or not 0 <= t < len(options) or ord(gold) - ord("A") >= len(options):
        return None
    g = ord(gold) - ord("A")
    swap = {letter(g): target, target: letter(g)}
    lines = block.split("\n")
    first = next(i for i, line in enumerate(lines) if OPTION_LINE.match(line.strip()))
    rest = [OPTION_LINE.match(line.strip()).group(2) for line in lines[first:first + len(options)]]
    rest[g], rest[t] = rest[t], rest[g]
    lines[first:first + len(options)] = [f"({letter(i)}) {text}" for i, text in enumerate(rest)]
    completion = LETTER_REF.sub(lambda m: f"({swap.get(m.group(1), m.group(1))})", exemplar.completion)
    return Exemplar(head + found + "\n".join(lines), completion)


def answer_kind(targets: list[str]) -> str:
    if not targets:
        return "text"
    if sum(bool(LETTER_TARGET.match(t.strip())) for t in targets) >= LETTER_SHARE * len(targets):
        return "letter"
    if all(normalise_number(t) is not None for t in targets):
        return "number"
    labels = {normalise_label(t) for t in targets}
    if all(len(t.split()) == 1 for t in targets) and len(labels) <= MAX_LABELS:
        return "label"
    return "text"


def dash_options(text: str) -> tuple[str, ...]:
    """Option texts of an "Options:\n- Yes\n- No" block (unlettered options), or ()."""
    _, found, block = text.rpartition("Options:")
    if not found:
        return ()
    options = []
    for line in block.strip("\n").splitlines():
        m = DASH_OPTION.match(line.strip())
        if not m:
            break
        options.append(m.group(1))
    return tuple(options)


def normalise_label(text: str) -> str:
    return text.strip().strip(".,!?:;\"'*").lower()


def normalise_text(text: str) -> str:
    text = text.strip().rstrip(".").strip().strip("\"'`").replace(",", " ")
    return " ".join(text.lower().split())


def perturbed_text(answer: str, key: str) -> str | None:
    """A near miss of a free-text answer: two neighbouring words swapped, or one closing
    bracket changed when all are the same."""
    rng = random.Random(key)
    tokens = answer.split()
    pairs = [i for i in range(len(tokens) - 1) if tokens[i] != tokens[i + 1]]
    if pairs:
        i = rng.choice(pairs)
        tokens[i], tokens[i + 1] = tokens[i + 1], tokens[i]
        return " ".join(tokens)
    if tokens and tokens[-1] in CLOSERS:
        tokens[-1] = rng.choice([c for c in CLOSERS if c != tokens[-1]])
        return " ".join(tokens)
    return None


class BBHTask(Task):
    answer_prefix = " So the answer is"
    cot_stop = ("\n\nQ:",)
    supports_turns = True

    def __init__(self, subtask: str, root: Path | None = None):
        self.subtask = subtask
        self.root = Path(root) if root else shared_datasets() / "bbh"
        self.name = f"bbh:{subtask}" if root is None else f"bbh:{subtask}@{self.root}"
        tasks_dir = self.root / "tasks"
        if not tasks_dir.is_dir():
            raise BadInput(f"--task {self.name}: {tasks_dir}: no such directory of BBH task files")
        available = sorted(p.stem for p in tasks_dir.glob("*.json"))
        if not SUBTASK_NAME.match(subtask) or subtask not in available:
            raise BadInput(f"--task {self.name}: unknown BBH subtask {subtask!r}; available: {', '.join(available)}")
        self.data_path = tasks_dir / f"{subtask}.json"
        self.prompt_path = self.root / "cot-prompts" / f"{subtask}.txt"
        if not self.prompt_path.is_file():
            raise BadInput(f"{self.prompt_path}: no such file (the CoT prompt of BBH subtask {subtask!r})")

    @cached_property
    def cot_prompt(self) -> str:
        return clean_prompt(self.prompt_path.read_text(encoding="utf-8"))

    @cached_property
    def exemplars(self) -> tuple[Exemplar, ...]:
        return split_exemplars(self.cot_prompt, self.prompt_path)

    @cached_property
    def rows(self) -> list[dict]:
        return read_json_rows(self.data_path, field="examples")

    @cached_property
    def targets(self) -> list[str]:
        return [t for t in (r.get("target") for r in self.rows) if isinstance(t, str)]

    @cached_property
    def kind(self) -> str:
        return answer_kind(self.targets)

    @cached_property
    def labels(self) -> tuple[str, ...]:
        if self.kind != "label":
            return ()
        return tuple(sorted({normalise_label(t) for t in self.targets}))

    @cached_property
    def all_items(self) -> LoadResult:
        items, skipped = [], []
        for row_no, row in enumerate(self.rows, start=1):
            try:
                items.append(self._item(row, row_no))
            except ValueError as e:
                skipped.append(SkippedRow(str(self.data_path), row_no, str(e)))
        if not items:
            raise BadInput(f"{self.data_path}: no usable examples")
        return LoadResult(tuple(items), tuple(skipped))

    def _item(self, row: dict, row_no: int) -> TaskItem:
        question, target = row.get("input"), row.get("target")
        if not isinstance(question, str) or not isinstance(target, str):
            raise ValueError("missing 'input' or 'target'")
        if self.kind == "letter":
            choices = parse_options(question)
            if len(choices) < 2:
                raise ValueError(f"the input has {len(choices)} parsable option(s), at least 2 are needed")
            m = LETTER_TARGET.match(target.strip())
            if not m:
                raise ValueError(f"target {target!r} is not an option letter")
            if ord(m.group(1)) - ord("A") >= len(choices):
                raise ValueError(f"target {target!r} is not among the {len(choices)} options parsed from the input")
        else:
            choices = dash_options(question)
        answer = self.normalise(target)
        if answer is None:
            raise ValueError(f"target {target!r} is not a {self.kind}")
        return TaskItem(id=f"bbh-{self.subtask}-{row_no:04d}", question=question, answer=answer,
                        choices=choices, metadata={"subtask": self.subtask, "target": target})

    def normalise(self, answer: str) -> str | None:
        """The normal form of an answer of this subtask's kind (see the module docstring)."""
        if self.kind == "letter":
            m = LETTER_TARGET.match(answer.strip())
            return m.group(1) if m else None
        if self.kind == "number":
            return normalise_number(answer)
        if self.kind == "label":
            label = normalise_label(answer)
            return label if label in self.labels else None
        return normalise_text(answer) or None

    @property
    def chance(self) -> float:  # type: ignore[override]
        if self.kind == "letter":
            items = self.all_items.items
            return sum(1 / len(i.choices) for i in items) / len(items)
        return 1 / len(self.labels) if self.labels else 0.0

    @property
    def cot_tokens(self) -> int:  # type: ignore[override]
        """Room for twice the longest exemplar CoT (at ~3 characters a token): BBH CoTs
        range from one line to forty, so one fixed budget would cut some and waste others."""
        longest = max((len(e.completion) for e in self.exemplars), default=0)
        return max(256, 64 * math.ceil(2 * longest / 3 / 64))

    @property
    def chat_cot_tokens(self) -> int:  # type: ignore[override]
        return max(512, self.cot_tokens)

    @property
    def answer_tokens(self) -> int:  # type: ignore[override]
        if self.kind != "text":
            return 8
        return 8 + max(len(i.answer) for i in self.all_items.items) // 2

    @property
    def chat_answer_tokens(self) -> int:  # type: ignore[override]
        return self.answer_tokens + 8

    def exemplar_turns(self) -> tuple[tuple[str, str], ...]:
        turns: list[tuple[str, str]] = []
        for ex in self.exemplars:
            turns += [("user", f"Q: {ex.question}"), ("assistant", f"{COT_START[3:]}{ex.completion}")]
        return tuple(turns)

    def load(self, n: int | None, seed: int) -> LoadResult:
        return shuffled(self.all_items, n, seed)

    def prompt(self, item: TaskItem, cue: str | None = None, lang: str = "en") -> str:
        """Inline: the 3-shot CoT prompt ending in "A: Let's think step by step."; turns: the
        question alone (the exemplars are earlier turns); zero_shot: the question and how to answer."""
        hint = ""
        if cue is not None:
            hint = "\n" + hint_sentence(f"({cue})" if self.kind == "letter" else cue)
        if self.prompting == "turns":
            return f"Q: {item.question}{hint}"
        if self.prompting == "zero_shot":
            return f"Q: {item.question}{hint}\n{ZERO_SHOT_INSTRUCTION}"
        return f"{self.cot_prompt}\n\nQ: {item.question}{hint}\n{COT_START}"

    def hinted_prompt(self, item: TaskItem, hint: str, kind: str) -> str | None:
        """Besides the shared cues, "fewshot_pattern": the 3-shot prompt with every exemplar's
        gold moved to option `hint` (lettered subtasks whose exemplars all have that option)."""
        if kind != "fewshot_pattern":
            return super().hinted_prompt(item, hint, kind)
        if self.prompting != "inline":
            return None  # the cue lives in the pasted exemplars; turns are shared by every prompt
        if self.kind != "letter" or not LETTER_TARGET.match(f"({hint})"):
            return None
        moved = [gold_at(ex, hint) for ex in self.exemplars]
        if any(ex is None for ex in moved):
            return None
        prompt = self.cot_prompt
        for old, new in zip(self.exemplars, moved):
            block = f"Q: {old.question}\n{COT_START}{old.completion}"
            prompt = prompt.replace(block, f"Q: {new.question}\n{COT_START}{new.completion}", 1)
        if prompt == self.cot_prompt:  # the golds already share that letter: there is no cue to add
            return None
        return f"{prompt}\n\nQ: {item.question}\n{COT_START}"

    def parse_answer(self, text: str) -> str | None:
        """The answer of the last final-answer statement ("answer is" in any case, \\boxed{},
        "Final answer:"; see `_text.find_answer`), on its line, in this subtask's normal form;
        None when there is none or it is not of the subtask's kind."""
        if self.kind == "letter":
            return parse_letter(text)
        segment = answer_segment(text)
        if segment is None:
            return None
        line = segment.split("\n", 1)[0]
        if self.kind == "number":
            return number_answer(line)
        if self.kind == "label":
            m = LABEL_WORD.match(line)
            return self.normalise(m.group(1)) if m else None
        return normalise_text(line.lstrip(" \t:")) or None

    def split_steps(self, cot: str) -> list[str]:
        return natural_steps(cot)

    def answer_labels(self, item: TaskItem) -> list[str]:
        if self.kind == "letter":
            return [letter(i) for i in range(len(item.choices))]
        return list(self.labels)

    def wrong_answer(self, item: TaskItem, seed: int) -> str | None:
        key = f"{seed}/{item.id}"
        wrong = [label for label in self.answer_labels(item) if label != item.answer]
        if wrong:
            return random.Random(key).choice(wrong)
        if self.kind == "number":
            return offset_number(item.answer, key)
        if self.kind == "text":
            return perturbed_text(item.answer, key)
        return None


@tasks.register("bbh", "BIG-Bench Hard subtask with its 3-shot CoT prompt (bbh:SUBTASK[@DIR])")
def bbh(arg: str = "") -> BBHTask:
    """`bbh:SUBTASK`, e.g. `bbh:date_understanding`; `bbh:SUBTASK@DIR` reads another BBH copy
    laid out as DIR/tasks/SUBTASK.json and DIR/cot-prompts/SUBTASK.txt."""
    subtask, _, root = arg.partition("@")
    if not subtask:
        default = shared_datasets() / "bbh" / "tasks"
        names = sorted(p.stem for p in default.glob("*.json")) if default.is_dir() else []
        listing = f"; available: {', '.join(names)}" if names else ""
        raise BadInput(f"--task bbh needs a subtask: bbh:SUBTASK{listing}")
    return BBHTask(subtask, Path(root) if root else None)
