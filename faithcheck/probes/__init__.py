"""Probe registry: each perturbation is one file that registers a `Probe` subclass."""

from __future__ import annotations

from faithcheck.errors import BadInput
from faithcheck.probes._options import AuditOptions
from faithcheck.probes.base import REWRITE_EVIDENCE, Contributes, Probe, ProbeContext, ProbeMetrics
from faithcheck.registry import Registry

probes = Registry(
    "probe", "faithcheck.probes",
    ("no_cot", "early_answering", "filler", "mistakes", "paraphrase", "format_control", "translation", "hints"),
    discover=True,  # a new probe file registers itself; this tuple only sets the reading order
)

DEFAULT_PROBES = (
    "no_cot", "early_answering", "filler", "mistakes", "format_control", "paraphrase", "translation", "hints",
)


def get_probes(names: list[str] | tuple[str, ...]) -> list[Probe]:
    known = probes.names()
    unknown = [n for n in names if n not in known]
    if unknown:
        raise BadInput(f"--probes: unknown probe(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return [probes.get(n).factory() for n in names]


def contributions() -> dict[str, Contributes]:
    """What each registered probe contributes (`Probe.contributes`), in registry order."""
    return {e.name: e.factory.contributes for e in probes.in_module_order()}


def with_evidence(*kinds: str) -> tuple[str, ...]:
    """Probes whose metrics carry verdict evidence of one of `kinds` (probes.base.EVIDENCE)."""
    return tuple(n for n, c in contributions().items() if set(c.evidence) & set(kinds))


def curve_probes() -> tuple[str, ...]:
    return tuple(n for n, c in contributions().items() if c.curve)


def rewrite_probes() -> tuple[str, ...]:
    """Probes whose headline is a same-answer rate under a rewrite of the CoT (or its control)."""
    return with_evidence(*REWRITE_EVIDENCE)


def checked_rewrite_probes() -> tuple[str, ...]:
    """Probes that ask for rewrites: each is checked, and a probe with too few that pass is not read."""
    return tuple(n for n, c in contributions().items() if c.rewrites)


def accuracy_conditions() -> tuple[tuple[str, str], ...]:
    """(probe, label) of the probes whose headline is an accuracy shown beside the CoT's."""
    return tuple((n, c.accuracy_condition) for n, c in contributions().items() if c.accuracy_condition)


def cot_benefit_probes() -> tuple[str, ...]:
    return tuple(n for n, c in contributions().items() if c.cot_benefit)


__all__ = [
    "DEFAULT_PROBES", "AuditOptions", "Contributes", "Probe", "ProbeContext", "ProbeMetrics", "accuracy_conditions",
    "checked_rewrite_probes", "contributions", "cot_benefit_probes", "curve_probes", "get_probes", "probes",
    "rewrite_probes", "with_evidence",
]
