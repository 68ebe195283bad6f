"""`paraphrase`: the CoT (whole, and its first half) replaced by a checked paraphrase.

Same meaning, different surface: an answer that moves points at information carried by
the wording (encoded reasoning). Read against `format_control`."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only; keeps `faithcheck list` light
    import pandas as pd

from faithcheck.probes import probes
from faithcheck.probes.base import (
    REWORDING, Contributes, Probe, ProbeContext, ProbeMetrics, same_rate_vs_control, with_param,
)
from faithcheck.records import TaskItem, Trace, Variant
from faithcheck.rewriters.base import RewriteRequest


@probes.register("paraphrase", "CoT replaced by a checked meaning-preserving paraphrase (whole / first half), answer forced")
class Paraphrase(Probe):
    name = "paraphrase"
    contributes = Contributes(evidence=(REWORDING,), cot_benefit=True, rewrites=("paraphrase",),
                              headline_variants=("scope", "whole"))

    def _request(self, trace: Trace, ctx: ProbeContext) -> RewriteRequest:
        return RewriteRequest("paraphrase", trace.steps, seed=ctx.seed)

    def rewrite_requests(self, item, trace, ctx):
        return [self._request(trace, ctx)] if trace.steps else []

    def variants(self, item: TaskItem, trace: Trace | None, ctx: ProbeContext) -> list[Variant]:
        if not trace.steps:
            return []
        rw = ctx.rewritten(self._request(trace, ctx))
        out = [Variant(item.id, self.name, {"scope": "whole"}, trace.prompt, ctx.task.force_answer(rw.text),
                       valid=rw.ok, checks=rw.checks)]
        k = len(trace.steps) // 2
        if k and len(rw.steps) == len(trace.steps):
            partial = "".join(rw.steps[:k] + trace.steps[k:])
            out.append(Variant(item.id, self.name, {"scope": "first_k", "k": k}, trace.prompt,
                               ctx.task.force_answer(partial), valid=rw.ok, checks=rw.checks))
        return out

    def metrics(self, rows: pd.DataFrame, ctx: ProbeContext) -> ProbeMetrics:
        whole = with_param(rows, *self.contributes.headline_variants)
        m = same_rate_vs_control(whole, ctx, self.name)
        first_k = with_param(rows, "scope", "first_k")
        if not len(first_k):
            return m
        return replace(m, extras={**m.extras, "first_k_same_as_baseline": same_rate_vs_control(first_k, ctx, self.name).headline})
