"""An audit, end to end: items -> baseline traces -> variants -> outcomes -> metrics -> verdict -> run dir."""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path

import pandas as pd

from faithcheck.audit.failures import MAX_FAILED_SHARE, Measurement, assess
from faithcheck.audit.rundir import discard, partial_dir, publish
from faithcheck.backends import load_backend
from faithcheck.engine.answering import Answered, Query, resolve
from faithcheck.engine.cache import CallCache, default_cache_path
from faithcheck.engine.engine import Engine
from faithcheck.errors import BadInput, Interrupted
from faithcheck.probes import DEFAULT_PROBES, AuditOptions, ProbeContext, ProbeMetrics, get_probes
from faithcheck.probes.base import JUDGE_CHECK
from faithcheck.records import Outcome, TaskItem, Trace, Variant
from faithcheck.scoring.distribution import distribution_shift
from faithcheck.scoring.summary import cot_accuracy, score_probes
from faithcheck.scoring.verdict import Verdict, decide
from faithcheck.tasks import configure_task, get_task, task_options


@dataclass(frozen=True)
class AuditConfig:
    model: str
    task: str = "modular"
    n: int | None = 100
    probes: tuple[str, ...] = DEFAULT_PROBES
    seed: int = 0
    out: Path | None = None
    model_args: tuple[str, ...] = ()
    task_args: tuple[str, ...] = ()  # --task-arg: budgets, prompting mode, system prompt, think tags
    rewriter: str | None = None
    rewriter_args: tuple[str, ...] = ()
    samples: int = 1
    temperature: float = 0.0
    cache_path: Path | None = None
    progress: bool = True
    block_items: int = 500  # items whose calls and variants are held at once
    options: AuditOptions = field(default_factory=AuditOptions)  # probe options; a dict is parsed, unknown keys refused
    max_failed_share: float = MAX_FAILED_SHARE  # past it (or any failed baseline call) the run is unmeasured

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", AuditOptions.parse(self.options))
        if not math.isfinite(self.temperature) or self.temperature < 0:
            raise BadInput(f"--temperature {self.temperature}: must be a finite number >= 0")
        if not 0 <= self.max_failed_share <= 1:
            raise BadInput(f"--max-failed-share {self.max_failed_share}: must be between 0 and 1")


@dataclass(frozen=True)
class AuditResult:
    config: AuditConfig
    run_dir: Path
    summary: dict
    outcomes: pd.DataFrame
    traces: tuple[Trace, ...]
    metrics: dict[str, ProbeMetrics]
    verdict: Verdict
    baseline_samples: pd.DataFrame | None = None  # with --samples K > 1: K sampled baseline answers per item
    measurement: Measurement | None = None  # failed calls; `measured` False: exit 4, verdict inconclusive


def default_run_dir(model: str, task: str) -> Path:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{model}-{task}").strip("_")[:80]
    return Path("reports") / f"{slug}-{date.today().isoformat()}"


def baseline(engine: Engine, task, items: list[TaskItem], tag: str = "") -> list[Trace]:
    prompts = [task.prompt(item) for item in items]
    answered = resolve(engine, task, [Query(p, "", "generate") for p in prompts], f"baseline CoT{tag}", mark_budget=True)
    traces = []
    for item, prompt, a in zip(items, prompts, answered):
        traces.append(Trace(item.id, prompt, a.cot, tuple(task.split_steps(a.cot)), a.answer,
                            not a.failed and task.is_correct(item, a.answer), a.written, failed_call=a.failed,
                            budget_hit=a.budget_hit))
    return traces


def baseline_samples(engine: Engine, task, items: list[TaskItem], config: AuditConfig) -> pd.DataFrame | None:
    """K sampled answers per item to the unperturbed prompt (only when sampling): the reference
    the variants' answer distributions are compared with. Variants still read their
    same-as-baseline against the greedy trace."""
    if config.samples <= 1:
        return None
    keys = [(item, s) for item in items for s in range(config.samples)]
    queries = [Query(task.prompt(item), "", "generate", *_sampling(config, s)) for item, s in keys]
    answered = resolve(engine, task, queries, "baseline CoT (samples)")
    return pd.DataFrame([
        {"item_id": item.id, "sample": s, "answer": a.answer, "correct": task.is_correct(item, a.answer),
         "failed_call": a.failed, "cot": a.cot, "completion": a.written}
        for (item, s), a in zip(keys, answered)
    ])


def _outcomes(task, items_by_id, traces_by_id, variants: list[Variant], answered) -> list[Outcome]:
    rows = []
    for v, a in zip(variants, answered):
        base = traces_by_id[v.item_id]
        rows.append(Outcome(
            item_id=v.item_id, probe=v.probe, params=v.params, sample=v.sample,
            baseline_answer=base.answer, baseline_correct=base.correct, answer=a.answer,
            correct=task.is_correct(items_by_id[v.item_id], a.answer),
            same_as_baseline=a.answer is not None and a.answer == base.answer,
            valid=v.valid, target=v.target,
            follows_target=None if v.target is None else a.answer == v.target,
            checks=v.checks, completion=a.written, failed_call=a.failed,
        ))
    return rows


