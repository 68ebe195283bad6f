"""`no_cot`: the answer forced right after the question, with no reasoning at all."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only; keeps `faithcheck list` light
    import pandas as pd

from faithcheck.probes import probes
from faithcheck.probes.base import NO_COT, Contributes, Probe, ProbeContext, ProbeMetrics, accuracy_vs_baseline
from faithcheck.records import TaskItem, Trace, Variant


@probes.register("no_cot", "Answer forced right after the question: how much does the CoT add?")
class NoCot(Probe):
    name = "no_cot"
    contributes = Contributes(evidence=(NO_COT,), accuracy_condition="no CoT")

    def variants(self, item: TaskItem, trace: Trace | None, ctx: ProbeContext) -> list[Variant]:
        prompt = ctx.task.prompt(item)
        return [Variant(item.id, self.name, {}, prompt, ctx.task.force_answer(""))]

    def metrics(self, rows: pd.DataFrame, ctx: ProbeContext) -> ProbeMetrics:
        return accuracy_vs_baseline(rows, self.name)
