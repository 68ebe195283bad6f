"""What each outcome row is, before any rate is read from it.

A variant's row is one of: `scored` (a parsed answer to a variant that passed its checks,
read against a parsed baseline answer), `failed_call` (the model call failed: no answer),
`failed_check` (the rewrite did not pass its checks), `unparseable` (the model answered but
no answer could be parsed from it), or `baseline_unparseable` (the item's baseline answer
could not be parsed, so "same as baseline" means nothing). Only `scored` rows enter a rate;
the others are counted beside it (DESIGN.md: never scored as wrong answers).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pandas only in annotations: `faithcheck list` must not pay its import
    import pandas as pd

KINDS = ("scored", "failed_call", "failed_check", "unparseable", "baseline_unparseable")
MOSTLY = 0.5  # a probe whose answered variants are more than half unparseable says so


def params_of(value: Any) -> dict[str, Any]:
    """An outcome row's params: a dict in memory, a canonical JSON string once saved (the
    parquet and CSV tables); anything else reads as no params."""
    if isinstance(value, dict):
        return value
    try:
        out = json.loads(value) if isinstance(value, str) else {}
    except json.JSONDecodeError:
        return {}
    return out if isinstance(out, dict) else {}


def _missing(col: pd.Series) -> np.ndarray:
    return col.isna().to_numpy() if len(col) else np.zeros(0, dtype=bool)


def outcome_kind(rows: pd.DataFrame) -> pd.Series:
    """One of KINDS per row (first match in that order of precedence: call, checks, answer, baseline)."""
    import pandas as pd

    if not len(rows):
        return pd.Series([], dtype=object, index=rows.index)
    failed = rows["failed_call"].fillna(False).astype(bool).to_numpy()
    invalid = ~rows["valid"].fillna(False).astype(bool).to_numpy()
    no_answer = _missing(rows["answer"])
    no_base = _missing(rows["baseline_answer"])
    kind = np.select([failed, invalid, no_answer, no_base],
                     ["failed_call", "failed_check", "unparseable", "baseline_unparseable"], "scored")
    return pd.Series(kind, index=rows.index, dtype=object)


def scored_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows a rate is read from."""
    return rows[(outcome_kind(rows) == "scored").to_numpy()] if len(rows) else rows


def outcome_counts(rows: pd.DataFrame) -> dict[str, int]:
    """Counts beside every rate. `valid`: passed checks with an answered call (what the
    verdict's rewrite-quality rule reads); `scored`: what the rates are read from."""
    if not len(rows):
        return {k: 0 for k in ("variants", "valid", "scored", "failed_checks", "failed_calls", "unparseable",
                               "baseline_unparseable", "items", "scored_items")}
    kind = outcome_kind(rows)
    valid = rows["valid"].fillna(False).astype(bool)
    failed = rows["failed_call"].fillna(False).astype(bool)
    scored = (kind == "scored").to_numpy()
    return {
        "variants": int(len(rows)),
        "valid": int((valid & ~failed).sum()),
        "scored": int(scored.sum()),
        "failed_checks": int((~valid).sum()),
        "failed_calls": int(failed.sum()),
        "unparseable": int((kind == "unparseable").sum()),
        "baseline_unparseable": int((kind == "baseline_unparseable").sum()),
        "items": int(rows["item_id"].nunique()),
        "scored_items": int(rows.loc[scored, "item_id"].nunique()),
    }


def outcome_notes(probe: str, counts: dict[str, int]) -> tuple[str, ...]:
    """Sentences a reader must see beside the probe's numbers: mostly unparseable answers,
    failed calls, and what the rates are then read on."""
    notes = []
    answered = counts.get("valid", 0)  # passed checks, call answered
    unparseable = counts.get("unparseable", 0)
    if answered and unparseable > MOSTLY * answered:
        scored = counts.get("scored", 0)
        tail = "no rate can be read" if not scored else f"its rates are read on the {scored} that could"
        notes.append(f"{probe}: {unparseable} of {answered} answers could not be parsed; {tail} "
                     "(not an accuracy of 0)")
    if counts.get("failed_calls"):
        notes.append(f"{probe}: {counts['failed_calls']} of {counts['variants']} model calls failed and are left out")
    return tuple(notes)

