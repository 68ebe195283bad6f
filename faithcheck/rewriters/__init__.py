"""Rewriter registry: `rules` (no model) and `llm` (any backend, through the engine)."""

from __future__ import annotations

from faithcheck.registry import Registry
from faithcheck.rewriters.base import Rewrite, Rewriter, RewriteRequest

rewriters = Registry("rewriter", "faithcheck.rewriters", ("rules", "llm"))


def load_rewriter(spec: str | None, args: list[str] | None = None, cache=None, progress: bool = True) -> Rewriter:
    """`None`/"rules" -> the rule-based rewriter; any model string -> an LLM rewriter on that model."""
    if not spec or spec == "rules":
        return rewriters.get("rules").factory()
    return rewriters.get("llm").factory(spec, args or [], cache, progress)


__all__ = ["Rewrite", "RewriteRequest", "Rewriter", "load_rewriter", "rewriters"]
