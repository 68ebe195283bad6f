"""An audit, end to end: items -> baseline traces -> variants -> outcomes -> metrics -> verdict -> run dir."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd

from faithcheck.backends import load_backend
from faithcheck.engine.answering import Answered, Query, resolve
from faithcheck.engine.cache import CallCache, default_cache_path
from faithcheck.engine.engine import Engine
from faithcheck.probes import DEFAULT_PROBES, ProbeContext, ProbeMetrics, get_probes
from faithcheck.probes.base import JUDGE_CHECK
from faithcheck.records import Outcome, TaskItem, Trace, Variant
from faithcheck.scoring.distribution import distribution_shift
from faithcheck.scoring.stats import holm, wilson
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
    rewriter: str | None = None
    rewriter_args: tuple[str, ...] = ()
    samples: int = 1
    temperature: float = 0.0
    task_args: tuple[str, ...] = ()  # --task-arg: budgets, prompting mode, system prompt, think tags
    cache_path: Path | None = None
    progress: bool = True
    block_items: int = 500  # items whose calls and variants are held at once
    options: dict[str, Any] = field(default_factory=dict)


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


def default_run_dir(model: str, task: str) -> Path:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{model}-{task}").strip("_")[:80]
    return Path("reports") / f"{slug}-{date.today().isoformat()}"


def baseline(engine: Engine, task, items: list[TaskItem], tag: str = "") -> list[Trace]:
    prompts = [task.prompt(item) for item in items]
    answered = resolve(engine, task, [Query(p, "", "generate") for p in prompts], f"baseline CoT{tag}", mark_budget=True)
    traces = []
    for item, prompt, a in zip(items, prompts, answered):
        traces.append(Trace(item.id, prompt, a.cot, tuple(task.split_steps(a.cot)), a.answer,
                            task.is_correct(item, a.answer), a.written, budget_hit=a.budget_hit))
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
    table only (5,000 items: see benchmarks/scale.py). Scoring runs once on all rows."""
    from faithcheck.report.tables import append_traces, write_run_dir

    started = time.time()
    task = get_task(config.task)
    options = task_options(config.task_args)  # a bad --task-arg fails before the model loads
    probe_objs = get_probes(list(config.probes))
    loaded = task.load(config.n, config.seed)
    items = list(loaded.items)
    own_backend = backend is None
    backend = backend or load_backend(config.model, list(config.model_args))
    configure_task(task, options, backend)
    cache = cache or CallCache(config.cache_path or default_cache_path())
    engine = Engine(backend, cache, progress=config.progress)
    run_dir = Path(config.out) if config.out else default_run_dir(config.model, config.task)
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        from faithcheck.rewriters import load_rewriter

        rewriter = load_rewriter(config.rewriter, list(config.rewriter_args), cache, config.progress)
        ctx = ProbeContext(task, config.seed, backend.count_tokens, rewriter, config.samples, dict(config.options))
        traces: list[Trace] = []
        tables: list[pd.DataFrame] = []
        samples: list[pd.DataFrame] = []
        size = max(1, config.block_items)
        with open(run_dir / "traces.jsonl", "w") as trace_file:
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
        cot_acc = wilson(sum(t.correct for t in traces), len(traces))
        verdict = decide(metrics, cot_acc, task.chance, len(items))
        summary = write_run_dir(
            run_dir, config=config, task=task, items=items, skipped=loaded.skipped, traces=traces,
            variants=None, table=table, metrics=metrics, cot_accuracy=cot_acc,
            verdict=verdict, backend=backend, engine_stats=engine.stats, seconds=time.time() - started,
            baseline_samples=sampled_all,
        )
        return AuditResult(config, run_dir, summary, table, tuple(traces), metrics, verdict, sampled_all)
    finally:
        if own_backend:
            backend.close()


def _empty_outcomes() -> pd.DataFrame:
    return pd.DataFrame(columns=list(Outcome.__dataclass_fields__))


def _audit_block(engine: Engine, task, probe_objs, items: list[TaskItem], ctx: ProbeContext, rewriter,
                 config: AuditConfig, tag: str) -> tuple[list[Trace], pd.DataFrame | None, list[Variant], pd.DataFrame]:
    """One block of items, end to end up to its outcome rows."""
    traces = baseline(engine, task, items, tag)
    sampled = baseline_samples(engine, task, items, config)
    traces_by_id = {t.item_id: t for t in traces}
    items_by_id = {i.id: i for i in items}
    items = [i for i in items if not traces_by_id[i.id].budget_hit]  # no baseline answer to compare with
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
    requests = {}
    for probe in probe_objs:
        for item in items:
            for r in probe.rewrite_requests(item, traces_by_id[item.id], ctx):
                requests.setdefault(r.key(), r)
    results = rewriter.rewrite(list(requests.values())) if requests else []
    return dict(zip(requests, results))


def _score(probe_objs, table: pd.DataFrame, ctx: ProbeContext) -> dict[str, ProbeMetrics]:
    ctx = replace(ctx, outcomes=table)
    metrics = {}
    for probe in probe_objs:
        rows = table[table["probe"] == probe.name]
        metrics[probe.name] = probe.metrics(rows, ctx)
    names = list(metrics)
    adjusted = holm([metrics[n].headline.p_value for n in names])
    for n, p in zip(names, adjusted):
        metrics[n] = replace(metrics[n], headline=replace(metrics[n].headline, p_adjusted=p))
    return metrics

