"""Comparison report across runs on one task: the same measures side by side, paired tests
between runs on their shared items (exact McNemar, Holm-adjusted), and each run's verdict.

Renders only from the runs' saved tables; writes report.html, comparison.csv/.parquet
(one row per run, item and probe) and paired_tests.csv."""

from __future__ import annotations

import itertools
import string
from pathlib import Path

import pandas as pd

from faithcheck.errors import BadInput
from faithcheck.report._plots import Series, bar_plot, curve_plot, has_data
from faithcheck.report._rundata import RunData, load_run
from faithcheck.scoring.outcomes import params_of
from faithcheck.report.html import (
    ACCURACY_AXES, REPORT_ITEMS, _point, curve_axes, environment, probe_curve, report_accuracy_conditions, verdict_view,
)
from faithcheck.probes import accuracy_conditions, contributions, curve_probes, rewrite_probes, with_evidence
from faithcheck.probes.base import HINT
from faithcheck.report._items import item_views
from faithcheck.scoring.stats import holm, mcnemar_exact

# The per-item measure each probe is compared on; any other probe is read as same-as-baseline.
MEASURES = {"baseline": "correct", **{name: "correct" for name, _ in accuracy_conditions()},
            **{name: "follows_target" for name in with_evidence(HINT)}}
# Variants a probe's headline reads, where it runs others beside them (Contributes.headline_variants):
# translation's card is the translated CoTs only, not the round trips or the competence control;
# paraphrase's is the whole-CoT paraphrase, not the first-half one.
HEADLINE_VARIANTS = {name: c.headline_variants for name, c in contributions().items() if c.headline_variants}


def _letters(n: int) -> list[str]:
    return [string.ascii_uppercase[i] if i < 26 else f"R{i + 1}" for i in range(n)]


def _column(table: pd.DataFrame, name: str) -> pd.Series:
    if name not in table:
        return pd.Series(float("nan"), index=table.index)
    return table[name].map(lambda v: None if v is None or pd.isna(v) else float(bool(v)))


def per_item_table(run: RunData, label: str) -> pd.DataFrame:
    """One row per item and probe: share of valid variants correct / with the baseline's answer."""
    cols = ["run", "model", "run_dir", "item_id", "probe", "variants", "valid", "baseline_correct", "correct",
            "same_as_baseline", "follows_target"]
    base = [{"item_id": i, "baseline_correct": t.get("correct")} for i, t in run.baselines.items()]
    rows = [{"run": label, "model": run.summary.get("model"), "run_dir": str(run.run_dir), "item_id": b["item_id"],
             "probe": "baseline", "variants": 1, "valid": 1, "baseline_correct": b["baseline_correct"],
             "correct": None if b["baseline_correct"] is None else float(bool(b["baseline_correct"])),
             "same_as_baseline": 1.0, "follows_target": None} for b in base]
    table = _headline_rows(run.outcomes)
    if len(table):
        from faithcheck.scoring.outcomes import outcome_kind

        ok = outcome_kind(table) == "scored"  # failed calls, failed checks and unparseable answers are not scored
        t = table.assign(_ok=ok, _correct=table["correct"].where(ok).astype(float),
                         _same=table["same_as_baseline"].where(ok).astype(float),
                         _follows=_column(table, "follows_target").where(ok).astype(float))
        agg = t.groupby(["item_id", "probe"], sort=False).agg(
            variants=("_ok", "size"), valid=("_ok", "sum"), baseline_correct=("baseline_correct", "first"),
            correct=("_correct", "mean"), same_as_baseline=("_same", "mean"), follows_target=("_follows", "mean"),
        ).reset_index()
        for r in agg.to_dict("records"):
            rows.append({"run": label, "model": run.summary.get("model"), "run_dir": str(run.run_dir), **r})
    out = pd.DataFrame(rows, columns=cols)
    out["valid"] = out["valid"].astype(int)
    out["baseline_correct"] = out["baseline_correct"].astype("boolean")
    return out


def _headline_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The outcome rows each probe's headline is computed from (HEADLINE_VARIANTS)."""
    if not len(table) or "params" not in table:
        return table
    keep = pd.Series(True, index=table.index)
    for probe, (key, value) in HEADLINE_VARIANTS.items():
        rows = table["probe"] == probe
        if rows.any():
            # a row without the parameter predates the split: it is the headline's
            keep[rows] = table.loc[rows, "params"].map(lambda p: params_of(p).get(key, value) == value)
    return table[keep]


def _check_comparable(runs: list[RunData]) -> list[str]:
    if len(runs) < 2:
        raise BadInput(f"compare needs at least two run directories, got {len(runs)}")
    tasks = {str(r.run_dir): r.summary.get("task") for r in runs}
    if len(set(tasks.values())) > 1:
        listing = "; ".join(f"{d}: task {t!r}" for d, t in tasks.items())
        raise BadInput(f"cannot compare runs on different tasks ({listing}); compare runs of one task only")
    item_sets = [set(r.baselines) | (set(r.outcomes["item_id"]) if len(r.outcomes) else set()) for r in runs]
    shared = set.intersection(*item_sets)
    if not shared:
        raise BadInput("the runs share no items (" + ", ".join(f"{r.run_dir}: {len(s)} items"
                       for r, s in zip(runs, item_sets)) + "); paired comparison needs the same items in every run")
    return sorted(shared)


