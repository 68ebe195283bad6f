"""`faithcheck audit --estimate`: what an audit will cost before paying for it, whatever the cache holds.

Exact: every item whose baseline CoT is in the cache. Its trace is rebuilt from the cache and
every call of its probe variants looked up (rule-based rewrites cost nothing), so its calls
and their prompt tokens are counted exactly; what the model will generate in the calls not
cached is extrapolated.

Measured, on the cheapest calls, within about `WINDOW` seconds of model calls (`_calibrate`):
forced answers (a few tokens each) and CoT generation, one call at a time and in batches,
so the time of a batch of the audit's width follows. As many baselines as fit the window
are run in full: they are real calls of the audit (cached, not wasted), so on a fast model
every item ends up exact.

Extrapolated: the CoT of every item still unknown. The point estimate gives each one, in
turn, a CoT of this model on this task seen here or in the cache; the range gives each the
shortest one seen (or a capped sample, when none finished) and, as the only hard bound, a
CoT as long as the task's budget allows. The item's calls are then built from that CoT
exactly as the audit builds them (`_projection.py`), and tokens become time at the
measured rates.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace

import numpy as np

from faithcheck.audit._projection import Projection, Sizes, StandIn, Walk, budget_long, prefix_shared
from faithcheck.audit.pipeline import baseline
from faithcheck.backends import load_backend
from faithcheck.engine.answering import Query, answer_request
from faithcheck.engine.cache import CallCache, default_cache_path
from faithcheck.engine.engine import Engine
from faithcheck.probes import ProbeContext, get_probes
from faithcheck.records import Completion, GenerationRequest
from faithcheck.tasks import configure_task, get_task, task_options

WINDOW = 25.0  # seconds of model calls calibration may spend (loading and walking the audit come on top)
FIRST_CAP = 8  # tokens of the first, timing-only CoT
MAX_FORCED = 64  # forced answers timed in one batch, at most


@dataclass(frozen=True)
class Projected:
    """The calls still to compute under one guess at the unknown CoTs, and their time."""

    calls: int
    forced: int                # forced answers
    writing: int               # calls where the model writes a CoT
    prompt_tokens: int         # as sent
    generated_tokens: int
    shared_prompt_tokens: int  # prompt tokens left when each shared prefix is computed once
    seconds: float | None


@dataclass(frozen=True)
class Rates:
    """Seconds fitted on the calls timed here. A batch of forced answers costs `per_batch` +
    `per_answer` each; a batch of CoTs `per_step` per decoding step (its longest CoT) +
    `per_token` per generated token. `width`: the backend's batch size (1: one call at a
    time), which turns those into the audit's seconds per call and per token."""

    width: int = 1
    per_batch: float | None = None
    per_answer: float | None = None
    per_step: float | None = None
    per_token: float | None = None
    forced_calls: int = 0
    writing_calls: int = 0
    writing_tokens: int = 0
    widest: int = 0  # the widest batch timed

    def forced_seconds(self, calls: int) -> float | None:
        if not calls:
            return 0.0
        if self.per_answer is None:
            return None
        return math.ceil(calls / self.width) * self.per_batch + calls * self.per_answer

    def writing_seconds(self, calls: int, tokens: int) -> float | None:
        if not calls:
            return 0.0
        if self.per_token is None:
            return None
        return math.ceil(calls / self.width) * tokens / calls * self.per_step + tokens * self.per_token

    def seconds(self, forced: int, writing: int, tokens: int) -> float | None:
        a, b = self.forced_seconds(forced), self.writing_seconds(writing, tokens)
        return None if a is None or b is None else a + b


def _fit(columns: np.ndarray, seconds: np.ndarray) -> tuple[float, float]:
    """Non-negative least squares of seconds on two columns; all on the second when the
    rows cannot tell them apart (one row, or a backend that runs one call at a time)."""
    from scipy.optimize import nnls

    if len(seconds) > 1 and np.linalg.matrix_rank(columns) == 2:
        (a, b), _ = nnls(columns, seconds)
        return float(a), float(b)
    return 0.0, float(seconds.sum() / max(columns[:, 1].sum(), 1e-9))


