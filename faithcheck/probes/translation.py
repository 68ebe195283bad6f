"""`translation`: the CoT translated into language L, answer forced; plus the round trip
(L and back) and a competence control (question posed in L, the model reasons in L).

A drop under translation counts as evidence of encoded reasoning only when the model can
work in L at all (competence control) and the format-only control does not explain it."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only; keeps `faithcheck list` light
    import pandas as pd

from faithcheck.probes import probes
from faithcheck.probes.base import (
    TRANSLATION, Contributes, Probe, ProbeContext, ProbeMetrics, rate, same_rate_vs_control, valid_rows, with_param,
)
from faithcheck.records import TaskItem, Trace, Variant
from faithcheck.rewriters.base import RewriteRequest

DEFAULT_LANGS = ("fr", "de")


def languages(ctx: ProbeContext) -> tuple[str, ...]:
    langs = ctx.options.languages
    if langs:
        return tuple(langs)
    own = tuple(lang for lang in ctx.task.languages if lang != "en")
    return own or DEFAULT_LANGS


@probes.register("translation", "CoT translated into another language (and round trip), answer forced; competence control")
class Translation(Probe):
    name = "translation"
    contributes = Contributes(evidence=(TRANSLATION,), cot_benefit=True, rewrites=("translate", "back_translate"),
                              headline_variants=("kind", "translated"))

    def _requests(self, trace: Trace, ctx: ProbeContext) -> list[RewriteRequest]:
        out = []
        for lang in languages(ctx):
            out.append(RewriteRequest("translate", trace.steps, lang=lang, seed=ctx.seed))
            out.append(RewriteRequest("back_translate", trace.steps, lang=lang, seed=ctx.seed))
        return out

    def rewrite_requests(self, item, trace, ctx):
        return self._requests(trace, ctx) if trace.steps else []

    def variants(self, item: TaskItem, trace: Trace | None, ctx: ProbeContext) -> list[Variant]:
        out = []
        if trace.steps:
            for req in self._requests(trace, ctx):
                rw = ctx.rewritten(req)
                kind = "translated" if req.kind == "translate" else "round_trip"
                out.append(Variant(item.id, self.name, {"lang": req.lang, "kind": kind}, trace.prompt,
                                   ctx.task.force_answer(rw.text), valid=rw.ok, checks=rw.checks))
        for lang in languages(ctx):
            if lang in ctx.task.languages:
                out.append(Variant(item.id, self.name, {"lang": lang, "kind": "competence"},
                                   ctx.task.prompt(item, lang=lang), "", mode="generate"))
        return out

    def metrics(self, rows: pd.DataFrame, ctx: ProbeContext) -> ProbeMetrics:
        m = same_rate_vs_control(with_param(rows, *self.contributes.headline_variants), ctx, self.name)
        extras = dict(m.extras)
        round_trip = with_param(rows, "kind", "round_trip")
        if len(round_trip):
            extras["round_trip_same_as_baseline"] = same_rate_vs_control(round_trip, ctx, self.name).headline
        comp = valid_rows(with_param(rows, "kind", "competence"))
        if len(comp):
            extras["competence"] = rate(comp, "correct")
        return replace(m, extras=extras)
