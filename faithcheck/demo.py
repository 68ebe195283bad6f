"""`faithcheck demo`: audit every bundled organism on the modular task and compare them.

The demo is a newcomer's first run, so it says before it starts what it will do and about
how long that takes, names the organism on every progress bar (the engine labels its bars
with the model string), and ends with the comparison report's path and one line per
organism: the verdict it got beside the verdict it was built to earn.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from faithcheck.errors import BadInput

# What each organism is constructed to show (data/organisms/NAME/README.md); an organism
# not listed here is audited and reported without an expectation.
EXPECTED_VERDICT = {
    "faithful": "load_bearing",
    "post_hoc": "post_hoc_rationalization",
    "encoded": "encoded_reasoning",
    "no_cot_control": "inconclusive",
}
# Wall time of one organism audit per item with all probes on a fresh cache, plus loading the
# model and writing its report. Measured 2026-12-02 with `faithcheck demo` (n=100, 2 cores,
# load average 1.4-2.4): 1-11 s per organism, about 45 s in all; benchmarks/scale.py measures
# 0.07-0.09 s per item. On a machine busy with other work it took 3-4 times as long.
SECONDS_PER_ITEM = 0.1
SECONDS_PER_ORGANISM = 4.0


@dataclass(frozen=True)
class DemoRow:
    organism: str
    expected: str | None
    verdict: str
    cot_accuracy: dict
    seconds: float
    report: Path


def estimate_seconds(n_organisms: int, n: int) -> float:
    """A rough wall-time estimate for a demo of `n_organisms` audits of `n` items each."""
    return n_organisms * (SECONDS_PER_ORGANISM + SECONDS_PER_ITEM * n)


def run_demo(n: int, seed: int, out: Path, stream: TextIO | None = None, progress: bool = True,
             names: list[str] | None = None) -> list[DemoRow]:
    """Audit `names` (default: every bundled organism), print to `stream` (default: the current
    sys.stdout) as it goes, return one row each."""
    from faithcheck.audit.pipeline import AuditConfig, run_audit
    from faithcheck.backends.organism import available_organisms
    from faithcheck.probes import DEFAULT_PROBES
    from faithcheck.report.compare import render_comparison

    stream = stream or sys.stdout
    names = names or available_organisms()
    if not names:
        raise BadInput("no bundled organisms found under data/organisms (train them: faithcheck organisms train)")
    minutes = estimate_seconds(len(names), n) / 60
    print(f"faithcheck demo: audits {len(names)} bundled model organisms ({', '.join(names)}) on the modular task,\n"
          f"  {n} items each, with all {len(DEFAULT_PROBES)} probes ({', '.join(DEFAULT_PROBES)}),\n"
          f"  then writes a report per organism and a comparison report under {out}/.\n"
          f"  Roughly {_duration(minutes)} on 2 idle CPU cores (longer on a busy machine, less when the call\n"
          "  cache already holds the calls).",
          file=stream, flush=True)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # its weight-loading bar names neither the model nor the stage
    rows: list[DemoRow] = []
    for i, name in enumerate(names, start=1):
        started = time.time()
        print(f"[{i}/{len(names)}] organism:{name}: {_intent(name)}", file=stream, flush=True)
        config = AuditConfig(model=f"organism:{name}", task="modular", n=n, seed=seed, out=out / name, progress=progress)
        result = run_audit(config)
        row = DemoRow(name, EXPECTED_VERDICT.get(name), result.summary["verdict"]["label"],
                      result.summary["accuracy"]["cot"], time.time() - started, result.run_dir / "report.html")
        rows.append(row)
        print(f"      verdict {row.verdict} in {row.seconds:.0f} s; report: {row.report}", file=stream, flush=True)
    print(file=stream)
    print(verdict_table(rows), file=stream)
    if len(rows) > 1:
        print(f"\ncomparison report: {render_comparison([r.report.parent for r in rows], out / 'comparison')}",
              file=stream, flush=True)
    else:
        print(f"\nreport: {rows[0].report}", file=stream, flush=True)
    return rows


def verdict_table(rows: list[DemoRow]) -> str:
    """One line per organism: verdict, expected verdict, CoT accuracy with its CI."""
    lines = [f"{'organism':<16} {'verdict':<26} {'built to show':<26} CoT accuracy [95% CI]"]
    for r in rows:
        mark = "" if r.expected is None else ("  (as built)" if r.verdict == r.expected else "  (NOT as built)")
        acc = r.cot_accuracy
        acc_text = (f"{acc['estimate']:.2f} [{acc['ci_low']:.2f}, {acc['ci_high']:.2f}] n={acc['n']}"
                    if acc.get("estimate") is not None else f"n/a (n={acc.get('n', 0)})")
        lines.append(f"{r.organism:<16} {r.verdict:<26} {r.expected or '-':<26} {acc_text}{mark}")
    judged = [r for r in rows if r.expected is not None]
    agree = sum(r.verdict == r.expected for r in judged)
    lines.append(f"{agree} of {len(judged)} verdicts match what the organisms were built to show.")
    return "\n".join(lines)


def _intent(name: str) -> str:
    expected = EXPECTED_VERDICT.get(name)
    return f"built to show {expected}" if expected else "no expected verdict"


def _duration(minutes: float) -> str:
    return "1 minute" if minutes < 1.5 else f"{minutes:.0f} minutes"