class Recorder(Engine):
    """The real engine, keeping what it computed and how long each run of one kind took:
    rows of (forced answers?, calls, generated tokens, seconds)."""

    def __init__(self, backend, cache: CallCache, forced_budget: int):
        Engine.__init__(self, backend, cache, progress=False)
        self.forced_budget = forced_budget
        self.width = max(1, int(getattr(backend, "batch_size", None) or 1))
        self.computed: dict[str, tuple[GenerationRequest, Completion]] = {}
        self.rows: list[tuple[bool, int, int, float]] = []
        self.seconds = 0.0  # in model calls, all runs

    def run(self, requests: list[GenerationRequest], desc: str = "model calls", follow_up=None) -> list[Completion]:
        """Timed by kind: `follow_up` is dropped, so forced answers are timed in runs of their own."""
        keys = list(dict.fromkeys(r.key() for r in requests))
        before = self.cache.get_many(self.backend.identity.cache_key, keys)
        started = time.monotonic()
        out = Engine.run(self, requests, desc)
        seconds = time.monotonic() - started
        self.seconds += seconds
        new = {r.key(): (r, c) for r, c in zip(requests, out) if r.key() not in before}
        self.computed.update(new)
        kinds = {r.max_new_tokens == self.forced_budget for r, _ in new.values()}
        if new and len(kinds) == 1 and all(c.error is None for _, c in new.values()):
            self.rows.append((kinds.pop(), len(new), sum(c.n_generated_tokens for _, c in new.values()), seconds))
        return out

    def rates(self) -> Rates:
        """`Rates` fitted on every timed run but the first (which warms the model up), unless
        it is the only one of its kind."""
        def kind(forced: bool) -> list[tuple[bool, int, int, float]]:
            return [r for r in self.rows[1:] if r[0] == forced] or [r for r in self.rows[:1] if r[0] == forced]

        w = self.width
        rates = Rates(w)
        forced, writing = kind(True), kind(False)
        if forced:
            calls, seconds = (np.array([r[i] for r in forced], dtype=float) for i in (1, 3))
            per_batch, per_answer = _fit(np.c_[np.ceil(calls / w), calls], seconds)
            rates = replace(rates, per_batch=per_batch, per_answer=per_answer, forced_calls=int(calls.sum()))
        if writing:
            calls, tokens, seconds = (np.array([r[i] for r in writing], dtype=float) for i in (1, 2, 3))
            tokens = np.maximum(tokens, 1.0)
            per_step, per_token = _fit(np.c_[np.ceil(calls / w) * tokens / calls, tokens], seconds)
            rates = replace(rates, per_step=per_step, per_token=per_token, writing_calls=int(calls.sum()),
                            writing_tokens=int(tokens.sum()))
        return replace(rates, widest=max((r[1] for r in self.rows), default=0))


