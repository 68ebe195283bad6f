"""`modular`: "(a + b + c + d + e) mod 23", the organisms' task, with a cue slot.

By default the cue slot holds the gold answer (a leaked answer: the setting in which
post-hoc rationalization shows), so every model is audited on identical prompts; the
hints probe fills it with a wrong answer instead.
"""

from __future__ import annotations

from pathlib import Path

from faithcheck.errors import BadInput
from faithcheck.paths import data_dir
from faithcheck.records import TaskItem
from faithcheck.tasks import modular_lang as ml
from faithcheck.tasks import tasks
from faithcheck.tasks._files import jsonl_rows
from faithcheck.tasks.base import LoadResult, SkippedRow, Task

CUE_MODES = ("gold", "none", "wrong")


class ModularTask(Task):
    name = "modular"
    chance = 1 / ml.P
    answer_prefix = ml.ANSWER_WORD
    cot_tokens = chat_cot_tokens = 64
    answer_tokens = chat_answer_tokens = 2
    languages = ml.LANGS

    def __init__(self, path: Path | None = None, cue: str = "gold"):
        if cue not in CUE_MODES:
            raise BadInput(f"--task modular: cue must be one of {', '.join(CUE_MODES)}, not {cue!r}")
        self.path = path or data_dir() / "modular" / "heldout.jsonl"
        self.cue = cue

    def load(self, n: int | None, seed: int) -> LoadResult:
        import random

        items, skipped = [], []
        for row_no, row in jsonl_rows(self.path):  # a bad line costs that row, named by its line number
            try:
                if isinstance(row, ValueError):
                    raise row
                terms = tuple(int(t) for t in row["terms"])
                if len(terms) < 2 or any(not 0 <= t < ml.P for t in terms):
                    raise ValueError(f"terms must be 2+ integers in 0..{ml.P - 1}")
                gold = sum(terms) % ml.P
                wrong = int(row.get("wrong_cue", (gold + 1) % ml.P))
                items.append(TaskItem(
                    id=str(row.get("id", f"modular-{row_no:04d}")), question=" + ".join(map(str, terms)),
                    answer=str(gold), metadata={"terms": terms, "wrong_cue": wrong},
                ))
            except (ValueError, KeyError, TypeError) as e:
                skipped.append(SkippedRow(str(self.path), row_no, f"{type(e).__name__}: {e}"))
        if not items:
            raise BadInput(f"{self.path}: no usable rows")
        random.Random(seed).shuffle(items)
        return LoadResult(tuple(items[:n] if n else items), tuple(skipped))

    def problem(self, item: TaskItem, lang: str = "en") -> ml.Problem:
        return ml.Problem(terms=tuple(item.metadata["terms"]), lang=lang)

    def prompt(self, item: TaskItem, cue: str | None = None, lang: str = "en") -> str:
        cue_value: int | None
        if cue is None:
            cue_value = {"gold": int(item.answer), "none": None, "wrong": item.metadata["wrong_cue"]}[self.cue]
        else:
            cue_value = int(cue)
        return ml.render_prompt(self.problem(item, lang), cue=cue_value)

    def parse_answer(self, text: str) -> str | None:
        return ml.parse_answer(text)

    def split_output(self, text: str) -> tuple[str, str]:
        idx = text.rfind(ml.ANSWER_WORD)
        return (text, "") if idx < 0 else (text[:idx], text[idx:])

    def split_steps(self, cot: str) -> list[str]:
        return ml.split_steps(cot)

    def filler(self, n_tokens: int) -> str:
        return " ".join([ml.FILLER_WORD] * n_tokens) + (" " if n_tokens else "")

    def wrong_answer(self, item: TaskItem, seed: int) -> str | None:
        return str(item.metadata["wrong_cue"])

    def implied_answer(self, item: TaskItem, step_index: int, planted: str, steps: tuple[str, ...] = (),
                       baseline: str | None = None) -> str | None:
        terms = item.metadata["terms"]
        return str((int(planted) + sum(terms[step_index + 2:])) % ml.P)

    def hinted_prompt(self, item: TaskItem, hint: str, kind: str) -> str | None:
        return self.prompt(item, cue=hint) if kind == "suggested" else None

    def answer_labels(self, item: TaskItem) -> list[str]:
        return [str(i) for i in range(ml.P)]


@tasks.register("modular", "(a+b+c+d+e) mod 23 with a cue slot; bundled held-out set (the organisms' task)")
def modular(arg: str = "") -> ModularTask:
    """`modular`, `modular:cue=none|gold|wrong`, or `modular:PATH` to a JSONL of {"terms": [...]}."""
    if arg.startswith("cue="):
        return ModularTask(cue=arg[4:])
    return ModularTask(path=Path(arg)) if arg else ModularTask()
