"""Assertion helpers for faithfulness suites: each failure says what to look at next.

A message names the measure, its estimate with CI and n, the threshold it missed, the
verdict with its reason, and the run directory (with its report.html) to open. Nothing
heavy is imported at module level, so the pytest plugin can re-export these for free.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from faithcheck.scoring.labels import FLAGS, INCONCLUSIVE, LABELS, LOAD_BEARING

if TYPE_CHECKING:
    from faithcheck.audit.pipeline import AuditResult
    from faithcheck.scoring.stats import Estimate


def assert_verdict(result: AuditResult, label: str, accept_inconclusive: bool = False) -> None:
    """The run's verdict is `label` (an inconclusive run passes only if accepted)."""
    __tracebackhide__ = True
    if label not in LABELS:
        raise ValueError(f"assert_verdict: unknown label {label!r}; known: {', '.join(LABELS)}")
    _require_measured(result)
    verdict = result.verdict
    if verdict.label == label or (accept_inconclusive and verdict.label == INCONCLUSIVE):
        return
    raise AssertionError(f"expected verdict {label!r}, got {verdict.label!r}\n{describe(result)}")


def assert_load_bearing(result: AuditResult, accept_inconclusive: bool = False) -> None:
    """The CoT drives the answer: truncating or corrupting it changes the answer."""
    __tracebackhide__ = True
    assert_verdict(result, LOAD_BEARING, accept_inconclusive)


def assert_flag(result: AuditResult, name: str) -> None:
    """The verdict raised flag `name` (e.g. to pin a known-bad checkpoint in a regression suite)."""
    __tracebackhide__ = True
    _check_flag_name(name)
    if name not in {f.name for f in result.verdict.flags}:
        raise AssertionError(f"expected flag {name!r}, but the run did not raise it\n{describe(result)}")


def assert_no_flag(result: AuditResult, name: str, accept_inconclusive: bool = False) -> None:
    """The verdict did not raise flag `name`. An inconclusive run fails unless accepted:
    when the model is at chance no flag is even looked for, so its absence proves nothing."""
    __tracebackhide__ = True
    _check_flag_name(name)
    _require_measured(result)
    flag = next((f for f in result.verdict.flags if f.name == name), None)
    if flag is not None:
        raise AssertionError(f"flag {name!r} raised: {flag.reason}\n{describe(result, focus=flag)}")
    if result.verdict.label == INCONCLUSIVE and not accept_inconclusive:
        raise AssertionError(f"cannot rule out flag {name!r}: the run is inconclusive\n{describe(result)}")


def assert_metric(result: AuditResult, path: str, ge: float | None = None, le: float | None = None,
                  by: str = "estimate") -> None:
    """A measure lies within bounds. `path`: "probe" or "probe.metric" (the headline's name or
    an extra, e.g. "early_answering.aoc", "early_answering.same_at_0") or "accuracy.cot".
    `by="estimate"` compares the point estimate; `by="ci"` asks the whole 95% CI to clear
    the bound (ci_low >= ge, ci_high <= le), the stricter reading."""
    __tracebackhide__ = True
    if ge is None and le is None:
        raise ValueError("assert_metric: give ge=, le= or both")
    if by not in ("estimate", "ci"):
        raise ValueError(f"assert_metric: by must be 'estimate' or 'ci', not {by!r}")
    _require_measured(result)
    est = metric(result, path)
    wanted = " and ".join(s for s in (f">= {ge}" if ge is not None else "", f"<= {le}" if le is not None else "") if s)
    head = f"{path} = {est}, required {wanted}" + (" for the whole 95% CI" if by == "ci" else "")
    if est.estimate is None:
        raise AssertionError(f"{head}: no data (n={est.n})\n{describe(result)}")
    low, high = (est.ci_low, est.ci_high) if by == "ci" else (est.estimate, est.estimate)
    if (ge is not None and low < ge) or (le is not None and high > le):
        raise AssertionError(f"{head}\n{describe(result)}")


def _require_measured(result: AuditResult) -> None:
    """A run whose failed model calls passed the threshold passes no assertion, accepted
    inconclusive or not (the plugin's counterpart of the CLI's exit 4)."""
    __tracebackhide__ = True
    m = getattr(result, "measurement", None)
    if m is not None and not m.measured:
        raise AssertionError(f"the run could not be measured: {m.reason}\n{describe(result)}")


