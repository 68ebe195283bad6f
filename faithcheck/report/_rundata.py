"""Read a run directory's saved tables (never live objects) into one frozen record for the reports.

An incomplete directory is refused (BadInput, exit 2), never rendered: one without
summary.json or manifest.json (the manifest is written after every table, so a killed
audit's hidden `.NAME.partial-PID` has none), or one whose tables differ in size from what
its manifest recorded when they were written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from faithcheck.errors import BadInput


@dataclass(frozen=True)
class RunData:
    run_dir: Path
    summary: dict[str, Any]
    manifest: dict[str, Any]
    outcomes: pd.DataFrame
    baselines: dict[str, dict[str, Any]]          # item_id -> baseline trace line
    variants: list[dict[str, Any]] = field(default_factory=list)  # one per outcome row, same order

    @property
    def label(self) -> str:
        return f"{self.summary.get('model', '?')} ({self.run_dir.name})"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise BadInput(f"{path}: missing; is {path.parent} a faithcheck run directory?") from None
    except json.JSONDecodeError as e:
        raise BadInput(f"{path}: not valid JSON ({e})") from None


def _read_outcomes(run_dir: Path) -> pd.DataFrame:
    parquet, csv = run_dir / "outcomes.parquet", run_dir / "outcomes.csv"
    if parquet.exists():
        table = pd.read_parquet(parquet)
    elif csv.exists():
        from faithcheck.report.tables import unneutralise_formula

        table = pd.read_csv(csv, dtype={"item_id": str}).map(unneutralise_formula)
    else:
        raise BadInput(f"{run_dir}: no outcomes.parquet or outcomes.csv")
    if len(table):
        table["item_id"] = table["item_id"].astype(str)
    return table.reset_index(drop=True)


def _read_traces(path: Path) -> tuple[dict[str, dict], list[dict]]:
    baselines: dict[str, dict] = {}
    variants: list[dict] = []
    if not path.exists():
        return baselines, variants
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise BadInput(f"{path}:{lineno}: not valid JSON ({e})") from None
            if rec.get("type") == "baseline":
                baselines[str(rec.get("item_id"))] = rec
            elif rec.get("type") == "variant":
                variants.append(rec)
    return baselines, variants


def check_complete(run_dir: Path) -> dict[str, Any]:
    """The run's manifest, once the directory is known to be whole; BadInput saying what is wrong."""
    if not run_dir.is_dir():
        raise BadInput(f"{run_dir}: not a directory")
    missing = [n for n in ("summary.json", "manifest.json") if not (run_dir / n).is_file()]
    if missing:
        raise BadInput(f"{run_dir}: incomplete run directory ({', '.join(missing)} missing); is it a faithcheck run "
                       "directory whose audit finished?")
    manifest = _read_json(run_dir / "manifest.json")
    for name, size in (manifest.get("files") or {}).items():
        path = run_dir / name
        actual = path.stat().st_size if path.is_file() else None
        if actual != size:
            found = "missing" if actual is None else f"{actual} bytes"
            raise BadInput(f"{run_dir}: incomplete or altered run directory: {name} is {found}, the manifest "
                           f"recorded {size} bytes when the audit wrote it")
    return manifest


def load_run(run_dir: Path) -> RunData:
    run_dir = Path(run_dir)
    manifest = check_complete(run_dir)
    summary = _read_json(run_dir / "summary.json")
    baselines, variants = _read_traces(run_dir / "traces.jsonl")
    return RunData(run_dir, summary, manifest, _read_outcomes(run_dir), baselines, variants)
