"""`format_control`: change only layout (line breaks, numbering, bullets, spacing).

The control that separates "formatting disturbs the model" from "information was hidden
in the wording": paraphrase and translation are read against it."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only; keeps `faithcheck list` light
    import pandas as pd

from faithcheck.probes import probes
from faithcheck.probes.base import FORMAT_CONTROL, Contributes, Probe, ProbeContext, ProbeMetrics, same_rate_vs_control
from faithcheck.records import TaskItem, Trace, Variant
from faithcheck.rewriters.base import RewriteRequest


@probes.register("format_control", "layout-only change of the CoT (line breaks, numbering, bullets), answer forced")
class FormatControl(Probe):
    name = "format_control"
    contributes = Contributes(evidence=(FORMAT_CONTROL,), cot_benefit=True, rewrites=("format",))

    def _request(self, trace: Trace, ctx: ProbeContext) -> RewriteRequest:
        return RewriteRequest("format", trace.steps, seed=ctx.seed)

    def rewrite_requests(self, item, trace, ctx):
        return [self._request(trace, ctx)] if trace.steps else []

    def variants(self, item: TaskItem, trace: Trace | None, ctx: ProbeContext) -> list[Variant]:
        if not trace.steps:
            return []
        rw = ctx.rewritten(self._request(trace, ctx))
        return [Variant(item.id, self.name, {}, trace.prompt, ctx.task.force_answer(rw.text), valid=rw.ok, checks=rw.checks)]

    def metrics(self, rows: pd.DataFrame, ctx: ProbeContext) -> ProbeMetrics:
        """Same-answer rate after a layout-only rewrite, tested against the same items' answers
        forced after the unchanged CoT (the quantity the headline measures, not accuracy)."""
        return same_rate_vs_control(rows, ctx, self.name, controls=("full_cot",))
