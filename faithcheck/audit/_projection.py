"""The audit's calls, walked without calling the model: what `--estimate` counts.

A `Projection` is an engine that answers from the cache where it can and, where it cannot,
with a `StandIn`: a stated guess at what the model would write. The audit's own pipeline
functions run on it (baseline, rewrites, probe variants, forced answers after CoTs without
one), so the calls it records are the ones the audit would send: exact for every item whose
baseline CoT is cached, built from a stand-in CoT for the others.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

from faithcheck.audit.pipeline import baseline, baseline_samples, expand_samples, resolve_rewrites
from faithcheck.engine.answering import resolve
from faithcheck.engine.cache import CallCache
from faithcheck.engine.engine import Engine
from faithcheck.records import Completion, GenerationRequest, TaskItem

NOT_CACHED = "not in the cache (estimate: never computed here)"


@dataclass(frozen=True)
class Call:
    """One distinct request of the audit, as a projection saw it."""

    request: GenerationRequest
    cached: bool
    prompt_tokens: int
    generated_tokens: int
    forced: bool  # a forced answer (the task's answer budget); otherwise the model writes a CoT


class Sizes:
    """Cache lookups and prompt token counts, each done once for all projections of an estimate.

    A cached call's prompt tokens are the model's own count; any other's are the model's
    tokenizer on the prompt, the prefill and each earlier chat turn, plus the chat template's
    own tokens per call (`template_tokens`, measured on the calls computed here)."""

    def __init__(self, backend, cache: CallCache):
        self.backend, self.cache = backend, cache
        self.fingerprint = backend.identity.cache_key
        self.template_tokens = 0.0
        self._found: dict[str, Completion | None] = {}
        self._tokens: dict[str, int] = {}

    def lookup(self, requests: list[GenerationRequest]) -> dict[str, Completion]:
        new = [r.key() for r in requests if r.key() not in self._found]
        if new:
            found = self.cache.get_many(self.fingerprint, new)
            self._found.update({k: found.get(k) for k in new})
        return {r.key(): self._found[r.key()] for r in requests if self._found[r.key()] is not None}

    def forget_lookups(self) -> None:
        """The cache has changed (calibration computed calls): look again."""
        self._found.clear()

    def count(self, text: str) -> int:
        if text not in self._tokens:
            self._tokens[text] = self.backend.count_tokens(text) if text else 0
        return self._tokens[text]

    def counted(self, r: GenerationRequest) -> int:
        """Tokens of the request's text and turns, without the chat template's own."""
        return self.count(r.text) + sum(self.count(content) for _, content in r.context)

    def prompt(self, r: GenerationRequest, comp: Completion | None) -> int:
        if comp is not None and comp.n_prompt_tokens:
            return comp.n_prompt_tokens
        return round(self.counted(r) + self.template_tokens)


class StandIn:
    """What the model is assumed to write where the cache cannot say.

    `sources` maps an item's prompt to the completion taken for its baseline (its own when
    cached, else a stand-in CoT); `typical` stands for prompts of no item (hinted ones). A
    baseline request gets its source whole. A CoT written after a prefill (a planted
    mistake) is the rest of its item's CoT, a fresh one (a hinted prompt) as long as it,
    and either ends the way that CoT does (with its answer, or without one, so a forced
    answer follows). A forced answer is `answer_tokens` tokens long."""

    def __init__(self, task, sources: dict[str, Completion], typical: Completion, answer_tokens: float, sizes: Sizes):
        self.task, self.sources, self.typical, self.sizes = task, sources, typical, sizes
        self.answer_tokens = answer_tokens

    def __call__(self, r: GenerationRequest) -> Completion:
        if r.max_new_tokens == self.task.max_answer_tokens:
            return Completion(" 0", 0, round(self.answer_tokens))
        source = self.sources.get(r.prompt)
        if source is not None and not r.prefill:
            return replace(source, n_prompt_tokens=0)
        source = source or self.typical
        ending = self.task.split_output(source.text)[1]
        written = source.n_generated_tokens - self.sizes.count(r.prefill)
        return Completion(ending, 0, max(1, min(r.max_new_tokens, written)), "stop")


class Projection(Engine):
    """An engine that never calls the model: what the cache holds comes back as it is, any
    other request is answered by `stand_in` (None: as a failed call, so nothing built on it
    is walked), and each distinct request is recorded once in `calls`."""

    def __init__(self, backend, sizes: Sizes, forced_budget: int, stand_in: StandIn | None = None):
        Engine.__init__(self, backend, None, progress=False)
        self.sizes, self.forced_budget, self.stand_in = sizes, forced_budget, stand_in
        self.calls: dict[str, Call] = {}
        self.answers: dict[str, Completion] = {}

    def run(self, requests: list[GenerationRequest], desc: str = "model calls", follow_up=None) -> list[Completion]:
        """(`follow_up` is not walked: a stage's follow-ups come as the later run's requests.)"""
        new = list({r.key(): r for r in requests if r.key() not in self.calls}.values())
        found = self.sizes.lookup(new)
        for r in new:
            cached = found.get(r.key())
            comp = cached
            if comp is None:
                comp = self.stand_in(r) if self.stand_in else Completion("", error=NOT_CACHED)
            self.answers[r.key()] = comp
            self.calls[r.key()] = Call(r, cached is not None, self.sizes.prompt(r, cached), comp.n_generated_tokens,
                                       r.max_new_tokens == self.forced_budget)
        return [self.answers[r.key()] for r in requests]

    def missing(self) -> list[Call]:
        return [c for c in self.calls.values() if not c.cached]

    def baselines(self) -> dict[str, Completion]:
        """The cached greedy baseline completions it saw, by item prompt."""
        return {c.request.prompt: self.answers[k] for k, c in self.calls.items()
                if c.cached and not c.forced and not c.request.prefill and c.request.temperature == 0}


@dataclass(frozen=True)
class Walk:
    """What the audit needs, run through an engine: its items, probes and their settings."""

    task: object
    probes: list
    ctx: object      # the ProbeContext (rule-based rewrites)
    rewriter: object
    config: object

    def run(self, engine: Engine, items: list[TaskItem]) -> None:
        """The audit's calls for `items`, as `_audit_block` makes them (failed and budget-cut
        baselines get no variants; variants that failed their checks are not sent)."""
        traces = baseline(engine, self.task, items)
        baseline_samples(engine, self.task, items, self.config)
        by_id = {t.item_id: t for t in traces}
        live = [i for i in items if not (by_id[i.id].failed_call or by_id[i.id].budget_hit)]
        ctx = replace(self.ctx, rewrites=resolve_rewrites(self.probes, live, by_id, self.ctx, self.rewriter))
        variants = [v for p in self.probes for i in live for v in p.variants(i, by_id[i.id], ctx)]
        sent = [q for v, q in expand_samples(variants, self.config) if v.valid]
        resolve(engine, self.task, sent, "probe variants")


def prefix_shared(requests: list[GenerationRequest]) -> float:
    """Share of the requests' prompt characters left to compute when every shared prefix is
    computed once (the prefix-tree limit): sorted, each costs what it does not share with
    the one before it."""
    texts = sorted("".join(f"{role}:{content}\n" for role, content in r.context) + r.text for r in requests)
    total = sum(len(t) for t in texts)
    if not total:
        return 1.0
    new = sum(len(t) - len(os.path.commonprefix([t, prev])) for prev, t in zip(["", *texts], texts))
    return new / total


def budget_long(task, source: Completion, sizes: Sizes) -> Completion:
    """A CoT as long as the task's CoT budget allows, made of `source`'s steps over again and
    ending as `source` does: the longest CoT the audit can score (one cut by its budget gets
    no variants)."""
    cot, ending = task.split_output(source.text)
    steps = [s for s in task.split_steps(cot) if sizes.count(s)] or ["..."]
    room = task.max_cot_tokens
    text = ""
    while True:
        grown = text
        for step in steps:
            if sizes.count(grown + step) > room:
                break
            grown += step
        if grown == text:
            break
        text = grown
    return Completion(text + ending, 0, min(task.max_cot_tokens + task.max_answer_tokens, sizes.count(text + ending)),
                      "stop")