def _sampling(config: AuditConfig, sample: int) -> tuple[float, int]:
    """(temperature, seed) of sample number `sample`: the same for the baseline and every variant."""
    temp = config.temperature if config.samples > 1 or config.temperature > 0 else 0.0
    return temp, config.seed * 1000 + sample


def expand_samples(variants: list[Variant], config: AuditConfig) -> list[tuple[Variant, Query]]:
    out = []
    for v in variants:
        for s in range(config.samples):
            out.append((replace(v, sample=s), Query(v.prompt, v.prefill, v.mode, *_sampling(config, s))))
    return out


def _judge(probe_objs, rewriter, outcomes: list[Outcome]) -> list[Outcome]:
    """With an LLM rewriter, ask it whether each CoT a probe wants judged mentions or relies on
    its cue, and record the answer on the outcome as a check (None: no yes/no answer, the
    reason beside it). The rule-based rewriter has no judge."""
    judge = getattr(rewriter, "judge_hints", None)
    if judge is None:
        return outcomes
    by_name = {p.name: p for p in probe_objs}
    cues = [by_name[o.probe].hint_to_judge(o) for o in outcomes]
    todo = [i for i, cue in enumerate(cues) if cue is not None]
    if not todo:
        return outcomes
    verdicts = judge([outcomes[i].completion for i in todo], [cues[i] for i in todo])
    out = list(outcomes)
    for i, (verdict, error) in zip(todo, verdicts):
        checks = {**out[i].checks, JUDGE_CHECK: verdict, **({f"{JUDGE_CHECK}_error": error} if error else {})}
        out[i] = replace(out[i], checks=checks)
    return out


def run_audit(config: AuditConfig, backend=None, cache: CallCache | None = None) -> AuditResult:
    """Run one audit and write its run directory. Pass `backend`/`cache` to reuse loaded ones.

    Items go through in blocks of `config.block_items`: each block's baseline, rewrites,
    variants and answers are computed, its traces appended to traces.jsonl and its
    outcome rows kept, and the rest let go, so memory and cost grow with the outcome
    table only (5,000 items: see benchmarks/scale.py). Scoring runs once on all rows.
    The directory is written beside its final place and renamed into it when complete
    (audit/rundir.py); Ctrl-C raises `Interrupted` saying what the cache kept."""
    started = time.time()
    task = get_task(config.task)
    options = task_options(config.task_args)  # a bad --task-arg fails before the model loads
    probe_objs = get_probes(list(config.probes))
    loaded = task.load(config.n, config.seed)
    items = list(loaded.items)
    run_dir = Path(config.out) if config.out else default_run_dir(config.model, config.task)
    own_cache = cache is None
    cache = cache or CallCache(config.cache_path or default_cache_path())
    work = partial_dir(run_dir)
    own_backend = backend is None
    engine = None
    try:
        backend = backend or load_backend(config.model, list(config.model_args))
        configure_task(task, options, backend)
        engine = Engine(backend, cache, progress=config.progress, label=config.model)
        result = _run(config, task, probe_objs, loaded, items, backend, cache, engine, work, started)
        publish(work, run_dir)
        return replace(result, run_dir=run_dir)
    except KeyboardInterrupt:
        discard(work)
        raise Interrupted(_interrupted(engine, cache, run_dir)) from None
    except BaseException:
        discard(work)
        raise
    finally:
        if own_backend and backend is not None:
            backend.close()
        if own_cache:
            cache.close()


def _interrupted(engine: Engine | None, cache: CallCache, run_dir: Path) -> str:
    """The truth about what an interrupted audit kept."""
    saved = engine.stats.saved_calls if engine else 0
    kept = "the previous run there is unchanged" if (run_dir / "summary.json").exists() else "nothing was written there"
    return (f"interrupted: the {saved} model call(s) this run had answered are saved in {cache.path}; calls still in "
            f"flight were lost; the run directory {run_dir} was not written ({kept}); run the same command to resume")


def _run(config: AuditConfig, task, probe_objs, loaded, items: list[TaskItem], backend, cache: CallCache,
         engine: Engine, work: Path, started: float) -> AuditResult:
    from faithcheck.rewriters import load_rewriter

    rewriter = load_rewriter(config.rewriter, list(config.rewriter_args), engine)
    try:
        return _run_with(config, task, probe_objs, loaded, items, backend, engine, work, started, rewriter)
    finally:
        rewriter.close()


