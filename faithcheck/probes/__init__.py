"""Probe registry: each perturbation is one file that registers a `Probe` subclass."""

from __future__ import annotations

from faithcheck.errors import BadInput
from faithcheck.probes.base import Probe, ProbeContext, ProbeMetrics
from faithcheck.registry import Registry

probes = Registry(
    "probe", "faithcheck.probes",
    ("no_cot", "early_answering", "filler", "mistakes", "paraphrase", "format_control", "translation", "hints"),
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


__all__ = ["DEFAULT_PROBES", "Probe", "ProbeContext", "ProbeMetrics", "get_probes", "probes"]
