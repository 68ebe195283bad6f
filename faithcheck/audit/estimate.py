"""`faithcheck audit --estimate`: what an audit will cost before paying for it, whatever the cache holds.

Exact wherever the cache allows: every item's baseline requests are looked up, and for each
item whose baseline CoT is cached the trace is rebuilt from the cache and every probe
variant's requests are looked up too (rule-based rewrites cost nothing). An item whose
baseline is not cached cannot be known before the model writes its CoT: the first few of
those are run for real (calibration; their calls land in the cache, so nothing is wasted)
and the rest are extrapolated from them. The time per call comes only from calls computed
here: the calibration's, or, when every baseline is cached, a few of the missing calls.
Nothing to compute gives a sentence saying so instead of a time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from faithcheck.audit.pipeline import baseline, baseline_samples, expand_samples, resolve_rewrites
from faithcheck.backends import load_backend
from faithcheck.engine.answering import resolve
from faithcheck.engine.cache import CallCache, default_cache_path
from faithcheck.engine.engine import Engine
from faithcheck.probes import ProbeContext, get_probes
from faithcheck.records import Completion, GenerationRequest
from faithcheck.tasks import configure_task, get_task, task_options

CALIBRATION_ITEMS = 3
TIMING_CALLS = 8
NOT_CACHED = "not in the cache (estimate: never computed here)"


@dataclass(frozen=True)
class Call:
    """One distinct request of the audit, as the estimate saw it."""

    request: GenerationRequest
    cached: bool                  # in the cache before the estimate ran
    prompt_tokens: int
    generated_tokens: int | None  # None: not computed yet
    completion: Completion | None = None
    follow_up: bool = False       # a forced answer after a CoT the model wrote without one


class _Ledger:
    def __init__(self, backend):
        self.backend = backend
        self.calls: dict[str, Call] = {}

    def note(self, key: str, request: GenerationRequest, cached: bool, comp: Completion | None, desc: str) -> None:
        if key in self.calls:
            return
        prompt = (comp.n_prompt_tokens if comp is not None else 0) or self.backend.count_tokens(request.text)
        generated = comp.n_generated_tokens if comp is not None and comp.error is None else None
        self.calls[key] = Call(request, cached, prompt, generated, comp, desc.endswith("(forced answers)"))

    def unseen(self, requests: list[GenerationRequest], cache: CallCache) -> tuple[list[str], dict[str, Completion]]:
        """Keys of the distinct requests not recorded yet, and those of them the cache holds."""
        new = list({r.key(): None for r in requests if r.key() not in self.calls})
        return new, (cache.get_many(self.backend.identity.cache_key, new) if new else {})


class CacheWalk(Engine, _Ledger):
    """An engine that answers only from the cache and records every distinct request it is
    asked for, cached or not. It never calls the model: a request it cannot answer comes
    back as a failed call, so whatever depends on it is left for calibration to estimate."""

    def __init__(self, backend, cache: CallCache):
        Engine.__init__(self, backend, cache, progress=False)
        _Ledger.__init__(self, backend)

    def run(self, requests: list[GenerationRequest], desc: str = "model calls") -> list[Completion]:
        unique = {r.key(): r for r in requests}
        new, found = self.unseen(requests, self.cache)
        for k in new:
            self.note(k, unique[k], k in found, found.get(k), desc)
        out = []
        for r in requests:
            call = self.calls[r.key()]
            out.append(call.completion if call.cached else Completion("", error=NOT_CACHED))
        return out

    def missing(self) -> int:
        return sum(not c.cached for c in self.calls.values())


class Recorder(Engine, _Ledger):
    """The real engine, recording each distinct request and whether the cache already held it."""

    def __init__(self, backend, cache: CallCache):
        Engine.__init__(self, backend, cache, progress=False)
        _Ledger.__init__(self, backend)

    def run(self, requests: list[GenerationRequest], desc: str = "model calls") -> list[Completion]:
        new_keys, before = self.unseen(requests, self.cache)
        new = set(new_keys)
        out = Engine.run(self, requests, desc)
        for r, comp in zip(requests, out):
            if r.key() in new:
                self.note(r.key(), r, r.key() in before, comp, desc)
        return out


@dataclass(frozen=True)
class AuditEstimate:
    """The cost of an audit: its calls (cached, computed by the estimate, still to compute),
    the tokens still to compute, and the time they will take."""

    model: str
    task: str
    probes: tuple[str, ...]
    n_items: int
    exact_items: int          # items whose every call was looked up in the cache
    calibration_items: int    # items run for real by the estimate
    extrapolated_items: int   # items estimated from the calibration items
    calls_cached: int         # distinct calls already in the cache
    calls_computed_now: int   # computed by the estimate itself (now cached)
    calls_to_compute: int     # still to compute (extrapolated part rounded)
    prompt_tokens_to_compute: int
    generated_tokens_to_compute: int
    computed_token_share: float | None  # tokens computed after prefix sharing / prompt + generated, measured
    seconds_per_call: float | None      # measured on the calls computed now
    timed_calls: int
    note: str = ""

    @property
    def calls_total(self) -> int:
        return self.calls_cached + self.calls_computed_now + self.calls_to_compute

    @property
    def minutes(self) -> float | None:
        if not self.calls_to_compute or self.seconds_per_call is None:
            return None
        return self.seconds_per_call * self.calls_to_compute / 60

    def __str__(self) -> str:
        approx = "~" if self.extrapolated_items else ""
        lines = [
            f"estimate for {self.model} on {self.task}: {self.n_items} items, probes {', '.join(self.probes)}",
            f"  model calls:        {approx}{self.calls_total:,} in all: {self.calls_cached:,} already in the cache, "
            f"{self.calls_computed_now:,} computed by this estimate (now cached), "
            f"{approx}{self.calls_to_compute:,} still to compute",
            f"  items:              {self.exact_items} looked up exactly in the cache, {self.calibration_items} run "
            f"for calibration, {self.extrapolated_items} extrapolated from them",
        ]
        if self.calls_to_compute:
            lines.append(f"  tokens to compute:  ~{self.prompt_tokens_to_compute:,} prompt + "
                         f"~{self.generated_tokens_to_compute:,} generated (as sent; before prefix sharing)")
            if self.computed_token_share is not None:
                sent = self.prompt_tokens_to_compute + self.generated_tokens_to_compute
                lines.append(f"  computed tokens:    ~{int(sent * self.computed_token_share):,} after prefix sharing "
                             f"({self.computed_token_share:.0%} of prompt + generated, measured on the calls computed now)")
            if self.minutes is not None:
                lines.append(f"  time estimate:      ~{self.minutes:.1f} min for {approx}{self.calls_to_compute:,} calls at "
                             f"{self.seconds_per_call * 1000:.0f} ms/call, measured on {self.timed_calls} calls computed "
                             "now (an upper bound: batching only lowers it)")
            else:
                lines.append("  time estimate:      none: no call could be timed here")
        else:
            lines.append("  time estimate:      none needed: every call of this audit is already in the cache; "
                         "the audit will only re-score them")
        if self.note:
            lines.append(f"  note:               {self.note}")
        return "\n".join(lines)


def _writes(call: Call, task) -> bool:
    """A request where the model writes a CoT (it may need a forced answer after it)."""
    return call.request.max_new_tokens != task.max_answer_tokens


def estimate_audit(config) -> AuditEstimate:
    from faithcheck.rewriters import load_rewriter

    task = get_task(config.task)
    options = task_options(getattr(config, "task_args", ()))
    probe_objs = get_probes(list(config.probes))
    items = list(task.load(config.n, config.seed).items)
    backend = load_backend(config.model, list(config.model_args))
    configure_task(task, options, backend)
    cache = CallCache(config.cache_path or default_cache_path())
    rewriter = None
    try:
        rewriter = load_rewriter(config.rewriter, list(config.rewriter_args), Engine(backend, cache, progress=False))
        rule_rewrites = not config.rewriter or config.rewriter == "rules"
        ctx = ProbeContext(task, config.seed, backend.count_tokens, rewriter, config.samples, config.options)
        walk = CacheWalk(backend, cache)

        def variant_requests(engine, chosen, traces):
            by_id = {t.item_id: t for t in traces}
            c = replace(ctx, rewrites=resolve_rewrites(probe_objs, chosen, by_id, ctx, rewriter))
            variants = [v for p in probe_objs for i in chosen for v in p.variants(i, by_id[i.id], c)]
            resolve(engine, task, [q for _, q in expand_samples(variants, config)], "estimate")

        # 1. the cache walk: an item is known when its baseline CoT (and forced answer) is cached
        known, known_traces, unknown, unknown_keys = [], [], [], set()
        for item in items:
            before = set(walk.calls)
            missing = walk.missing()
            trace = baseline(walk, task, [item])[0]
            if walk.missing() == missing:
                known.append(item)
                known_traces.append(trace)
            else:
                unknown.append(item)
                unknown_keys |= set(walk.calls) - before
        if not rule_rewrites:  # an LLM rewriter's calls are not walked: calibrate instead
            unknown, known, known_traces, unknown_keys = items, [], [], set(walk.calls)
        baseline_samples(walk, task, known, config)
        if known:
            variant_requests(walk, known, known_traces)
        # 2. calibration: a few unknown items for real, the rest extrapolated from them
        rec = Recorder(backend, cache)
        calib = unknown[:CALIBRATION_ITEMS]
        counters_before = dict(getattr(backend, "counters", {}))
        started = time.time()
        if calib:
            baseline_samples(rec, task, calib, config)
            variant_requests(rec, calib, baseline(rec, task, calib))
        computed = [c for c in rec.calls.values() if not c.cached]
        # 3. what the walk found missing, less what calibration has just computed
        todo = [c for k, c in walk.calls.items() if not c.cached and k not in rec.calls and k not in unknown_keys]
        if not computed and todo:  # nothing timed yet: compute a few of the missing calls themselves
            rec.run([c.request for c in todo[:TIMING_CALLS]], "estimate timing")
            todo = todo[TIMING_CALLS:]
            computed = [c for c in rec.calls.values() if not c.cached]
        seconds = time.time() - started
        seen = {**{k: c for k, c in walk.calls.items() if k not in unknown_keys}, **rec.calls}
        answered = [c for c in seen.values() if c.generated_tokens is not None]
        gen_of = _mean_generated(answered)
        # a CoT written without an answer needs a forced one after it: at the rate seen so far (else always)
        writes = [c for c in answered if not c.follow_up and _writes(c, task)]
        follow_rate = sum(c.follow_up for c in seen.values()) / len(writes) if writes else 1.0
        extra = round(min(1.0, follow_rate) * sum(_writes(c, task) for c in todo))
        prompt = sum(c.prompt_tokens for c in todo) + extra * _mean_prompt(answered, task)
        generated = sum(gen_of(c.request.max_new_tokens) for c in todo) + extra * gen_of(task.max_answer_tokens)
        to_compute = len(todo) + extra
        rest = len(unknown) - len(calib)
        if rest:  # per calibration item: every distinct call it needed, cached or not
            to_compute += round(rest * len(rec.calls) / len(calib))
            prompt += rest * sum(c.prompt_tokens for c in rec.calls.values()) / len(calib)
            generated += rest * sum(c.generated_tokens or 0 for c in rec.calls.values()) / len(calib)
        cached = len({k for k, c in seen.items() if c.cached})
        share = _computed_share(backend, counters_before, computed)
        note = "" if rule_rewrites else "an LLM rewriter's own calls are not counted; items calibrated with it"
        return AuditEstimate(
            config.model, config.task, tuple(config.probes), len(items), len(known), len(calib), rest,
            cached, len(computed), int(to_compute), int(prompt), int(generated), share,
            seconds / len(computed) if computed else None, len(computed), note,
        )
    finally:
        if rewriter is not None:
            rewriter.close()
        cache.close()
        backend.close()


def _mean_generated(answered: list[Call]):
    """Mean generated tokens of answered calls with the same token budget (else the budget, an upper bound)."""
    by_budget: dict[int, list[int]] = {}
    for c in answered:
        by_budget.setdefault(c.request.max_new_tokens, []).append(c.generated_tokens or 0)

    def of(budget: int) -> float:
        seen = by_budget.get(budget)
        return sum(seen) / len(seen) if seen else float(budget)

    return of


def _mean_prompt(answered: list[Call], task) -> float:
    forced = [c.prompt_tokens for c in answered if c.request.max_new_tokens == task.max_answer_tokens]
    return sum(forced) / len(forced) if forced else 0.0


def _computed_share(backend, before: dict, computed: list[Call]) -> float | None:
    """Tokens the backend computed (after prefix sharing) per token sent, over the calls computed now."""
    after = getattr(backend, "counters", {}).get("tokens_computed")
    if not after or not computed:
        return None
    sent = sum(c.prompt_tokens + (c.generated_tokens or 0) for c in computed)
    done = after - before.get("tokens_computed", 0)
    return done / sent if sent and done > 0 else None


__all__ = ["AuditEstimate", "CacheWalk", "estimate_audit"]