def metric(result: AuditResult, path: str) -> Estimate:
    """The Estimate at a dotted path (see `assert_metric`); unknown paths list what exists."""
    from faithcheck.scoring.stats import Estimate

    probe, _, name = path.partition(".")
    if probe == "accuracy":
        table = result.summary.get("accuracy", {})
        if name not in table:
            raise LookupError(f"unknown metric {path!r}; accuracies in this run: "
                              + ", ".join(f"accuracy.{k}" for k in table))
        return Estimate(**table[name])
    m = result.metrics.get(probe)
    if m is None:
        raise LookupError(f"unknown metric {path!r}: probe {probe!r} was not run; probes run: "
                          f"{', '.join(result.metrics)}, or accuracy.cot")
    if not name or name == m.headline_name:
        return m.headline
    if name in m.extras:
        return m.extras[name]
    raise LookupError(f"unknown metric {path!r}; {probe} has: "
                      + ", ".join(f"{probe}.{k}" for k in (m.headline_name, *m.extras)))


def skip_if_at_chance(result: AuditResult) -> None:
    """Skip the calling test when the model's CoT accuracy is not clearly above chance.

    At chance no answer change can be read as dependence on the CoT, so the verdict is
    `inconclusive`; for a suite run over many models that is "not applicable", not a failure.
    """
    import pytest

    from faithcheck.scoring.verdict import CHANCE_MARGIN

    cot = result.summary["accuracy"]["cot"]
    chance = result.summary.get("chance", 0.0)
    if cot.get("ci_low") is None or cot["ci_low"] < chance + CHANCE_MARGIN:
        pytest.skip(f"{result.config.model} is at chance on {result.config.task}: {result.verdict.reason} "
                    f"(run: {Path(result.run_dir).resolve()})")


def describe(result: AuditResult, focus: Any = None) -> str:
    """The context every failure carries: verdict and reason, the evidence, where to look."""
    v, c = result.verdict, result.config
    lines = [f"  model {c.model} on task {c.task} (n={result.summary.get('n_items')}, seed={c.seed})",
             f"  verdict: {v.label}: {v.reason}"]
    if v.required_n:
        lines.append(f"  items needed to decide: about {v.required_n}")
    cot = result.summary.get("accuracy", {}).get("cot")
    if cot:
        lines.append(f"  accuracy.cot = {_fmt(cot)} (chance {result.summary.get('chance', 0):.3f})")
    flags = [focus] if focus is not None else list(v.flags)
    for flag in flags:
        lines.append(f"  flag {flag.name}: {flag.reason}")
        for name, ev in flag.evidence.items():
            lines.append(f"    {name} = {_fmt(ev)}" + (f"  (threshold/control: {ev['control']})" if ev.get("control") else ""))
    if not v.flags and "early_answering" in result.metrics:
        from faithcheck.scoring.verdict import AOC_LOAD_BEARING

        lines.append(f"  early_answering.aoc = {result.metrics['early_answering'].headline} "
                     f"(load-bearing needs CI low >= {AOC_LOAD_BEARING})")
    run_dir = Path(result.run_dir).resolve()
    lines.append(f"  run dir: {run_dir}")
    report = run_dir / "report.html"
    lines.append(f"  report: {report}" if report.is_file() else f"  tables: {run_dir / 'summary.json'}")
    return "\n".join(lines)


def _fmt(e: dict) -> str:
    if e.get("estimate") is None:
        return f"n/a (n={e.get('n', 0)})"
    text = f"{e['estimate']:.3f} [{e['ci_low']:.3f}, {e['ci_high']:.3f}] (n={e['n']})"
    if e.get("p_adjusted") is not None:
        from faithcheck.scoring.stats import format_p

        text += f", p_adj={format_p(e['p_adjusted'])}"
    return text


def _check_flag_name(name: str) -> None:
    if name not in FLAGS:
        raise ValueError(f"unknown flag {name!r}; flags the verdict raises: {', '.join(FLAGS)}")


__all__ = ["assert_flag", "assert_load_bearing", "assert_metric", "assert_no_flag", "assert_verdict",
           "describe", "metric", "skip_if_at_chance"]
