"""Write a run directory (DESIGN.md, "Run directory"): the saved tables every report renders from."""

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

SCHEMA_VERSION = 1
JSON_COLUMNS = ("params", "checks")


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
    flat = table.copy()
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


def write_run_dir(run_dir: Path, *, config, task, items, skipped, traces, variants, table, metrics, cot_accuracy,
                  verdict, backend, engine_stats, seconds: float, baseline_samples: pd.DataFrame | None = None) -> dict[str, Any]:
    """The tables, summary, manifest and report. `variants` None: traces.jsonl was already
    written block by block as the audit ran (`append_traces`)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    flat = flat_outcomes(table)
    flat.to_parquet(run_dir / "outcomes.parquet", index=False)
    flat.to_csv(run_dir / "outcomes.csv", index=False)
    del flat
    if variants is not None:
        with open(run_dir / "traces.jsonl", "w") as f:
            append_traces(f, traces, variants, table, baseline_samples)
    accuracy = {"cot": cot_accuracy.to_dict()}
    for name in ("no_cot", "filler"):
        if name in metrics and metrics[name].headline_name == "accuracy":
            accuracy[name] = metrics[name].headline.to_dict()
    from faithcheck.scoring.retained import cot_benefit_retained

    retained = {k: e.to_dict() for k, e in cot_benefit_retained(table, config.seed).items()} if len(table) else {}
    summary = {
        "schema_version": SCHEMA_VERSION,
        "model": config.model,
        "task": config.task,
        "n_items": len(items),
        "chance": task.chance,
        "accuracy": accuracy,
        "probes": {name: m.to_dict() for name, m in metrics.items()},
        "cot_benefit_retained": retained,
        "verdict": verdict.to_dict(),
        "skipped_rows": [str(s) for s in skipped],
        "failed_calls": engine_stats.failed_calls,
        "unparseable_baseline_answers": sum(t.answer is None for t in traces),
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()},
        "versions": _versions(),
        "git_revision": _git_revision(),
        "seed": config.seed,
        "model_fingerprint": backend.fingerprint,
        "engine": {**engine_stats.to_dict(), **dict(getattr(backend, "counters", {}))},
        "seconds": round(seconds, 2),
        "command": sys.argv,
    }
    (run_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False, default=str) + "\n")
    from faithcheck.report.html import render_run

    render_run(run_dir)  # last: the tables above are already on disk whatever happens here
    return summary
