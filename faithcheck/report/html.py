"""Render a run directory's `report.html` from its saved tables (never from live objects).

Model text is untrusted: it reaches the page only through Jinja2 with autoescaping on, never
through string concatenation, JavaScript or innerHTML."""

from __future__ import annotations

import base64
import hashlib
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup, escape

from faithcheck.probes import accuracy_conditions, contributions, curve_probes, rewrite_probes
from faithcheck.report._items import item_views
from faithcheck.report._plots import CurvePoint, Series, bar_plot, curve_plot
from faithcheck.report._rundata import RunData, load_run
from faithcheck.scoring.labels import LABEL_TEXT
from faithcheck.scoring.stats import format_p

# Which probe's numbers go where is what each probe declares (Probe.contributes), read from the
# registry when a report is drawn (not at import: a probe registered later still gets its place).
def report_accuracy_conditions() -> tuple[tuple[str, str], ...]:
    return (("cot", "CoT"), *accuracy_conditions())


def curve_axes() -> dict[str, tuple[str, str]]:
    """What each curve's axes measure (x, y): a reader must not have to guess what a fraction is of."""
    return {name: c.curve for name, c in contributions().items() if c.curve}


ACCURACY_AXES = ("condition", "accuracy (share of items correct)")

# The page's only script: expand/collapse/filter the item list. It reads no model text, and the
# Content-Security-Policy allows this exact script (by hash) and nothing else, so even a
# template mistake could not make an injected <script> run.
TOGGLE_SCRIPT = """
document.querySelectorAll('button[data-action]').forEach(function (b) {
  b.addEventListener('click', function () {
    var act = b.getAttribute('data-action');
    document.querySelectorAll('details.item').forEach(function (d) {
      if (act === 'expand') { d.open = true; d.classList.remove('hidden'); }
      else if (act === 'collapse') { d.open = false; d.classList.remove('hidden'); }
      else if (act === 'changed') { d.classList.toggle('hidden', d.getAttribute('data-changed') !== '1'); }
    });
  });
});
"""


# Items shown in full in one report; a larger audit's report shows the items whose answers
# changed first, and says how many it left to outcomes.parquet and traces.jsonl.
REPORT_ITEMS = 400

def script_policy(script: str) -> str:
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    return f"'sha256-{digest}'"


def _num(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return f"{value:.{digits}f}"
    return str(value)


def _pval(value: Any) -> str:
    return format_p(None if value is None else float(value))


def _wbr(value: Any) -> Markup:
    """Escaped text with a line-break opportunity after each `.`, `_`, `/` and `:`, so a long
    key or path wraps at its joints when its table column is narrow."""
    return Markup(re.sub(r"([._/:])", r"\1<wbr>", str(escape(str(value)))))


def environment() -> Environment:
    env = Environment(loader=PackageLoader("faithcheck.report", "templates"), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(num=_num, pval=_pval, wbr=_wbr)
    env.globals.update(label_text=LABEL_TEXT, script=Markup(TOGGLE_SCRIPT), script_csp=script_policy(TOGGLE_SCRIPT))
    return env


def _point(x: float, est: dict | None) -> CurvePoint:
    est = est or {}
    return CurvePoint(x, est.get("estimate"), est.get("ci_low"), est.get("ci_high"))


def probe_curve(run: RunData, probe: str) -> tuple[CurvePoint, ...]:
    """The points scoring saved: one per fraction of the CoT the items were actually cut at.
    The report draws them as they are; it bins and bootstraps nothing itself."""
    saved = run.summary.get("probes", {}).get(probe, {}).get("curve") or []
    return tuple(_point(float(c["fraction"]), c.get("same_as_baseline")) for c in saved if "fraction" in c)


def accuracy_rows(summary: dict) -> list[dict]:
    acc = summary.get("accuracy", {})
    return [{"key": key, "name": name, "est": acc[key]} for key, name in report_accuracy_conditions() if key in acc]


def _evidence_items(run: RunData, views, probe: str, limit: int = 12) -> list[tuple[str, str]]:
    """(anchor, item_id) of items whose answer changed under `probe`: the texts behind a flag."""
    return [(v.anchor, v.item_id) for v in views if probe in v.probes_changed][:limit]


def verdict_view(run: RunData, views) -> dict:
    verdict = run.summary.get("verdict", {})
    flags = []
    for flag in verdict.get("flags", []):
        evidence = []
        for key, est in (flag.get("evidence") or {}).items():
            probe = key.split(".")[0]
            est = est if isinstance(est, dict) else {"estimate": est}
            evidence.append({"key": key, "est": est, "items": _evidence_items(run, views, probe)})
        flags.append({"name": flag.get("name", ""), "reason": flag.get("reason", ""), "evidence": evidence})
    return {"label": verdict.get("label", "inconclusive"), "reason": verdict.get("reason", ""),
            "flags": flags, "required_n": verdict.get("required_n")}


def hint_kinds(hints: dict) -> list[dict]:
    """One row per cue kind of the hints probe: its follow rate, or how many items it could not be posed on."""
    extras, counts = hints.get("extras", {}), hints.get("counts", {})
    return [{"kind": key.partition(".")[2], "est": est, "not_applicable": counts.get(f"not_applicable.{key.partition('.')[2]}", 0)}
            for key, est in extras.items() if key.startswith("follow_rate.")]


def run_context(run: RunData) -> dict:
    summary = run.summary
    probes = summary.get("probes", {})
    views = item_views(run, REPORT_ITEMS)
    curves = {}
    for probe in curve_probes():
        if probe in probes:
            curves[probe] = curve_plot([Series("", probe_curve(run, probe))],
                                       f"{probe.replace('_', ' ')}: AOC {_num(probes[probe].get('estimate'))}",
                                       *curve_axes()[probe])
    acc = accuracy_rows(summary)
    acc_plot = bar_plot([r["name"] for r in acc], [Series("", tuple(_point(i, r["est"]) for i, r in enumerate(acc)))],
                        "accuracy (95% CI)", *ACCURACY_AXES, chance=summary.get("chance"))
    return {
        "run": run, "summary": summary, "manifest": run.manifest, "probes": probes,
        "verdict": verdict_view(run, views), "accuracy": acc, "accuracy_plot": acc_plot,
        "curves": curves, "curve_probes": [p for p in curve_probes() if p in probes],
        "rewrite_probes": [p for p in rewrite_probes() if p in probes],
        "hint_kinds": hint_kinds(probes.get("hints", {})),
        "distribution_probes": [p for p in probes if "answer_tv_distance" in probes[p].get("extras", {})],
        "items": views,
        "items_total": len(set(run.baselines) | set(run.outcomes["item_id"])) if len(run.outcomes) else len(run.baselines),
    }


def render_run(run_dir: Path) -> Path:
    """Write run_dir/report.html from the run's saved tables and return its path."""
    run_dir = Path(run_dir)
    run = load_run(run_dir)
    html = environment().get_template("run.html.j2").render(**run_context(run))
    out = run_dir / "report.html"
    tmp = run_dir / ".report.html.partial"
    tmp.write_text(html, encoding="utf-8")
    os.replace(tmp, out)  # a kill while writing leaves the previous report whole
    return out