def _per_item(table: pd.DataFrame, probe: str) -> pd.Series:
    column = MEASURES.get(probe, "same_as_baseline")
    return table[(table["probe"] == probe)].set_index("item_id")[column].dropna().astype(float)


def paired_tests(items: pd.DataFrame, labels: list[str], shared: list[str]) -> pd.DataFrame:
    """Exact McNemar between every pair of runs, per probe, on items both runs measured; Holm across all."""
    rows = []
    probes = [p for p in dict.fromkeys(items["probe"]) if p]
    per_run = {label: items[items["run"] == label] for label in labels}
    for probe in probes:
        measure = MEASURES.get(probe, "same_as_baseline")
        for a, b in itertools.combinations(labels, 2):
            xa, xb = _per_item(per_run[a], probe), _per_item(per_run[b], probe)
            both = sorted(set(xa.index) & set(xb.index) & set(shared))
            if not both:
                continue
            # the rates are the card's: each item's share of valid variants, averaged over items;
            # the test reads each item as a majority of its variants (McNemar needs one bit per item)
            ra, rb = xa.loc[both].to_numpy(), xb.loc[both].to_numpy()
            va, vb = ra >= 0.5, rb >= 0.5
            rows.append({
                "probe": probe, "measure": measure, "run_a": a, "run_b": b, "n_items": len(both),
                "rate_a": float(ra.mean()), "rate_b": float(rb.mean()),
                "a_only": int((va & ~vb).sum()), "b_only": int((~va & vb).sum()),
                "p_value": mcnemar_exact(va, vb),
            })
    table = pd.DataFrame(rows, columns=["probe", "measure", "run_a", "run_b", "n_items", "rate_a", "rate_b",
                                        "a_only", "b_only", "p_value"])
    table["p_holm"] = holm(table["p_value"].tolist()) if len(table) else []
    return table


def _context(runs: list[RunData], labels: list[str], tests: pd.DataFrame, shared: list[str]) -> dict:
    probes = list(dict.fromkeys(p for r in runs for p in r.summary.get("probes", {})))
    conditions = report_accuracy_conditions()
    acc_groups = [name for key, name in conditions if any(key in r.summary.get("accuracy", {}) for r in runs)]
    acc_keys = [key for key, name in conditions if name in acc_groups]
    acc_series = [Series(f"run {lab}", tuple(_point(i, r.summary.get("accuracy", {}).get(k)) for i, k in enumerate(acc_keys)))
                  for lab, r in zip(labels, runs)]
    curves, curve_missing = {}, {}
    for probe in curve_probes():
        if any(probe in r.summary.get("probes", {}) for r in runs):
            series = [Series(f"run {lab}", probe_curve(r, probe)) for lab, r in zip(labels, runs)]
            curves[probe] = curve_plot(series, probe.replace("_", " "), *curve_axes()[probe])
            curve_missing[probe] = [lab for lab, s in zip(labels, series) if not has_data(s)]
    return {
        "runs": [{"label": lab, "run": r, "summary": r.summary, "verdict": verdict_view(r, item_views(r, REPORT_ITEMS))}
                 for lab, r in zip(labels, runs)],
        "task": runs[0].summary.get("task"), "n_shared": len(shared), "probes": probes,
        "metrics": {p: m for r in reversed(runs) for p, v in r.summary.get("probes", {}).items() if (m := v.get("metric"))},
        "accuracy_keys": list(zip(acc_keys, acc_groups)),
        "accuracy_plot": bar_plot(acc_groups, acc_series, "accuracy (95% CI)", *ACCURACY_AXES,
                                  chance=runs[0].summary.get("chance")),
        "accuracy_missing": [lab for lab, s in zip(labels, acc_series) if not has_data(s)],
        "curves": curves, "curve_missing": curve_missing, "curve_probes": [p for p in curve_probes() if p in curves],
        "rewrite_probes": [p for p in rewrite_probes() if p in probes],
        "tests": tests.to_dict("records"),
    }


def render_comparison(run_dirs: list[Path], out: Path) -> Path:
    """Write out/report.html, out/comparison.csv (+ .parquet) and out/paired_tests.csv; return the HTML path.

    Raises BadInput when the runs are on different tasks or share no items."""
    runs = [load_run(Path(d)) for d in run_dirs]
    shared = _check_comparable(runs)
    labels = _letters(len(runs))
    items = pd.concat([per_item_table(r, lab) for r, lab in zip(runs, labels)], ignore_index=True)
    tests = paired_tests(items, labels, shared)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    items.to_csv(out / "comparison.csv", index=False)
    items.to_parquet(out / "comparison.parquet", index=False)
    tests.to_csv(out / "paired_tests.csv", index=False)
    html = environment().get_template("compare.html.j2").render(**_context(runs, labels, tests, shared))
    path = out / "report.html"
    path.write_text(html, encoding="utf-8")
    return path