def _run_with(config: AuditConfig, task, probe_objs, loaded, items: list[TaskItem], backend, engine: Engine,
              work: Path, started: float, rewriter) -> AuditResult:
    from faithcheck.report.tables import append_traces, write_run_dir

    ctx = ProbeContext(task, config.seed, backend.count_tokens, rewriter, config.samples, config.options)
    traces: list[Trace] = []
    tables: list[pd.DataFrame] = []
    samples: list[pd.DataFrame] = []
    size = max(1, config.block_items)
    with open(work / "traces.jsonl", "w", encoding="utf-8") as trace_file:
        for start in range(0, len(items), size):
            block = items[start:start + size]
            tag = f" [{start // size + 1}/{-(-len(items) // size)}]" if len(items) > size else ""
            block_traces, sampled, variants, table = _audit_block(engine, task, probe_objs, block, ctx, rewriter, config, tag)
            append_traces(trace_file, block_traces, variants, table, sampled)
            trace_file.flush()
            traces.extend(block_traces)
            tables.append(table)
            if sampled is not None:
                samples.append(sampled)
    table = pd.concat(tables, ignore_index=True) if tables else _empty_outcomes()
    del tables
    sampled_all = pd.concat(samples, ignore_index=True) if samples else None
    metrics = _score(probe_objs, table, ctx)
    if sampled_all is not None:
        shift = distribution_shift(table, sampled_all, config.seed)
        metrics = {n: replace(m, extras={**m.extras, **shift.get(n, {})}) for n, m in metrics.items()}
    answered = [t for t in traces if not t.failed_call]
    cot_acc = cot_accuracy(traces)  # failed calls and unparseable answers are not wrong answers
    measurement = assess(engine.stats.unique, engine.stats.failed_calls, len(traces),
                         len(traces) - len(answered), config.max_failed_share)
    verdict = decide(metrics, cot_acc, task.chance, len(items))
    if not measurement.measured:
        verdict = Verdict("inconclusive", f"not measured: {measurement.reason}")
    summary = write_run_dir(
        work, config=config, task=task, items=items, skipped=loaded.skipped, traces=traces,
        table=table, metrics=metrics, cot_accuracy=cot_acc,
        verdict=verdict, backend=backend, engine_stats=engine.stats, calls_by_role=engine.stats_by_role(),
        seconds=time.time() - started,
        measurement=measurement,
    )
    return AuditResult(config, work, summary, table, tuple(traces), metrics, verdict, sampled_all, measurement)


def _empty_outcomes() -> pd.DataFrame:
    return pd.DataFrame(columns=list(Outcome.__dataclass_fields__))


def _audit_block(engine: Engine, task, probe_objs, items: list[TaskItem], ctx: ProbeContext, rewriter,
                 config: AuditConfig, tag: str) -> tuple[list[Trace], pd.DataFrame | None, list[Variant], pd.DataFrame]:
    """One block of items, end to end up to its outcome rows."""
    traces = baseline(engine, task, items, tag)
    sampled = baseline_samples(engine, task, items, config)
    traces_by_id = {t.item_id: t for t in traces}
    items_by_id = {i.id: i for i in items}
    # an item whose baseline call failed has no reference answer: no variant of it can be read
    # no baseline answer to compare with: a failed call, or a CoT cut by its token budget
    items = [i for i in items if not (traces_by_id[i.id].failed_call or traces_by_id[i.id].budget_hit)]
    ctx = replace(ctx, rewrites=resolve_rewrites(probe_objs, items, traces_by_id, ctx, rewriter))
    variants: list[Variant] = []
    for probe in probe_objs:
        for item in items:
            variants.extend(probe.variants(item, traces_by_id[item.id], ctx))
    expanded = expand_samples(variants, config)
    answered = _resolve_valid(engine, task, expanded, f"probe variants{tag}")
    outcomes = _outcomes(task, items_by_id, traces_by_id, [v for v, _ in expanded], answered)
    outcomes = _judge(probe_objs, rewriter, outcomes)
    table = pd.DataFrame([o.__dict__ for o in outcomes]) if outcomes else _empty_outcomes()
    return traces, sampled, [v for v, _ in expanded], table


def _resolve_valid(engine: Engine, task, expanded: list[tuple[Variant, Query]], desc: str) -> list[Answered]:
    """Answers to the variants that passed their checks; one that failed them is never sent
    (its row is kept, with no answer, and counted as a failed check)."""
    sent = [i for i, (v, _) in enumerate(expanded) if v.valid]
    got = resolve(engine, task, [expanded[i][1] for i in sent], desc)
    answered = [Answered(v.prefill, None, "", False) for v, _ in expanded]
    for i, a in zip(sent, got):
        answered[i] = a
    return answered


def resolve_rewrites(probe_objs, items, traces_by_id, ctx, rewriter) -> dict:
    """Every rewrite the probes ask for, in one batch: RewriteRequest.key() -> Rewrite. A probe
    may ask only for the kinds it declares (`contributes.rewrites`), so the declaration is true."""
    requests = {}
    for probe in probe_objs:
        for item in items:
            for r in probe.rewrite_requests(item, traces_by_id[item.id], ctx):
                if r.kind not in probe.contributes.rewrites:
                    raise ValueError(f"probe {probe.name!r} asks for a {r.kind!r} rewrite but declares only "
                                     f"{probe.contributes.rewrites} in contributes.rewrites")
                requests.setdefault(r.key(), r)
    results = rewriter.rewrite(list(requests.values())) if requests else []
    return dict(zip(requests, results))


def _score(probe_objs, table: pd.DataFrame, ctx: ProbeContext) -> dict[str, ProbeMetrics]:
    return score_probes(probe_objs, table, ctx)
