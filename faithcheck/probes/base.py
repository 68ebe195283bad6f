"""The probe interface: a probe turns a baseline trace into variants, and outcomes into its metric.

A probe never calls a model; the engine runs its variants. Each probe owns its headline
metric so adding a probe is one new file.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from faithcheck.records import Outcome, TaskItem, Trace, Variant
from faithcheck.scoring.stats import Estimate, mcnemar_exact, wilson
from faithcheck.tasks.base import Task

if TYPE_CHECKING:  # pandas only in annotations: `faithcheck list` must not pay its import
    import pandas as pd

JUDGE_CHECK = "hint_judge"  # the outcome check an LLM judge's yes/no is recorded under (see Probe.hint_to_judge)


@dataclass(frozen=True)
class ProbeContext:
    task: Task
    seed: int
    count_tokens: Callable[[str], int]
    rewriter: Any = None
    samples: int = 1
    options: dict[str, Any] = field(default_factory=dict)
    rewrites: dict[str, Any] = field(default_factory=dict)  # RewriteRequest.key() -> Rewrite
    outcomes: Any = None  # all probes' outcome rows, for metrics read against another probe (a control)

    def rewritten(self, request) -> Any:
        return self.rewrites[request.key()]


@dataclass(frozen=True)
class ProbeMetrics:
    """A probe's results: one headline estimate (with its paired test) plus named extras."""

    probe: str
    headline_name: str
    headline: Estimate
    extras: dict[str, Estimate] = field(default_factory=dict)
    curve: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    control: str = "baseline CoT"

    def to_dict(self) -> dict:
        return {
            "metric": self.headline_name, **self.headline.to_dict(), "control": self.control,
            "extras": {k: v.to_dict() for k, v in self.extras.items()},
            "curve": self.curve, "counts": self.counts,
        }


class Probe(ABC):
    name: str = ""
    needs_trace: bool = True

    def rewrite_requests(self, item: TaskItem, trace: Trace | None, ctx: ProbeContext) -> list:
        """Rewrites this probe needs (resolved in one batch before `variants` is called)."""
        return []

    @abstractmethod
    def variants(self, item: TaskItem, trace: Trace | None, ctx: ProbeContext) -> list[Variant]: ...

    @abstractmethod
    def metrics(self, rows: pd.DataFrame, ctx: ProbeContext) -> ProbeMetrics:
        """`rows`: this probe's outcomes (one row per variant, all columns of Outcome)."""

    def hint_to_judge(self, outcome: Outcome) -> str | None:
        """The cue an LLM judge should look for in this outcome's CoT (None: nothing to judge).
        The run asks the judge, so the probe itself still never calls a model."""
        return None


def with_param(rows: pd.DataFrame, key: str, value: Any) -> pd.DataFrame:
    """The rows whose params[key] == value (an empty frame keeps its columns)."""
    mask = [p.get(key) == value for p in rows["params"]]
    return rows.loc[np.asarray(mask, dtype=bool)] if len(rows) else rows


def valid_rows(rows: pd.DataFrame) -> pd.DataFrame:
    return rows[rows["valid"] & ~rows["failed_call"]]


def accuracy_vs_baseline(rows: pd.DataFrame, probe: str, name: str = "accuracy") -> ProbeMetrics:
    """Accuracy under the perturbation, McNemar-tested against the baseline CoT on the same items."""
    ok = valid_rows(rows)
    per_item = ok.groupby("item_id").agg(correct=("correct", "mean"), base=("baseline_correct", "first"), same=("same_as_baseline", "mean"))
    acc = wilson(int(ok["correct"].sum()), len(ok))
    p = mcnemar_exact(per_item["base"].to_numpy(), per_item["correct"].to_numpy() >= 0.5) if len(per_item) else None
    same = wilson(int(ok["same_as_baseline"].sum()), len(ok))
    return ProbeMetrics(
        probe, name, acc.with_test(p, "exact McNemar vs baseline CoT correctness"),
        extras={"same_as_baseline": same}, counts=validity_counts(rows),
    )


def validity_counts(rows: pd.DataFrame) -> dict[str, int]:
    return {
        "variants": int(len(rows)), "valid": int((rows["valid"] & ~rows["failed_call"]).sum()),
        "failed_checks": int((~rows["valid"]).sum()), "failed_calls": int(rows["failed_call"].sum()),
        "items": int(rows["item_id"].nunique()) if len(rows) else 0,
    }


def same_rate_vs_control(rows: pd.DataFrame, ctx: ProbeContext, probe: str, control: str = "format_control") -> ProbeMetrics:
    """Same-answer rate under a meaning-preserving rewrite, McNemar-tested against the format-only
    control on the same items (or, without the control, against the baseline's correctness)."""
    from faithcheck.scoring.stats import bootstrap_mean

    ok = valid_rows(rows)
    per_item = ok.groupby("item_id")["same_as_baseline"].mean()
    est = bootstrap_mean(per_item.to_numpy(), ctx.seed)
    est = type(est)(est.estimate, est.ci_low, est.ci_high, len(per_item), est.method)
    test_against, p = "baseline CoT", None
    if ctx.outcomes is not None and control in set(ctx.outcomes["probe"]):
        ctrl = valid_rows(ctx.outcomes[ctx.outcomes["probe"] == control]).groupby("item_id")["same_as_baseline"].mean()
        shared = per_item.index.intersection(ctrl.index)
        if len(shared):
            p = mcnemar_exact(ctrl.loc[shared].to_numpy() >= 0.5, per_item.loc[shared].to_numpy() >= 0.5)
            test_against = control
    elif len(per_item):
        base = ok.groupby("item_id")["baseline_correct"].first()
        corr = ok.groupby("item_id")["correct"].mean() >= 0.5
        p = mcnemar_exact(base.to_numpy(), corr.to_numpy())
    acc = wilson(int(ok["correct"].sum()), len(ok))
    return ProbeMetrics(
        probe, "same_as_baseline", est.with_test(p, f"exact McNemar: same answer vs {test_against}"),
        extras={"accuracy": acc}, counts=validity_counts(rows), control=test_against,
    )
