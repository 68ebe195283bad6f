"""Forced answers cut by their token budget: continued once, read from the whole."""

from __future__ import annotations

from faithcheck.engine.answering import Query, resolve
from faithcheck.engine.engine import Engine
from faithcheck.records import Completion, GenerationRequest
from faithcheck.tasks.gsm8k import GSM8KTask
from tests.fakes import ScriptedBackend


class BudgetedBackend(ScriptedBackend):
    """Writes the script's words, cut at the request's budget (one word = one token here)."""

    def generate(self, requests: list[GenerationRequest]) -> list[Completion]:
        out = []
        for r in requests:
            self.calls.append(r)
            if self.fail is not None and self.fail(r):
                out.append(Completion("", error="scripted failure"))
                continue
            words = self.script(r).split(" ")
            cut = words[: r.max_new_tokens + 1]  # leading "" of " 2 * 12" is not a token
            text = " ".join(cut)
            out.append(Completion(text, 10, len(cut) - 1, "length" if len(words) > len(cut) else "stop"))
        return out


def gsm8k():
    """GSM8K's parser and prompts over a one-row file: no data set needed."""
    import json
    import tempfile
    from pathlib import Path

    path = Path(tempfile.mkdtemp()) / "one.jsonl"
    path.write_text(json.dumps({"question": "1+1?", "answer": "#### 2"}) + "\n")
    task = GSM8KTask(path)
    return task, task.force_answer("Step one. Step two.")


def test_an_expression_cut_by_the_budget_is_finished_and_read():
    task, prefill = gsm8k()
    budget = task.max_answer_tokens
    pairs = budget // 2 + 2  # 2 words each: longer than one budget, shorter than two
    expression = " " + " ".join(["1 +"] * pairs) + " 1 = " + str(pairs + 1)

    def script(r):
        done = r.prefill[len(prefill):]
        return expression[len(done):]

    backend = BudgetedBackend(script)
    [got] = resolve(Engine(backend, None, progress=False), task, [Query("Q?", prefill, "answer")], "t")
    assert got.answer == str(pairs + 1) and not got.failed
    assert len(backend.calls) == 2
    first, second = backend.calls
    assert second.prefill.startswith(prefill) and second.prefill != prefill
    assert second.max_new_tokens == first.max_new_tokens and second.stop == first.stop


def test_a_readable_answer_that_hit_the_budget_is_not_continued():
    task, prefill = gsm8k()
    backend = BudgetedBackend(lambda r: " 42 " + " ".join(["apples"] * 40))
    [got] = resolve(Engine(backend, None, progress=False), task, [Query("Q?", prefill, "answer")], "t")
    assert got.answer == "42" and len(backend.calls) == 1


def test_a_failed_continuation_leaves_the_answer_unparseable_not_failed():
    task, prefill = gsm8k()
    backend = BudgetedBackend(lambda r: " " + " ".join(["2 *"] * 40) + " 2 = 8",
                              fail=lambda r: r.prefill != prefill)
    [got] = resolve(Engine(backend, None, progress=False), task, [Query("Q?", prefill, "answer")], "t")
    assert got.answer is None and not got.failed and len(backend.calls) == 2


def test_the_forced_answer_after_a_cot_is_continued_too():
    """Mode generate: the CoT states no answer, the forced answer is cut, then continued."""
    task, _ = gsm8k()

    def script(r):
        if r.max_new_tokens > task.max_answer_tokens:
            return "First 3 * 4 = 12."
        text = " " + " ".join(["2 +"] * 10) + " 2 = 22"
        done = r.prefill[r.prefill.rindex(task.answer_prefix.strip()) + len(task.answer_prefix.strip()):]
        return text[len(done):]

    backend = BudgetedBackend(script)
    [got] = resolve(Engine(backend, None, progress=False), task, [Query("Q?", "", "generate")], "t")
    assert got.answer == "22", [c.prefill[-60:] for c in backend.calls]
    assert len(backend.calls) == 3