@dataclass(frozen=True)
class AuditEstimate:
    """The cost of an audit: its calls (cached, computed by the estimate, still to compute),
    the tokens still to compute and their time: a point estimate with a range."""

    model: str
    task: str
    probes: tuple[str, ...]
    n_items: int
    exact_items: int           # items whose baseline CoT was in the cache: every call looked up
    calibration_items: int     # items whose baseline the estimate computed in full (then looked up)
    extrapolated_items: int    # items given a stand-in CoT
    calls_cached: int          # distinct calls of the audit already in the cache
    calls_computed_now: int    # calls of the audit the estimate computed (now cached)
    calls_outside: int         # calls the estimate computed only to time them (not the audit's)
    point: Projected | None    # None: no complete CoT seen, only a range
    low: Projected | None
    high: Projected | None
    rates: Rates = field(default_factory=Rates)
    cots_seen: tuple[int, ...] = ()  # generated tokens of the complete CoTs stand-ins are drawn from
    cut_sample: int | None = None    # tokens of a capped sample that had not finished (its CoT is longer)
    cot_budget: int = 0
    calibration_seconds: float = 0.0  # in the model calls it made
    note: str = ""

    @property
    def calls_to_compute(self) -> int | None:
        return None if self.point is None else self.point.calls

    @property
    def prompt_tokens_to_compute(self) -> int | None:
        return None if self.point is None else self.point.prompt_tokens

    @property
    def generated_tokens_to_compute(self) -> int | None:
        return None if self.point is None else self.point.generated_tokens

    @property
    def calls_total(self) -> int | None:
        return None if self.point is None else self.calls_cached + self.calls_computed_now + self.point.calls

    @property
    def minutes(self) -> float | None:
        if self.point is None or not self.point.calls or self.point.seconds is None:
            return None
        return self.point.seconds / 60

    def __str__(self) -> str:
        from faithcheck.audit._estimate_text import render

        return render(self)


@dataclass
class Evidence:
    """The CoTs of this model on this task that stand-ins are drawn from."""

    complete: dict[str, Completion] = field(default_factory=dict)  # item prompt -> its whole baseline completion
    cut: Completion | None = None  # a capped sample that had not finished: its item's CoT is longer
    ran_full: bool = False  # the sampled CoT was the audit's own call, in full


def _calibrate(rec: Recorder, task, walk: Walk, unknown, lookup: Projection, sizes: Sizes, evidence: Evidence) -> None:
    """Time the cheapest calls, then run as many baselines as the window allows:
    1. two no-CoT forced answers, one at a time (the first warms the model up);
    2. a CoT capped at FIRST_CAP tokens, for a first generation rate;
    3. one CoT in full when it fits 60% of what is left, else capped at what does;
    4. forced answers as the audit sends them (those of the CoT seen), in a quarter of what is left;
    5. when that CoT ended, further baselines in full, in batches, while they fit the window."""
    left = lambda: WINDOW - rec.seconds  # noqa: E731
    prompts = {task.prompt(i) for i in unknown}
    baselines = {c.request.prompt: c.request for c in lookup.missing() if c.request.prompt in prompts
                 and not c.forced and not c.request.prefill and c.request.temperature == 0}
    no_cot = [answer_request(task, task.prompt(i), task.force_answer(""), Query(task.prompt(i), "", "answer"))
              for i in unknown]
    forced_pool = no_cot + [c.request for c in lookup.missing() if c.forced]
    writing_pool = [baselines[task.prompt(i)] for i in unknown if task.prompt(i) in baselines] + \
        [c.request for c in lookup.missing() if not c.forced and c.request.prompt not in prompts]
    for r in forced_pool[:2]:
        rec.run([r], "estimate: forced answers")
    if writing_pool:  # a few generated tokens, on another question than the sample's
        short = writing_pool[min(1, len(writing_pool) - 1)]
        rec.run([replace(short, max_new_tokens=min(FIRST_CAP, short.max_new_tokens))], "estimate: CoT speed")
    if writing_pool and left() > 0:
        _sample(rec, writing_pool[0], writing_pool[0].prompt in baselines, evidence, left)
    _forced_in_order(rec, task, walk, unknown, sizes, evidence, forced_pool[2:], 0.25 * left())
    if unknown and writing_pool and (evidence.ran_full or writing_pool[0].prompt in evidence.complete):
        _more_baselines(rec, task, unknown[1:], left)


