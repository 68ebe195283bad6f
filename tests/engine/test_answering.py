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


# --- follow-ups answered ahead: the forced answer after a CoT, in the same pass ----------------

class FollowingBackend(ScriptedBackend):
    """A backend that `follows_up`: right after answering a request it asks `ahead.next` for
    the call that will follow and answers it too, in the same pass (as llama.cpp does in the
    CoT's own sequence)."""

    follows_up = True

    def __init__(self, script, take=lambda req: True):
        super().__init__(script)
        self.take = take  # which follow-ups it answers ahead (the rest are left to the later call)
        self.ahead_calls: list[GenerationRequest] = []

    def generate_stream(self, requests, emit, ahead=None):
        for i, r in enumerate(requests):
            [comp] = self.generate([r])
            emit([(i, comp)])
            nxt = ahead.next(r, comp) if ahead is not None else None
            while nxt is not None and self.take(nxt):  # and the call that follows that one
                self.ahead_calls.append(nxt)
                [comp] = self.generate([nxt])
                ahead.answered(nxt, comp)
                nxt = ahead.next(nxt, comp)


def _cot_script(r):
    """Item k writes a CoT that states its answer when k is even, and none when k is odd;
    forced, it answers 10 + k."""
    k = int(r.prompt.split()[-1])
    if r.prefill.endswith("The answer is"):
        return f" {10 + k}."
    return f" Step {k}. The answer is {10 + k}." if k % 2 == 0 else f" Step {k}, and more steps."


def test_forced_answers_are_answered_ahead_by_a_backend_that_follows_up(tmp_path):
    from faithcheck.engine.cache import CallCache

    task, _ = gsm8k()
    queries = [Query(f"Item {k}", "", "generate") for k in range(6)]
    plain = ScriptedBackend(_cot_script)
    want = resolve(Engine(plain, None, progress=False), task, queries, "t")
    following = FollowingBackend(_cot_script)
    engine = Engine(following, CallCache(tmp_path / "calls.sqlite"), progress=False)
    got = resolve(engine, task, queries, "t")
    assert [(a.cot, a.answer, a.written) for a in got] == [(a.cot, a.answer, a.written) for a in want]
    assert [a.answer for a in got] == [str(10 + k) for k in range(6)]
    # the three forced answers (odd items) were answered in the first pass, never sent again
    assert len(following.ahead_calls) == 3 and len(following.calls) == len(plain.calls) == 9
    assert len({c.key() for c in following.calls}) == 9  # each once: the later call sent nothing
    stats = engine.stats
    assert (stats.model_calls, stats.answered_ahead, stats.cache_hits, stats.saved_calls) == (9, 3, 0, 9)
    # saved like any other call: a rerun on the same cache computes nothing
    again = FollowingBackend(_cot_script)
    rerun = Engine(again, CallCache(tmp_path / "calls.sqlite"), progress=False)
    assert [a.answer for a in resolve(rerun, task, queries, "t")] == [a.answer for a in want]
    assert again.calls == [] and rerun.stats.cache_hits == 9


def test_a_follow_up_the_backend_leaves_is_sent_in_the_later_call():
    task, _ = gsm8k()
    queries = [Query(f"Item {k}", "", "generate") for k in range(4)]
    following = FollowingBackend(_cot_script, take=lambda req: req.prompt != "Item 1")
    engine = Engine(following, None, progress=False)
    got = resolve(engine, task, queries, "t")
    assert [a.answer for a in got] == ["10", "11", "12", "13"]
    assert [c.prompt for c in following.ahead_calls] == ["Item 3"]
    assert [c.prompt for c in following.calls[4:]] == ["Item 3", "Item 1"]  # ahead in pass 1; the left one in pass 2
    assert engine.stats.model_calls == 6 and engine.stats.answered_ahead == 1


class FollowingBudgetedBackend(FollowingBackend, BudgetedBackend):
    """BudgetedBackend that follows up as llama.cpp does: after each call it answers the call
    that follows it, and the one that follows that (a forced answer, then its continuation)."""


def test_a_cut_forced_answer_is_continued_ahead_too():
    """A CoT without an answer, its forced answer cut by the budget, that answer's continuation;
    and a forced answer (mode answer) cut by the budget: every later call answered in the first
    pass, with the answers the plain two-stage path reads."""
    task, prefill = gsm8k()
    expression = " " + " ".join(["2 +"] * 10) + " 2 = 22"

    def script(r):
        if r.max_new_tokens > task.max_answer_tokens:
            return "First 3 * 4 = 12."
        done = r.prefill[r.prefill.rindex(task.answer_prefix.strip()) + len(task.answer_prefix.strip()):]
        return expression[len(done):]

    queries = [Query("Q?", "", "generate"), Query("R?", prefill, "answer")]
    plain = BudgetedBackend(script)
    want = resolve(Engine(plain, None, progress=False), task, queries, "t")
    assert [a.answer for a in want] == ["22", "22"] and len(plain.calls) == 5
    following = FollowingBudgetedBackend(script)
    engine = Engine(following, None, progress=False)
    got = resolve(engine, task, queries, "t")
    assert [(a.cot, a.answer, a.written) for a in got] == [(a.cot, a.answer, a.written) for a in want]
    # the forced answer and both continuations were answered in the first pass, none sent again
    assert len(following.ahead_calls) == 3
    assert sorted(c.key() for c in following.calls) == sorted(c.key() for c in plain.calls)
    assert engine.stats.answered_ahead == 3 and engine.stats.model_calls == 5
