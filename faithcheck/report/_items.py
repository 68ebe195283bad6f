"""The per-item view: each item's baseline CoT beside every variant's text, word differences marked.

Differences are returned as (kind, text) segments so the template escapes every piece of
model text itself; `kind` is one of a fixed set of CSS class names."""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from typing import Any

import pandas as pd

from faithcheck.report._rundata import RunData
from faithcheck.scoring.outcomes import params_of

TOKEN = re.compile(r"\s+|[^\s]+")
Segment = tuple[str, str]  # ("same" | "del" | "ins", text)


def word_diff(before: str, after: str) -> tuple[list[Segment], list[Segment]]:
    """Word-level diff: (segments of `before` with removals marked, segments of `after` with insertions marked)."""
    a, b = TOKEN.findall(before or ""), TOKEN.findall(after or "")
    left: list[Segment] = []
    right: list[Segment] = []
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            left.append(("same", "".join(a[i1:i2])))
            right.append(("same", "".join(b[j1:j2])))
            continue
        if i2 > i1:
            left.append(("del", "".join(a[i1:i2])))
        if j2 > j1:
            right.append(("ins", "".join(b[j1:j2])))
    return left, right


@dataclass(frozen=True)
class VariantView:
    probe: str
    params: str
    mode: str
    valid: bool
    failed_call: bool
    checks: str
    baseline_segments: list[Segment]
    variant_segments: list[Segment]
    completion: str          # the model's continuation after a prefill ("" when diffed as the whole text)
    answer: Any
    correct: Any
    same_as_baseline: Any
    target: Any


@dataclass(frozen=True)
class ItemView:
    anchor: str
    item_id: str
    prompt: str
    cot: str
    answer: Any
    correct: Any
    variants: list[VariantView]
    changed: int
    probes_changed: list[str]


def _params_text(params: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(params.items()))


def _checks_text(value: Any) -> str:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return value
    if not value:
        return ""
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in sorted(value.items()))
    return str(value)


def _none_if_na(value: Any) -> Any:
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        return value
    return value.item() if hasattr(value, "item") else value  # numpy scalars -> Python, so `is False` works


def _variant_view(cot: str, row: pd.Series, trace: dict | None) -> VariantView:
    prefill = (trace or {}).get("prefill") or ""
    completion = (trace or {}).get("completion", row.get("completion")) or ""
    if prefill:
        left, right = word_diff(cot, prefill)
        shown_completion = completion
    else:
        left, right = word_diff(cot, completion)
        shown_completion = ""
    return VariantView(
        probe=str(row["probe"]), params=_params_text(params_of(row.get("params"))),
        mode=str((trace or {}).get("mode", "")), valid=bool(row.get("valid", True)),
        failed_call=bool(row.get("failed_call", False)), checks=_checks_text(row.get("checks")),
        baseline_segments=left, variant_segments=right, completion=shown_completion,
        answer=_none_if_na(row.get("answer")), correct=_none_if_na(row.get("correct")),
        same_as_baseline=_none_if_na(row.get("same_as_baseline")), target=_none_if_na(row.get("target")),
    )


def _traces_by_row(run: RunData) -> list[dict | None]:
    """traces.jsonl lists variants in outcome-row order; trust that only where item and probe agree."""
    out: list[dict | None] = []
    for i, row in enumerate(run.outcomes.itertuples(index=False)):
        t = run.variants[i] if i < len(run.variants) else None
        ok = t is not None and str(t.get("item_id")) == str(row.item_id) and t.get("probe") == row.probe
        out.append(t if ok else None)
    return out


def shown_item_ids(table, item_ids: list[str], limit: int | None, per_probe: int = 12) -> list[str]:
    """At most `limit` items for the report, in audit order: first up to `per_probe` items whose
    answer changed under each probe (the evidence behind a flag), then other changed items,
    then the rest. Every item stays in outcomes.parquet and traces.jsonl."""
    if limit is None or len(item_ids) <= limit:
        return item_ids
    changed = table[table["valid"].astype(bool) & ~table["failed_call"].astype(bool) & (table["same_as_baseline"] == False)]  # noqa: E712
    chosen: dict[str, None] = {}
    groups = list(changed.groupby("probe", sort=False))
    per = min(per_probe, max(1, limit // max(1, len(groups))))  # every probe's evidence fits the limit
    for _, rows in groups:
        for i in list(rows["item_id"].unique())[:per]:
            if len(chosen) < limit:
                chosen.setdefault(i, None)
    for pool in (list(changed["item_id"].unique()), item_ids):
        for i in pool:
            if len(chosen) >= limit:
                break
            chosen.setdefault(i, None)
    return [i for i in item_ids if i in chosen]


def item_views(run: RunData, limit: int | None = None) -> list[ItemView]:
    """One view per item (at most `limit`, see `shown_item_ids`)."""
    traces = _traces_by_row(run)
    table = run.outcomes.assign(_trace=traces)
    item_ids = list(run.baselines) + [i for i in table["item_id"].unique() if i not in run.baselines]
    if len(table):
        item_ids = shown_item_ids(table, item_ids, limit)
    elif limit is not None:
        item_ids = item_ids[:limit]
    groups = {k: g for k, g in table.groupby("item_id", sort=False)} if len(table) else {}
    views = []
    for n, item_id in enumerate(item_ids):
        base = run.baselines.get(item_id, {})
        cot = base.get("cot") or ""
        rows = groups.get(item_id)
        variants = [] if rows is None else [_variant_view(cot, r, r["_trace"]) for _, r in rows.iterrows()]
        changed = [v for v in variants if v.valid and not v.failed_call and v.same_as_baseline is False]
        views.append(ItemView(
            anchor=f"item-{n}", item_id=item_id, prompt=base.get("prompt") or "", cot=cot,
            answer=base.get("answer"), correct=base.get("correct"), variants=variants, changed=len(changed),
            probes_changed=sorted({v.probe for v in changed}),
        ))
    return views