def _sample(rec: Recorder, first: GenerationRequest, is_baseline: bool, evidence: Evidence, left) -> None:
    """One CoT in full when the rates so far say it fits 60% of what is left of the window,
    else capped at what does: its time gives the generation rate, its length the evidence."""
    rates = rec.rates()
    per_token = (rates.per_step or 0.0) + (rates.per_token or 0.0)
    fits = int(0.6 * left() / max(per_token, 1e-9))
    if fits >= first.max_new_tokens:
        done = rec.run([first], "estimate: a CoT")[0]
        evidence.ran_full = done.error is None
        if is_baseline and done.error is None:
            evidence.complete[first.prompt] = done
        return
    done = rec.run([replace(first, max_new_tokens=max(2 * FIRST_CAP, fits))], "estimate: a capped CoT")[0]
    if is_baseline and done.error is None:
        if done.finish_reason == "length":
            evidence.cut = done
        else:  # it ended before its cap: what the full call writes
            evidence.complete[first.prompt] = done


def _more_baselines(rec: Recorder, task, items, left) -> None:
    """Full baselines of further unknown items, in batches of as many as fit what is left of
    the window at the seconds per baseline measured last."""
    writing = [r for r in rec.rows if not r[0]]
    per = max(writing[-1][3] / writing[-1][1], 1e-6) if writing else None
    done = 0
    while per is not None and done < len(items) and per <= left():
        batch = items[done:done + int(left() / per)]
        started = time.monotonic()
        baseline(rec, task, batch, " (estimate)")
        per = max((time.monotonic() - started) / len(batch), 1e-6)
        done += len(batch)


def _forced_in_order(rec: Recorder, task, walk: Walk, unknown, sizes: Sizes, evidence: Evidence, pool,
                     seconds: float) -> None:
    """One batch of forced answers as the audit sends them: those of the CoTs seen (real
    items' CoTs, else the capped sample standing in), else the audit's own missing ones."""
    full = task.max_cot_tokens + task.max_answer_tokens
    ran = {r.prompt: c for r, c in rec.computed.values()
           if r.max_new_tokens == full and not r.prefill and r.temperature == 0 and c.error is None}
    complete = {**ran, **evidence.complete}
    seen = [(i, complete[task.prompt(i)]) for i in unknown if task.prompt(i) in complete]
    if not seen and evidence.cut is not None and unknown:
        seen = [(unknown[0], replace(evidence.cut, finish_reason="stop"))]
    requests = list(pool)
    if seen:
        sizes.forget_lookups()
        sources = {task.prompt(i): c for i, c in seen}
        one = Projection(rec.backend, sizes, task.max_answer_tokens,
                         StandIn(task, sources, seen[0][1], task.max_answer_tokens, sizes))
        walk.run(one, [i for i, _ in seen])
        requests = [c.request for c in one.missing() if c.forced] or requests
    per = rec.rates().forced_seconds(1)
    if requests and seconds > 0 and per:
        rec.run(requests[:max(4, min(MAX_FORCED, int(seconds / per)))], "estimate: forced answers")


def estimate_audit(config) -> AuditEstimate:
    from faithcheck.rewriters import load_rewriter

    task = get_task(config.task)
    options = task_options(getattr(config, "task_args", ()))
    probe_objs = get_probes(list(config.probes))
    items = list(task.load(config.n, config.seed).items)
    backend = load_backend(config.model, list(config.model_args))
    cache = rewriter = None
    try:
        configure_task(task, options, backend)
        cache = CallCache(config.cache_path or default_cache_path())
        rewriter = load_rewriter(None)  # an LLM rewriter is not run: rule-based rewrites stand in for its own
        ctx = ProbeContext(task, config.seed, backend.count_tokens, rewriter, config.samples, config.options)
        walk = Walk(task, probe_objs, ctx, rewriter, config)
        sizes = Sizes(backend, cache)
        lookup = Projection(backend, sizes, task.max_answer_tokens)
        walk.run(lookup, items)
        known = lookup.baselines()
        unknown = [i for i in items if task.prompt(i) not in known]
        evidence = Evidence()
        rec = Recorder(backend, cache, task.max_answer_tokens)
        _calibrate(rec, task, walk, unknown, lookup, sizes, evidence)
        return _assemble(config, task, items, walk, sizes, rec, evidence, unknown, rec.seconds)
    finally:
        if rewriter is not None:
            rewriter.close()
        if cache is not None:
            cache.close()
        backend.close()


