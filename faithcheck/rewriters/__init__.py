"""Rewriter registry: `rules` (no model) and `llm` (any backend, through the engine)."""

from __future__ import annotations

from faithcheck.registry import Registry
from faithcheck.rewriters.base import Rewrite, Rewriter, RewriteRequest

rewriters = Registry("rewriter", "faithcheck.rewriters", ("rules", "llm"))


def load_rewriter(spec: str | None, args: list[str] | None = None, engine=None) -> Rewriter:
    """`None`/"rules" -> the rule-based rewriter; any model string -> an LLM rewriter on that
    model, whose calls go through the run's `engine` (its cache and counters)."""
    if not spec or spec == "rules":
        return rewriters.get("rules").factory()
    if engine is None:
        raise ValueError(f"rewriter {spec!r}: an LLM rewriter needs the run's engine")
    return rewriters.get("llm").factory(spec, args or [], engine)


__all__ = ["Rewrite", "RewriteRequest", "Rewriter", "load_rewriter", "rewriters"]
