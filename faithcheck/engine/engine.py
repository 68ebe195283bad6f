"""The engine: every model call of a run goes through here, once.

It removes duplicate requests, answers what it can from the cache, orders the rest so
shared prefixes sit together (grouped by token budget, the cheap forced answers first),
claims them in the cache (so a second process sharing the cache waits for them instead of
computing them again), sends them to the backend in chunks, and saves each answered call
as the backend hands it over: call by call for server backends, batch by batch for hf,
otherwise in chunks sized to take about `commit_window` seconds, so a kill loses at most
that much work. The progress bar moves at each hand-over, with an ETA and the generated
tokens per second.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from faithcheck.backends.base import Backend, FollowUps
from faithcheck.engine.cache import CLAIM_TTL, CallCache
from faithcheck.errors import ModelUnavailable
from faithcheck.records import Completion, GenerationRequest

COMMIT_WINDOW = 15.0  # seconds of local-backend work between two cache commits (at most, once measured)
FIRST_CHUNK = 8  # a local backend's first chunk (or one batch of it), before its speed is known
FAIL_FAST = 16  # this many failed calls before any answered one: the model is unreachable
POLL = 0.25  # seconds between looks at the cache while another process computes our calls


@dataclass
class EngineStats:
    requests: int = 0
    unique: int = 0
    cache_hits: int = 0
    model_calls: int = 0
    failed_calls: int = 0
    saved_calls: int = 0  # answered calls written to the cache by this run
    from_other_processes: int = 0  # calls another process sharing the cache computed for us
    answered_ahead: int = 0  # follow-up calls the backend answered right after the call they follow
    prompt_tokens: int = 0
    generated_tokens: int = 0
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        out = dict(self.__dict__)
        out["failures"] = self.failures[:20]
        return out


class Progress:
    """A one-line progress bar on stderr (tqdm) that moves as calls are answered: call by call
    on servers, batch by batch on hf (the backend's `generate_stream` hands them over).

    Its ETA counts the calls left by token budget (forced answers and CoTs cost very
    different times, and the engine runs the cheap ones first), each at the seconds per call
    measured on calls of that budget. A budget with no call timed yet is charged as if each
    call generated its whole budget at the seconds per generated token seen so far (prompt
    work included): a generous figure, shown as `ETA <=` until a call of that budget is
    timed. The bar also shows generated tokens per second. `n` counts the calls done,
    whether the bar shows or not."""

    def __init__(self, budgets: list[int], desc: str, enabled: bool, clock: Callable[[], float] = time.monotonic):
        self._bar = None
        self._clock = clock
        self.n = 0
        self._left = Counter(budgets)               # calls still to do, by token budget
        self._timed: dict[int, list[float]] = {}    # budget -> [calls timed, seconds]
        self._seconds = 0.0
        self._generated = 0
        self._last = clock()
        if enabled and budgets:
            try:
                from tqdm import tqdm

                self._bar = tqdm(total=len(budgets), desc=desc, unit="call", file=sys.stderr, dynamic_ncols=True,
                                 leave=False, bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} calls [{elapsed}{postfix}]",
                                 postfix="ETA ?")
            except ImportError:  # pragma: no cover - tqdm is a dependency
                self._bar = None

    def done(self, budgets: list[int], completions: list[Completion]) -> None:
        """Calls computed here, of these budgets: the time since the last hand-over is theirs."""
        if not budgets:
            return
        now = self._clock()
        spent, self._last = now - self._last, now
        for budget in budgets:
            timed = self._timed.setdefault(budget, [0, 0.0])
            timed[0] += 1
            timed[1] += spent / len(budgets)
        self._seconds += spent
        self._generated += sum(c.n_generated_tokens for c in completions)
        self._advance(budgets)

    def found(self, budgets: list[int]) -> None:
        """Calls another process computed: counted, not timed (the wait for them is not ours)."""
        self._last = self._clock()
        self._advance(budgets)

    def eta(self) -> tuple[float, bool] | None:
        """(seconds left, whether a budget with no call timed yet was charged in full), or None
        before any call is timed."""
        if not self._timed:
            return None
        per_token = self._seconds / max(1, self._generated)
        left, bound = 0.0, False
        for budget, n in self._left.items():
            if not n:
                continue
            timed = self._timed.get(budget)
            if timed:
                left += n * timed[1] / timed[0]
            else:
                left, bound = left + n * budget * per_token, True
        return left, bound

    def postfix(self) -> str:
        eta = self.eta()
        if eta is None:
            return "ETA ?"
        rate = self._generated / self._seconds if self._seconds > 0 else 0.0
        left, bound = eta
        return f"ETA {'<=' if bound else ''}{_clock_time(left)}, {rate:.1f} tok/s"

    def _advance(self, budgets: list[int]) -> None:
        self._left.subtract(budgets)
        self.n += len(budgets)
        if self._bar is not None:
            self._bar.set_postfix_str(self.postfix(), refresh=False)
            self._bar.update(len(budgets))

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _clock_time(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}" if minutes >= 60 else f"{minutes}:{secs:02d}"


def prefix_order(requests: list[GenerationRequest]) -> list[int]:
    """Indices sorted so identical prefixes are adjacent (lexicographic on the full text).

    Servers with prefix caches (vLLM, llama.cpp) and our own batcher both hit more often
    when requests that share a prefix are sent together."""
    return sorted(range(len(requests)), key=lambda i: (requests[i].max_new_tokens, requests[i].stop, requests[i].text))


class _Renewal:
    """Renews this process's claims in the background while a run is going, so a long call
    never lets them expire; a killed process stops renewing and its claims go stale."""

    def __init__(self, cache: CallCache):
        self.cache, self._stop = cache, threading.Event()
        self._thread = threading.Thread(target=self._loop, name="faithcheck-claims", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(CLAIM_TTL / 6):
            try:
                self.cache.renew()
            except Exception:  # noqa: BLE001 - a missed renewal only risks a duplicate call
                pass

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


class Engine:
    def __init__(self, backend: Backend, cache: CallCache | None, chunk_size: int | None = None, progress: bool = True,
                 commit_window: float = COMMIT_WINDOW, label: str = ""):
        self.backend = backend
        self.label = label  # the model string, named on every progress bar beside the stage
        self.cache = cache
        # the backend's own choice by default: one that shares prefixes wants wide chunks
        self.chunk_size = chunk_size or backend.chunk_size
        self.progress = progress
        self.commit_window = commit_window
        self.stats = EngineStats()
        self._local_chunk = min(self.chunk_size, getattr(backend, "batch_size", None) or FIRST_CHUNK)
        self._answered = 0
        self._ahead: dict[str, Completion] = {}  # follow-up calls answered ahead, until a run asks for them
        self.roles: dict[str, Engine] = {}  # engines of the run's other models (rewriter, judge), by role

    def for_backend(self, backend: Backend, role: str) -> Engine:
        """The run's engine for another model (the rewriter's, the judge's): the same cache and
        settings, its calls counted under `role` in `stats_by_role`. Pass the audited backend
        itself to reuse the loaded model."""
        if role not in self.roles:
            label = backend.name if backend is not self.backend else f"{self.label} ({role})"
            self.roles[role] = Engine(backend, self.cache, progress=self.progress, commit_window=self.commit_window,
                                      label=label)
        return self.roles[role]

    def stats_by_role(self) -> dict[str, dict]:
        """Counts of every model call of the run: the audited model's, then each other role's."""
        return {"audited": self.stats.to_dict(), **{r: e.stats.to_dict() for r, e in self.roles.items()}}

    def run(self, requests: list[GenerationRequest], desc: str = "model calls",
            follow_up: Callable[[GenerationRequest, Completion], GenerationRequest | None] | None = None) -> list[Completion]:
        """Completions for `requests`, in order; each distinct request is computed at most once,
        across every process sharing the cache.

        `follow_up(request, completion)` names the call a later `run` will make after an
        answered one (a forced answer after a CoT that stated none), or None. A backend that
        `follows_up` answers it at once, in the same pass (llama.cpp: in the CoT's own
        sequence, before its cells are given up); the engine saves and counts it as a model
        call then, and the later run takes it from here."""
        start = time.time()
        self.stats.requests += len(requests)
        unique: dict[str, GenerationRequest] = {}
        for r in requests:
            unique.setdefault(r.key(), r)
        self.stats.unique += len(unique)
        fp = self.backend.identity.cache_key  # every option that changes the output is in it
        done: dict[str, Completion] = {k: self._ahead.pop(k) for k in list(unique) if k in self._ahead}
        hits = self.cache.get_many(fp, [k for k in unique if k not in done]) if self.cache else {}
        self.stats.cache_hits += len(hits)
        done.update(hits)
        todo = [r for k, r in unique.items() if k not in done]
        todo = [todo[i] for i in prefix_order(todo)]
        bar = Progress([r.max_new_tokens for r in todo], f"{self.label}: {desc}" if self.label else desc, self.progress)
        renewal = _Renewal(self.cache) if self.cache and todo else None
        try:
            while todo:
                todo = self._pass(fp, todo, done, bar, follow_up)
                if todo:
                    time.sleep(POLL)  # the rest is being computed by another process
        finally:
            if renewal:
                renewal.stop()
                self.cache.release_all()
            bar.close()
            self.stats.seconds += time.time() - start
        return [done[r.key()] for r in requests]

    def _pass(self, fp: str, todo: list[GenerationRequest], done: dict[str, Completion], bar: Progress,
              follow_up=None) -> list[GenerationRequest]:
        """Compute every request of `todo` no other live process has claimed; return those it has."""
        theirs: list[GenerationRequest] = []
        s = 0
        while s < len(todo):
            size = self.chunk_size if self.backend.streams else self._local_chunk
            chunk, s = todo[s:s + size], s + size
            if self.cache:
                found = self.cache.get_many(fp, [r.key() for r in chunk])
                if found:
                    done.update(found)
                    self.stats.cache_hits += len(found)
                    self.stats.from_other_processes += len(found)
                    bar.found([r.max_new_tokens for r in chunk if r.key() in found])
                    chunk = [r for r in chunk if r.key() not in found]
                mine = set(self.cache.claim(fp, [r.key() for r in chunk]))
                theirs += [r for r in chunk if r.key() not in mine]
                chunk = [r for r in chunk if r.key() in mine]
            if chunk:
                self._compute(fp, chunk, done, bar, follow_up)
        return theirs

    def _compute(self, fp: str, chunk: list[GenerationRequest], done: dict[str, Completion], bar: Progress,
                 follow_up=None) -> None:
        started = time.monotonic()
        got: set[int] = set()

        def emit(pairs: list[tuple[int, Completion]]) -> None:
            pairs = [(i, c) for i, c in pairs if i not in got]
            if self.cache:  # saved before the backend sends anything else
                self.stats.saved_calls += self.cache.put_many(fp, [(chunk[i], c) for i, c in pairs])
                self.cache.release(fp, [chunk[i].key() for i, c in pairs if c.error is not None])
            for i, comp in pairs:
                got.add(i)
                done[chunk[i].key()] = comp
                self._count(comp)
            bar.done([chunk[i].max_new_tokens for i, _ in pairs], [c for _, c in pairs])

        def answered_ahead(req: GenerationRequest, comp: Completion) -> None:
            if comp.error is not None:
                return  # not kept: the later run computes it as any other call
            if self.cache:
                self.stats.saved_calls += self.cache.put_many(fp, [(req, comp)])
            self._ahead[req.key()] = comp
            self.stats.answered_ahead += 1
            self._count(comp)

        if follow_up is not None and self.backend.follows_up:
            self.backend.generate_stream(chunk, emit, ahead=FollowUps(follow_up, answered_ahead))
        else:
            self.backend.generate_stream(chunk, emit)
        if len(got) != len(chunk):
            raise RuntimeError(f"backend {self.backend.name} returned {len(got)} results for {len(chunk)} requests")
        if not self.backend.streams:  # size the next chunk to about commit_window seconds of work
            per_call = max(time.monotonic() - started, 1e-6) / len(chunk)
            self._local_chunk = max(1, min(self.chunk_size, int(self.commit_window / per_call)))

    def _count(self, comp: Completion) -> None:
        self.stats.model_calls += 1
        self.stats.prompt_tokens += comp.n_prompt_tokens
        self.stats.generated_tokens += comp.n_generated_tokens
        if comp.error is None:
            self._answered += 1
            return
        self.stats.failed_calls += 1
        self.stats.failures.append(comp.error)
        if self._answered == 0 and self.stats.failed_calls >= FAIL_FAST:
            raise ModelUnavailable(
                f"model {self.backend.name!r}: the first {self.stats.failed_calls} model calls all failed and none "
                f"was answered, so nothing can be measured; first error: {self.stats.failures[0]}")
