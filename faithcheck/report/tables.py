"""Write a run directory (DESIGN.md, "Run directory"): the saved tables every report renders from.

The manifest lists each table's size, written after them, so a reader can tell a whole
run directory from one cut short (`_rundata.load_run` checks). outcomes.csv is for
spreadsheets: a text cell that a spreadsheet would run as a formula (starting with = + -
@ tab or CR, as OWASP lists) gets a leading `'`; outcomes.parquet keeps the raw text.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from faithcheck.paths import REPO_ROOT
from faithcheck.records import canonical_json

SCHEMA_VERSION = 2  # 2: curve points per measured fraction, outcome counts, notes, degenerate flags, test names, full-precision p
JSON_COLUMNS = ("params", "checks")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
CHECKED_FILES = ("outcomes.parquet", "outcomes.csv", "traces.jsonl", "summary.json")


def neutralise_formula(value: Any) -> Any:
    """`'` before a text cell a spreadsheet would execute. Cells already starting with quotes
    before such a character get one more, so `unneutralise_formula` restores every value exactly."""
    if isinstance(value, str) and value.lstrip("'")[:1] in FORMULA_START and value.lstrip("'"):
        return "'" + value
    return value


def unneutralise_formula(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("'") and value.lstrip("'")[:1] in FORMULA_START and value.lstrip("'"):
        return value[1:]
    return value


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("faithcheck", "torch", "transformers", "numpy", "scipy", "pandas"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def _git_revision() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                              timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def flat_outcomes(table: pd.DataFrame) -> pd.DataFrame:
    """Outcomes with dict columns as JSON strings, so CSV and Parquet hold the same table."""
    from faithcheck.scoring.outcomes import outcome_kind

    flat = table.copy()
    flat["outcome"] = outcome_kind(table).to_numpy()  # scored / unparseable / failed_call / ...: an outcome of its own
    for col in JSON_COLUMNS:
        if col in flat:
            flat[col] = flat[col].map(canonical_json)
    return flat


def append_traces(f, traces, variants, table: pd.DataFrame, baseline_samples: pd.DataFrame | None = None) -> None:
    """Write one block of an audit to an open traces.jsonl: its baselines, then its variants in
    outcome-row order (the report pairs the two by position within each item and probe)."""
    for t in traces:
        f.write(json.dumps({"type": "baseline", **asdict(t)}, ensure_ascii=False) + "\n")
    for rec in ([] if baseline_samples is None else baseline_samples.to_dict("records")):
        f.write(json.dumps({"type": "baseline_sample", **rec}, ensure_ascii=False) + "\n")
    for v, completion, answer in zip(variants, table["completion"], table["answer"]):
        f.write(json.dumps({"type": "variant", "id": v.id, **asdict(v), "completion": completion,
                            "answer": answer}, ensure_ascii=False) + "\n")


def write_run_dir(run_dir: Path, *, config, task, items, skipped, traces, table, metrics, cot_accuracy,
                  verdict, backend, engine_stats, seconds: float, measurement=None,
                  calls_by_role: dict | None = None) -> dict[str, Any]:
    """The tables, summary, manifest and report (traces.jsonl is written block by block as the
    audit runs: `append_traces`)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    flat = flat_outcomes(table)
    flat.to_parquet(run_dir / "outcomes.parquet", index=False)
    # CRLF rows (RFC 4180): a cell holding a bare CR is then quoted too, not split into two rows
    flat.map(neutralise_formula).to_csv(run_dir / "outcomes.csv", index=False, lineterminator="\r\n")
    del flat
    from faithcheck.scoring.posthoc_share import graded
    from faithcheck.scoring.summary import summary_numbers

    numbers = summary_numbers(metrics, cot_accuracy, table, traces, config.seed)
    summary = {
        "schema_version": SCHEMA_VERSION,
        "model": config.model,
        "task": config.task,
        "n_items": len(items),
        "chance": task.chance,
        "accuracy": numbers["accuracy"],
        "probes": numbers["probes"],
        "cot_benefit_retained": numbers["cot_benefit_retained"],
        "outcomes": numbers["outcomes"],
        "notes": numbers["notes"],
        "verdict": verdict.to_dict(),
        "graded": graded(table, metrics, cot_accuracy, task.chance),
        "skipped_rows": [str(s) for s in skipped],
        "failed_calls": engine_stats.failed_calls,
        "failed_baseline_calls": sum(bool(getattr(t, "failed_call", False)) for t in traces),
        "measurement": None if measurement is None else measurement.to_dict(),
        "unparseable_baseline_answers": numbers["unparseable_baseline_answers"],
        "budget_hit_baselines": numbers.get("budget_hit_baselines", 0),
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()},
        "versions": _versions(),
        "git_revision": _git_revision(),
        "seed": config.seed,
        "model_fingerprint": backend.fingerprint,
        "model_identity": backend.identity.to_dict(),  # what the call cache keys on
        "engine": engine_stats.to_dict(),
        "calls_by_role": calls_by_role or {"audited": engine_stats.to_dict()},  # the rewriter's and judge's calls too
        "backend": dict(getattr(backend, "counters", {})),  # retries and their causes, seconds waited, ...
        "seconds": round(seconds, 2),
        "command": sys.argv,
        "files": {name: (run_dir / name).stat().st_size for name in CHECKED_FILES if (run_dir / name).exists()},
    }
    (run_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False, default=str) + "\n")
    from faithcheck.report.html import render_run

    render_run(run_dir)  # last: the tables above are already on disk whatever happens here
    return summary
