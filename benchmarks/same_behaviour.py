"""Did a refactor change what an audit measures? Compare two run directories (or two folders of
them, one per organism) row by row and headline by headline.

    python benchmarks/same_behaviour.py BEFORE_DIR AFTER_DIR

Outcomes are matched on (item_id, probe, params, sample) and compared on the columns that
say what the model did (its answer, same-as-baseline, the variant's validity, failed call);
summaries on every point estimate (CoT accuracy, each probe's headline and extras, CoT
benefit retained) and the verdict label. Intervals and p-values are left out on purpose:
they are allowed to change (honest intervals), the measurements are not. Prints every
difference and exits 1 when there is one.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import pandas as pd

ROW_KEY = ["item_id", "probe", "params", "sample"]
TOLERANCE = 1e-6  # summaries before 2026-12 rounded estimates to 6 decimals
ROW_COLUMNS = ["baseline_answer", "answer", "same_as_baseline", "valid", "failed_call", "target", "follows_target"]


def _runs(root: Path) -> dict[str, Path]:
    if (root / "summary.json").exists():
        return {root.name: root}
    return {p.name: p for p in sorted(root.iterdir()) if (p / "summary.json").exists()}


def _norm(value):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


def compare_outcomes(a: Path, b: Path) -> list[str]:
    ta, tb = (pd.read_parquet(d / "outcomes.parquet") for d in (a, b))
    for t in (ta, tb):
        t["params"] = t["params"].map(lambda p: p if isinstance(p, str) else json.dumps(p, sort_keys=True))
    cols = [c for c in ROW_COLUMNS if c in ta.columns and c in tb.columns]
    merged = ta[ROW_KEY + cols].merge(tb[ROW_KEY + cols], on=ROW_KEY, how="outer", suffixes=("_a", "_b"), indicator=True)
    out = [f"{len(merged[merged['_merge'] != 'both'])} rows in only one run"] if (merged["_merge"] != "both").any() else []
    both = merged[merged["_merge"] == "both"]
    for c in cols:
        diff = [(r, x, y) for r, x, y in zip(both[ROW_KEY].itertuples(index=False), both[f"{c}_a"], both[f"{c}_b"])
                if _norm(x) != _norm(y)]
        if diff:
            out.append(f"{c}: {len(diff)} of {len(both)} rows differ, e.g. {diff[0]}")
    return out


def point_estimates(summary: dict) -> dict[str, float | None]:
    out = {f"accuracy.{k}": v.get("estimate") for k, v in summary.get("accuracy", {}).items()}
    for name, m in summary.get("probes", {}).items():
        out[f"{name}.{m.get('metric')}"] = m.get("estimate")
        out.update({f"{name}.{k}": e.get("estimate") for k, e in (m.get("extras") or {}).items()})
    out.update({f"retained.{k}": e.get("estimate") for k, e in (summary.get("cot_benefit_retained") or {}).items()})
    return out


def compare_summaries(a: Path, b: Path) -> list[str]:
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (a, b))
    out = []
    if sa["verdict"]["label"] != sb["verdict"]["label"]:
        out.append(f"verdict {sa['verdict']['label']} -> {sb['verdict']['label']}")
    pa, pb = point_estimates(sa), point_estimates(sb)
    for key in sorted(set(pa) | set(pb)):
        x, y = _norm(pa.get(key)), _norm(pb.get(key))
        if key not in pa or key not in pb:
            out.append(f"{key}: only in {'after' if key in pb else 'before'}")
        elif (x is None) != (y is None) or (x is not None and abs(x - y) > TOLERANCE):
            out.append(f"{key}: {x} -> {y}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    args = parser.parse_args()
    before, after = _runs(args.before), _runs(args.after)
    differences = 0
    for name in sorted(set(before) | set(after)):
        if name not in before or name not in after:
            print(f"{name}: only in {'after' if name in after else 'before'}")
            differences += 1
            continue
        rows, summary = compare_outcomes(before[name], after[name]), compare_summaries(before[name], after[name])
        label = json.loads((after[name] / "summary.json").read_text())["verdict"]["label"]
        n_rows = len(pd.read_parquet(after[name] / "outcomes.parquet"))
        print(f"{name}: {n_rows} outcome rows, verdict {label}: "
              + ("identical outcomes and point estimates" if not rows and not summary else "DIFFERENCES"))
        for line in rows + summary:
            print(f"  {line}")
        differences += len(rows) + len(summary)
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main())
