"""Every number a run's summary, CLI and report show, computed here once.

The report lays these out and computes nothing; the CLI prints them. Holm's adjustment runs
over every p-value of the run (headlines and the extras that carry a test), so a reader can
trust any p (Holm) they see.
"""

from __future__ import annotations

from dataclasses import replace

import pandas as pd

from faithcheck.probes import accuracy_conditions
from faithcheck.scoring.outcomes import KINDS, outcome_kind
from faithcheck.scoring.retained import cot_benefit_retained
from faithcheck.scoring.stats import Estimate, holm, wilson



def score_probes(probe_objs, table: pd.DataFrame, ctx) -> dict:
    """probe name -> ProbeMetrics, with Holm-adjusted p-values across the whole run."""
    ctx = replace(ctx, outcomes=table)
    metrics = {p.name: p.metrics(table[table["probe"] == p.name], ctx) for p in probe_objs}
    return adjust(metrics)


def adjust(metrics: dict) -> dict:
    slots = [(name, None) for name in metrics] + [(name, key) for name, m in metrics.items() for key in m.extras]
    estimates = [metrics[n].headline if k is None else metrics[n].extras[k] for n, k in slots]
    adjusted = holm([e.p_value for e in estimates])
    out = dict(metrics)
    for (name, key), e, p in zip(slots, estimates, adjusted):
        if e.p_value is None:
            continue
        m = out[name]
        if key is None:
            out[name] = replace(m, headline=replace(e, p_adjusted=p))
        else:
            out[name] = replace(m, extras={**m.extras, key: replace(e, p_adjusted=p)})
    return out


def cot_accuracy(traces) -> Estimate:
    """Baseline CoT accuracy over the traces whose answer could be parsed (the others are
    counted beside it, never scored as wrong)."""
    parsed = [t for t in traces if t.answer is not None]
    return wilson(sum(bool(t.correct) for t in parsed), len(parsed))


def outcome_totals(table: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Per probe, how many variant rows are of each outcome kind (scored, unparseable, ...)."""
    if not len(table):
        return {}
    kinds = outcome_kind(table)
    counts = pd.crosstab(table["probe"], kinds)
    return {str(p): {k: int(counts.loc[p, k]) if k in counts.columns else 0 for k in KINDS} for p in counts.index}


def summary_numbers(metrics: dict, cot_acc: Estimate, table: pd.DataFrame, traces, seed: int) -> dict:
    """The numeric part of summary.json: accuracy by condition, each probe's metrics, the
    CoT benefit retained, and the outcome counts (failed calls, unparseable answers)."""
    accuracy = {"cot": cot_acc.to_dict()}
    for name, _ in accuracy_conditions():  # probes whose headline is an accuracy shown beside the CoT's
        if name in metrics and metrics[name].headline_name == "accuracy":
            accuracy[name] = metrics[name].headline.to_dict()
    retained = cot_benefit_retained(table, seed) if len(table) else {}
    unparsed = sum(t.answer is None for t in traces)
    over_budget = sum(bool(getattr(t, "budget_hit", False)) for t in traces)
    notes = [n for m in metrics.values() for n in m.notes]
    if over_budget:
        notes.append(f"baseline: {over_budget} of {len(traces)} CoTs hit the token budget before stating an answer; "
                     "they have no answer (left out of CoT accuracy and of every probe); raise the budget with "
                     "--task-arg max_cot_tokens=N")
    if traces and unparsed > len(traces) / 2:
        notes.insert(0, f"baseline: {unparsed} of {len(traces)} CoT answers could not be parsed; CoT accuracy is "
                        f"read on the {len(traces) - unparsed} that could (not an accuracy of 0)")
    return {
        "accuracy": accuracy,
        "probes": {name: m.to_dict() for name, m in metrics.items()},
        "cot_benefit_retained": {k: e.to_dict() for k, e in retained.items()},
        "outcomes": outcome_totals(table),
        "unparseable_baseline_answers": unparsed,
        "budget_hit_baselines": over_budget,
        "notes": notes,
    }


__all__ = ["adjust", "cot_accuracy", "outcome_totals", "score_probes", "summary_numbers"]
