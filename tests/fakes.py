"""A scripted backend for unit tests of the engine and scorer (never the only test of a feature)."""

from __future__ import annotations

from collections.abc import Callable

from faithcheck.backends.base import Backend
from faithcheck.records import Completion, GenerationRequest


class ScriptedBackend(Backend):
    """Answers with `script(request) -> text`; records every request it was sent."""

    name = "scripted"

    def __init__(self, script: Callable[[GenerationRequest], str], fingerprint: str = "scripted:v1",
                 fail: Callable[[GenerationRequest], bool] | None = None):
        self.script = script
        self.fingerprint = fingerprint
        self.fail = fail
        self.calls: list[GenerationRequest] = []

    def generate(self, requests: list[GenerationRequest]) -> list[Completion]:
        out = []
        for r in requests:
            self.calls.append(r)
            if self.fail is not None and self.fail(r):
                out.append(Completion("", error=f"scripted failure for {r.prompt[:40]!r}"))
            else:
                text = self.script(r)
                out.append(Completion(text, len(r.text.split()), len(text.split())))
        return out

    def count_tokens(self, text: str) -> int:
        return len(text.split())
