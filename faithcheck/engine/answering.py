"""Turn (prompt, prefill, mode) into an answer, through the engine, in two batched stages.

Stage 1 asks for the forced answer (mode "answer") or lets the model write (modes
"continue" and "generate"). Stage 2 forces an answer after whatever CoT was written when
stage 1 produced none. The baseline trace and every probe variant go through here.

A CoT that ran out of its token budget before stating an answer is marked `budget_hit`:
the answer forced after it is a guess mid-reasoning, so it is kept in `forced` for the
record but not returned as the model's answer.

A forced answer that runs out of its own (short) budget before it can be read, typically an
expression cut mid-way ("The answer is 2 * 12 + 2 * 8 + 2 *"), is continued once with the
same budget (`extend_cut_answers`), so the model finishes what it was writing and the answer
is read from the whole; one still unreadable is unparseable, as before.

Both later calls (the forced answer after a CoT, the continuation of a cut answer) are named
to the engine as follow-ups (`follow_up`): a backend that `follows_up` (llama.cpp) answers
them in the earlier call, in the sequence of the call they follow, and the later stage finds
them answered.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from faithcheck.engine.engine import Engine
from faithcheck.records import Completion, GenerationRequest
from faithcheck.tasks._text import think_closed
from faithcheck.tasks.base import Task

ANSWER_STOP = ("\n",)


@dataclass(frozen=True)
class Query:
    prompt: str
    prefill: str
    mode: str
    temperature: float = 0.0
    seed: int = 0


@dataclass(frozen=True)
class Answered:
    cot: str
    answer: str | None
    written: str  # everything the model wrote after the prefill, across both stages
    failed: bool
    error: str | None = None
    budget_hit: bool = False  # the CoT hit the task's token budget before stating an answer
    forced: str | None = None  # with budget_hit: the answer forced after the cut CoT (not scored)


def answer_request(task: Task, prompt: str, prefill: str, q: Query) -> GenerationRequest:
    return GenerationRequest(prompt, prefill, task.max_answer_tokens, ANSWER_STOP, q.temperature, q.seed,
                             task.chat_context())


def forced_after(task: Task, request: GenerationRequest, comp: Completion) -> tuple[GenerationRequest, str] | None:
    """(the forced-answer request, the CoT) that follows a CoT `request` whose completion
    states no answer, or None when it states one."""
    cot, rest = task.split_output(request.prefill + comp.text)
    if rest and task.parse_answer(rest) is not None:
        return None
    # after a think block the answer is forced outside it, the block closed as the model would
    closed = think_closed(request.prefill + comp.text, task.think_tags)
    forced = task.force_answer(cot) if closed is None else closed + task.answer_prefix.lstrip()
    return GenerationRequest(request.prompt, forced, task.max_answer_tokens, ANSWER_STOP, request.temperature,
                             request.seed, task.chat_context()), cot


def resolve(engine: Engine, task: Task, queries: list[Query], desc: str, mark_budget: bool = False) -> list[Answered]:
    """Answers to `queries` in order. `mark_budget`: a generated CoT that hit its budget without
    an answer gets `budget_hit` and no answer (the baseline); otherwise its forced answer counts."""
    context = task.chat_context()
    first = []
    for q in queries:
        if q.mode == "answer":
            first.append(answer_request(task, q.prompt, q.prefill, q))
        else:
            first.append(GenerationRequest(q.prompt, q.prefill, task.max_cot_tokens + task.max_answer_tokens,
                                           task.cot_stop, q.temperature, q.seed, context))
    writes = {first[i].key() for i, q in enumerate(queries) if q.mode != "answer"}
    forced = {first[i].key() for i, q in enumerate(queries) if q.mode == "answer"}

    def follow_up(request: GenerationRequest, comp: Completion) -> GenerationRequest | None:
        """The call a later stage makes after this one: the forced answer after a CoT that
        stated none, the continuation of a forced answer cut by its budget. A backend that can
        answers it at once, from the cells of the call it follows."""
        if comp.error is not None:
            return None
        if request.key() in writes:
            after = forced_after(task, request, comp)
            if after is None:
                return None
            forced.add(after[0].key())  # a forced answer: its own continuation may follow it
            return after[0]
        return cut_continuation(task, request, comp) if request.key() in forced else None

    results = engine.run(first, desc=desc, follow_up=follow_up)
    in_answer_mode = [i for i, q in enumerate(queries) if q.mode == "answer"]
    extended = extend_cut_answers(engine, task, [(first[i], results[i]) for i in in_answer_mode], desc)
    for i, comp in zip(in_answer_mode, extended):
        results[i] = comp
    answered: list[Answered | None] = []
    follow_ups: list[tuple[int, GenerationRequest, str]] = []
    for i, (q, comp) in enumerate(zip(queries, results)):
        if comp.error is not None:
            answered.append(Answered(q.prefill, None, "", True, comp.error))
        elif q.mode == "answer":
            answered.append(Answered(q.prefill, task.parse_answer(task.answer_prefix + comp.text), comp.text, False))
        else:
            after = forced_after(task, first[i], comp)
            if after is not None:
                follow_ups.append((i, *after))
                answered.append(None)
            else:
                cot, rest = task.split_output(q.prefill + comp.text)
                answered.append(Answered(cot, task.parse_answer(rest), comp.text, False))
    if follow_ups:
        forced.update(r.key() for _, r, _ in follow_ups)
        second = engine.run([r for _, r, _ in follow_ups], desc=f"{desc} (forced answers)", follow_up=follow_up)
        second = extend_cut_answers(engine, task, [(r, c) for (_, r, _), c in zip(follow_ups, second)], desc)
        for (i, _, cot), comp in zip(follow_ups, second):
            written = results[i].text + "\n" + task.answer_prefix + comp.text
            if comp.error is not None:
                answered[i] = Answered(cot, None, written, True, comp.error)
                continue
            answer = task.parse_answer(task.answer_prefix + comp.text)
            if mark_budget and results[i].finish_reason == "length":
                answered[i] = Answered(cot, None, written, False, budget_hit=True, forced=answer)
            else:
                answered[i] = Answered(cot, answer, written, False)
    return [a for a in answered if a is not None]


def cut_continuation(task: Task, request: GenerationRequest, comp: Completion) -> GenerationRequest | None:
    """The request that continues forced answer `request` from where `comp` stopped, when it
    hit its budget before the answer could be read; None otherwise."""
    if comp.error is not None or comp.finish_reason != "length" or task.parse_answer(task.answer_prefix + comp.text) is not None:
        return None
    return replace(request, prefill=request.prefill + comp.text)


def extend_cut_answers(engine: Engine, task: Task, pairs: list[tuple[GenerationRequest, Completion]],
                       desc: str) -> list[Completion]:
    """The completions of `pairs` (forced-answer request, completion), in order, each answer
    that hit its budget unread continued once from where it stopped and joined to it."""
    nxt = [cut_continuation(task, req, comp) for req, comp in pairs]
    cut = [k for k, r in enumerate(nxt) if r is not None]
    out = [comp for _, comp in pairs]
    if not cut:
        return out
    more = engine.run([nxt[k] for k in cut], desc=f"{desc} (answers cut by their budget)")
    for k, extra in zip(cut, more):
        if extra.error is not None:
            continue  # the first part stands: unparseable, not a failed call
        first = pairs[k][1]
        out[k] = Completion(first.text + extra.text, first.n_prompt_tokens, first.n_generated_tokens + extra.n_generated_tokens,
                            extra.finish_reason)
    return out

