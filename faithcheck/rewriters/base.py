"""The rewriter interface: batches of rewrite requests in, checked rewrites out.

Probes ask for rewrites (paraphrase, translation, a planted mistake, a format change) as
requests; the run resolves all of them in one batch before variants are built, so an
LLM rewriter's calls go through the engine (cached, resumable) like any other.
Every rewrite carries its checks; one that fails them is excluded and counted.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Literal

from faithcheck.records import canonical_json

Kind = Literal["paraphrase", "translate", "back_translate", "corrupt", "format"]


@dataclass(frozen=True)
class RewriteRequest:
    """Rewrite `steps[index]` (kind "corrupt") or the whole CoT `"".join(steps)` (other kinds)."""

    kind: Kind
    steps: tuple[str, ...]
    lang: str | None = None
    index: int | None = None
    seed: int = 0

    def key(self) -> str:
        return canonical_json([self.kind, list(self.steps), self.lang, self.index, self.seed])


@dataclass(frozen=True)
class Rewrite:
    steps: tuple[str, ...]
    ok: bool
    checks: dict[str, Any] = field(default_factory=dict)
    target: str | None = None  # for "corrupt": the planted (wrong) value

    @property
    def text(self) -> str:
        return "".join(self.steps)


class Rewriter(ABC):
    name: str = ""

    @abstractmethod
    def rewrite(self, requests: list[RewriteRequest]) -> list[Rewrite]:
        """One Rewrite per request, in order."""

    def close(self) -> None:
        """Let go of what the rewriter loaded itself (a model); the run calls it when done."""


def failed(request: RewriteRequest, reason: str) -> Rewrite:
    return Rewrite(request.steps, False, {"reason": reason})