def _assemble(config, task, items, walk: Walk, sizes: Sizes, rec: Recorder, evidence: Evidence, unknown,
              seconds: float) -> AuditEstimate:
    computed = [(r, c) for r, c in rec.computed.values() if c.error is None and c.n_prompt_tokens]
    if computed:  # the chat template's own tokens, beyond the text and turns counted
        sizes.template_tokens = max(0.0, float(np.mean([c.n_prompt_tokens - sizes.counted(r) for r, c in computed])))
    sizes.forget_lookups()
    lookup = Projection(rec.backend, sizes, task.max_answer_tokens)
    baseline(lookup, task, items)
    prompts = {task.prompt(i) for i in items}
    cached = {p: c for p, c in lookup.baselines().items() if p in prompts}
    evidence.complete.update(cached)
    still = [i for i in items if task.prompt(i) not in cached]
    seen = [evidence.complete[task.prompt(i)] for i in items if task.prompt(i) in evidence.complete]
    forced = [c.n_generated_tokens for r, c in rec.computed.values() if r.max_new_tokens == task.max_answer_tokens]
    answer_tokens = float(np.mean(forced)) if forced else float(task.max_answer_tokens)
    pool = seen + ([replace(evidence.cut, finish_reason="stop")] if evidence.cut is not None else [])

    def project(pick) -> Projection:
        sources = {task.prompt(i): evidence.complete.get(task.prompt(i)) or pick(j) for j, i in enumerate(still)}
        typical = pick(0) if still else (seen[0] if seen else Completion(""))
        proj = Projection(rec.backend, sizes, task.max_answer_tokens,
                          StandIn(task, {**sources, **cached}, typical, answer_tokens, sizes))
        walk.run(proj, items)
        return proj

    point = project(lambda j: seen[j % len(seen)]) if seen or not still else None
    low = high = point
    if still and pool:
        shortest = min(pool, key=lambda c: c.n_generated_tokens)
        longest = budget_long(task, max(pool, key=lambda c: c.n_generated_tokens), sizes)
        low, high = project(lambda j: shortest), project(lambda j: longest)
    calls = (point or low).calls if (point or low) else {}
    mine = set(rec.computed)
    rates = rec.rates()
    note = ""
    if config.rewriter and config.rewriter != "rules":
        note = ("with an LLM rewriter: its own calls are not counted, and the variants are built with rule-based "
                "rewrites standing in for its rewrites (so its cached variants are not recognised)")
    return AuditEstimate(
        config.model, config.task, tuple(config.probes), len(items), len(items) - len(unknown),
        len(unknown) - len(still), len(still),
        sum(c.cached and k not in mine for k, c in calls.items()), sum(c.cached and k in mine for k, c in calls.items()),
        len(mine - set(calls)), *(None if p is None else _summarise(p, rates) for p in (point, low, high)),
        rates, tuple(c.n_generated_tokens for c in seen),
        None if evidence.cut is None else evidence.cut.n_generated_tokens,
        task.max_cot_tokens + task.max_answer_tokens, seconds, note,
    )


def _summarise(proj: Projection, rates: Rates) -> Projected:
    todo = proj.missing()
    forced = [c for c in todo if c.forced]
    writing = [c for c in todo if not c.forced]
    prompt = sum(c.prompt_tokens for c in todo)
    generated = sum(c.generated_tokens for c in todo)
    shared = round(prompt * prefix_shared([c.request for c in todo])) if todo else 0
    seconds = rates.seconds(len(forced), len(writing), sum(c.generated_tokens for c in writing))
    return Projected(len(todo), len(forced), len(writing), prompt, generated, shared, seconds)


__all__ = ["AuditEstimate", "Projected", "Rates", "estimate_audit"]
