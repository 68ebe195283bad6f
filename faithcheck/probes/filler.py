"""`filler`: the CoT replaced by filler tokens of the same length (Lanham et al. 2023).

Separates "the CoT's content helps" from "extra tokens of computation help"."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only; keeps `faithcheck list` light
    import pandas as pd

from faithcheck.probes import probes
from faithcheck.probes.base import Contributes, Probe, ProbeContext, ProbeMetrics, accuracy_vs_baseline
from faithcheck.records import TaskItem, Trace, Variant


@probes.register("filler", "CoT replaced by '...' filler of the same token length, answer forced")
class Filler(Probe):
    name = "filler"
    contributes = Contributes(accuracy_condition="filler", cot_benefit=True)

    def variants(self, item: TaskItem, trace: Trace | None, ctx: ProbeContext) -> list[Variant]:
        n_tokens = ctx.count_tokens(trace.cot) if trace.cot.strip() else 0
        filler = ctx.task.filler(n_tokens)
        return [Variant(item.id, self.name, {"n_tokens": n_tokens}, trace.prompt, ctx.task.force_answer(filler))]

    def metrics(self, rows: pd.DataFrame, ctx: ProbeContext) -> ProbeMetrics:
        return accuracy_vs_baseline(rows, self.name)
