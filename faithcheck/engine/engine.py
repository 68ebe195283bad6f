"""The engine: every model call of a run goes through here, once.

It removes duplicate requests, answers what it can from the cache, orders the rest so
shared prefixes sit together (and long requests go first), sends them to the backend in
chunks, commits each chunk to the cache as it returns, and shows progress with an ETA.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

from faithcheck.backends.base import Backend
from faithcheck.engine.cache import CallCache
from faithcheck.records import Completion, GenerationRequest


@dataclass
class EngineStats:
    requests: int = 0
    unique: int = 0
    cache_hits: int = 0
    model_calls: int = 0
    failed_calls: int = 0
    prompt_tokens: int = 0
    generated_tokens: int = 0
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        out = dict(self.__dict__)
        out["failures"] = self.failures[:20]
        return out


class Progress:
    """A one-line progress bar with ETA on stderr (tqdm when available)."""

    def __init__(self, total: int, desc: str, enabled: bool):
        self._bar = None
        if enabled and total:
            try:
                from tqdm import tqdm

                self._bar = tqdm(total=total, desc=desc, unit="call", file=sys.stderr, dynamic_ncols=True, leave=False)
            except ImportError:  # pragma: no cover - tqdm is a dependency
                self._bar = None

    def update(self, n: int) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def prefix_order(requests: list[GenerationRequest]) -> list[int]:
    """Indices sorted so identical prefixes are adjacent (lexicographic on the full text).

    Servers with prefix caches (vLLM, llama.cpp) and our own batcher both hit more often
    when requests that share a prefix are sent together."""
    return sorted(range(len(requests)), key=lambda i: (requests[i].max_new_tokens, requests[i].stop, requests[i].text))


class Engine:
    def __init__(self, backend: Backend, cache: CallCache | None, chunk_size: int | None = None, progress: bool = True):
        self.backend = backend
        self.cache = cache
        # the backend's own choice by default: one that shares prefixes wants wide chunks
        self.chunk_size = chunk_size or backend.chunk_size
        self.progress = progress
        self.stats = EngineStats()

    def run(self, requests: list[GenerationRequest], desc: str = "model calls") -> list[Completion]:
        """Completions for `requests`, in order; each distinct request is computed at most once."""
        start = time.time()
        self.stats.requests += len(requests)
        unique: dict[str, GenerationRequest] = {}
        for r in requests:
            unique.setdefault(r.key(), r)
        self.stats.unique += len(unique)
        fp = self.backend.fingerprint
        done: dict[str, Completion] = self.cache.get_many(fp, list(unique)) if self.cache else {}
        self.stats.cache_hits += len(done)
        todo = [r for k, r in unique.items() if k not in done]
        todo = [todo[i] for i in prefix_order(todo)]
        bar = Progress(len(todo), desc, self.progress)
        try:
            for s in range(0, len(todo), self.chunk_size):
                chunk = todo[s:s + self.chunk_size]
                results = self.backend.generate(chunk)
                if len(results) != len(chunk):
                    raise RuntimeError(f"backend {self.backend.name} returned {len(results)} results for {len(chunk)} requests")
                if self.cache:
                    self.cache.put_many(fp, list(zip(chunk, results)))
                for req, comp in zip(chunk, results):
                    done[req.key()] = comp
                    self._count(comp)
                bar.update(len(chunk))
        finally:
            bar.close()
            self.stats.seconds += time.time() - start
        return [done[r.key()] for r in requests]

    def _count(self, comp: Completion) -> None:
        self.stats.model_calls += 1
        self.stats.prompt_tokens += comp.n_prompt_tokens
        self.stats.generated_tokens += comp.n_generated_tokens
        if comp.error is not None:
            self.stats.failed_calls += 1
            self.stats.failures.append(comp.error)
