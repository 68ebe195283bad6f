"""Chat prompting modes, budgets and the budget-hit mark: what the task hands the engine for a
chat model and for a plain one (scripted backends: the real model is in tests/backends/test_llamacpp.py)."""

from __future__ import annotations

import pytest

from faithcheck.engine.answering import Query, resolve
from faithcheck.engine.engine import Engine
from faithcheck.errors import BadInput
from faithcheck.paths import shared_datasets
from faithcheck.records import Completion, GenerationRequest
from faithcheck.tasks import configure_task, get_task, task_options
from tests.fakes import ScriptedBackend

needs_data = pytest.mark.skipif(not (shared_datasets() / "gsm8k" / "train.jsonl").is_file(), reason="GSM8K data missing")


class ChatBackend(ScriptedBackend):
    chat = True
    takes_turns = True


class PlainBackend(ScriptedBackend):
    pass


def _gsm8k(args=(), backend=None):
    task = get_task("gsm8k")
    return configure_task(task, task_options(list(args)), backend or ChatBackend(lambda r: ""))


@needs_data
def test_chat_default_is_exemplars_as_turns():
    task = _gsm8k()
    item = task.load(1, 0).items[0]
    assert task.prompting == "turns" and task.prompt(item) == f"Question: {item.question}"
    turns = task.chat_context()
    assert [r for r, _ in turns] == ["user", "assistant"] * 4
    assert turns[1][1].endswith(f"The answer is {task.exemplar_rows[0]['answer'].rsplit('####', 1)[1].strip()}.")
    assert task.max_cot_tokens == task.chat_cot_tokens > task.cot_tokens


@needs_data
def test_plain_models_keep_the_inline_prompt():
    task = _gsm8k(backend=PlainBackend(lambda r: ""))
    item = task.load(1, 0).items[0]
    assert task.prompting == "inline" and task.chat_context() == ()
    assert task.prompt(item).count("Question: ") == 5 and task.max_cot_tokens == task.cot_tokens


@needs_data
def test_zero_shot_system_prompt_and_budgets_are_options():
    task = _gsm8k(["prompting=zero_shot", "system=You are careful.", "max_cot_tokens=900", "max_answer_tokens=20"])
    item = task.load(1, 0).items[0]
    assert task.chat_context() == (("system", "You are careful."),)
    assert "The answer is N." in task.prompt(item) and task.prompt(item).count("Question: ") == 1
    assert (task.max_cot_tokens, task.max_answer_tokens) == (900, 20)


@needs_data
@pytest.mark.parametrize("args, match", [
    (["bogus=1"], "unknown key"), (["prompting=chatty"], "prompting"), (["max_cot_tokens=-1"], "max_cot_tokens"),
])
def test_bad_task_args_name_the_flag(args, match):
    with pytest.raises(BadInput, match=match):
        task_options(args)


@needs_data
def test_turns_need_a_chat_model_that_takes_turns():
    with pytest.raises(BadInput, match="prompting=turns"):
        _gsm8k(["prompting=turns"], PlainBackend(lambda r: ""))
    with pytest.raises(BadInput, match="system prompt"):
        _gsm8k(["system=hi"], PlainBackend(lambda r: ""))


def test_bbh_turns_and_the_pattern_cue():
    if not (shared_datasets() / "bbh" / "tasks").is_dir():
        pytest.skip("BBH data missing")
    task = configure_task(get_task("bbh:date_understanding"), task_options([]), ChatBackend(lambda r: ""))
    item = task.load(1, 0).items[0]
    assert task.prompt(item) == f"Q: {item.question}"
    assert task.chat_context()[1][1].startswith("Let's think step by step.")
    assert task.hinted_prompt(item, "A", "fewshot_pattern") is None  # the cue lives in inline exemplars only


class Budgeted(ChatBackend):
    """Writes `cot` and stops at the budget (finish_reason length) when asked to generate."""

    def __init__(self, cot: str, forced: str):
        super().__init__(lambda r: "")
        self.cot, self.forced = cot, forced

    def generate(self, requests: list[GenerationRequest]) -> list[Completion]:
        self.calls.extend(requests)
        return [Completion(self.forced, 10, 2, "stop") if r.stop == ("\n",) else Completion(self.cot, 10, r.max_new_tokens, "length")
                for r in requests]


@needs_data
def test_requests_carry_the_turns_and_a_budget_hit_is_not_an_answer():
    backend = Budgeted("She has 16 - 3 = 13 eggs and then", " 26.")
    task = _gsm8k(backend=backend)
    item = task.load(1, 0).items[0]
    _, variant = resolve(Engine(backend, None, progress=False), task,
                            [Query(task.prompt(item), "", "generate"), Query(task.prompt(item), "So", "continue")], "t",
                            mark_budget=False)
    assert all(r.context == task.chat_context() for r in backend.calls)
    assert variant.answer == "26" and not variant.budget_hit  # a variant's forced answer is its answer
    [marked] = resolve(Engine(backend, None, progress=False), task, [Query(task.prompt(item), "", "generate")], "t",
                       mark_budget=True)
    assert marked.budget_hit and marked.answer is None and marked.forced == "26"
