"""The `--estimate` printout: what is counted exactly, what is measured, what is extrapolated."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from faithcheck.audit.estimate import AuditEstimate, Rates


def _span(low, high, fmt) -> str:
    if low is None or high is None or fmt(low) == fmt(high):
        return ""
    return f" (range {fmt(low)} to {fmt(high)})"


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def render(e: AuditEstimate) -> str:
    approx = "~" if e.extrapolated_items else ""
    p, lo, hi = e.point, e.low, e.high
    lines = [f"estimate for {e.model} on {e.task}: {e.n_items} items, probes {', '.join(e.probes)}"]
    done = e.calls_cached + e.calls_computed_now
    if p is not None:
        still, total = f"{approx}{p.calls:,}", f"{approx}{e.calls_total:,}"
        total += _span(lo and lo.calls + done, hi and hi.calls + done, "{:,}".format)
    elif lo is not None and hi is not None:
        still, total = f"{lo.calls:,} to {hi.calls:,}", f"{lo.calls + done:,} to {hi.calls + done:,}"
    else:
        still, total = "an unknown number", "?"
    lines.append(f"  model calls:        {total} in all: {e.calls_cached:,} already in the cache, "
                 f"{e.calls_computed_now:,} computed by this estimate (now cached), {still} still to compute")
    lines.append(f"  items:              {e.exact_items} looked up exactly in the cache, {e.calibration_items} whose "
                 f"baseline this estimate computed (then looked up), {e.extrapolated_items} given a stand-in CoT")
    todo = p or lo
    if todo is None and not e.extrapolated_items or todo is not None and not todo.calls and not (hi and hi.calls):
        lines.append("  time estimate:      none needed: every call of this audit is already in the cache; "
                     "the audit will only re-score them")
        return "\n".join(lines + _notes(e))
    lines.append(_measured(e.rates))
    lines.append(_extrapolated(e))
    if p:
        gen_span = _span(lo and lo.generated_tokens, hi and hi.generated_tokens, "{:,}".format)
        lines.append(f"  tokens to compute:  ~{p.prompt_tokens:,} prompt + ~{p.generated_tokens:,} generated "
                     f"(as sent; before prefix sharing){gen_span.replace('range', 'generated: range')}")
        lines.append(f"  computed tokens:    ~{p.shared_prompt_tokens + p.generated_tokens:,} after prefix sharing "
                     "at best (each shared prompt prefix computed once: the prefix-tree limit)")
    lines.append(_time_line(e))
    return "\n".join(lines + _notes(e))


def _measured(r: Rates) -> str:
    parts = []
    if r.per_answer is not None:
        parts.append(f"{(r.per_batch / r.width + r.per_answer) * 1000:,.0f} ms per forced answer")
    if r.per_token is not None:
        parts.append(f"{(r.per_step / r.width + r.per_token) * 1000:,.1f} ms per generated token")
    if not parts:
        return "  measured here:      nothing: no call could be computed and timed"
    width = f"in batches of {r.width} as the audit runs them" if r.width > 1 else "one call at a time"
    return (f"  measured here:      {'; '.join(parts)} ({width}; fitted on the calls timed here: forced answers "
            f"{r.forced_calls}, CoTs {r.writing_calls} of {r.writing_tokens:,} tokens in all, in batches of up to "
            f"{r.widest})")


def _extrapolated(e: AuditEstimate) -> str:
    seen = sorted(e.cots_seen)
    if not e.extrapolated_items:
        what = "no CoT: every item's CoT is in the cache"
    elif seen:
        what = (f"the CoTs of {e.extrapolated_items} items, each taken in turn from the {len(seen)} CoT(s) seen "
                f"({seen[0]:,} to {seen[-1]:,} tokens); range: each as short as the shortest seen, or as long as "
                f"the {e.cot_budget:,}-token budget")
    elif e.cut_sample is not None:
        what = (f"the CoTs of {e.extrapolated_items} items: none seen complete, so no point estimate; range: each "
                f"as short as the capped sample, or as long as the {e.cot_budget:,}-token budget")
    else:
        what = f"nothing: no CoT could be sampled here, so the calls of {e.extrapolated_items} items are not counted"
    if e.cut_sample is not None:
        what += f"; a CoT sampled here was still going at {e.cut_sample:,} tokens"
    return (f"  extrapolated:       {what}; the tokens of each CoT not cached: the rest of its item's CoT after "
            "the prefill; a forced answer's: the mean seen")


def _time_line(e: AuditEstimate) -> str:
    p, lo, hi = e.point, e.low, e.high
    span = _span(lo and lo.seconds, hi and hi.seconds, _minutes)
    how = "; at the rates measured here (a backend that batches or sends calls concurrently may be faster)"
    if p is not None and p.seconds is not None:
        return f"  time estimate:      ~{_minutes(p.seconds)}{span}{how}"
    if lo is not None and hi is not None and lo.seconds is not None and hi.seconds is not None:
        return f"  time estimate:      between {_minutes(lo.seconds)} and {_minutes(hi.seconds)}{how}"
    return "  time estimate:      none: no call could be timed here"


def _notes(e: AuditEstimate) -> list[str]:
    lines = [f"  calibration:        {e.calibration_seconds:.1f} s of model calls (in a window of about "
             f"{_window():.0f} s)"
             + (f"; {e.calls_outside} call(s) computed only to time them" if e.calls_outside else "")]
    if e.note:
        lines.append(f"  note:               {e.note}")
    return lines


def _window() -> float:
    from faithcheck.audit.estimate import WINDOW

    return WINDOW
