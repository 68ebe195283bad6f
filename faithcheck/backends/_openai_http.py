"""The HTTP side of the openai: backend: one batch's client, with server choice, bounded
concurrency, retries (logged one line each, counted by cause with the seconds waited),
calls still waiting reported while they wait, and the API key scrubbed from every message
before any cut. The backend (openai.py) translates requests; this module only sends them.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import random
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar

from faithcheck.errors import ModelUnavailable

T = TypeVar("T")
_log = logging.getLogger("faithcheck.backends.openai")
MALFORMED = (ValueError, KeyError, TypeError, IndexError, AttributeError)


class CallFailed(RuntimeError):
    """A call that failed for good (retries spent or a non-retryable status); names the request."""


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime
        from datetime import datetime, timezone

        try:
            return max(0.0, (parsedate_to_datetime(value) - datetime.now(timezone.utc)).total_seconds())
        except (TypeError, ValueError):
            return None


def scrub(text: str, secret: str) -> str:
    """`text` without `secret`, nor any 8+ character start or end of it (a server that cut the
    key itself); scrubbing comes before any truncation of ours."""
    if not secret:
        return text
    text = text.replace(secret, "<redacted>")
    for n in range(len(secret) - 1, 7, -1):
        text = text.replace(secret[:n], "<redacted>").replace(secret[-n:], "<redacted>")
    return text


class _Session:
    """One batch's HTTP client: server choice, concurrency, retries. Holds the key only while open."""

    def __init__(self, urls: tuple[str, ...], cfg: Any, stats: Counter, model: str = ""):  # cfg: OpenAIConfig
        import httpx

        self.httpx, self.urls, self.cfg, self.stats, self.model = httpx, urls, cfg, stats, model
        key = os.environ.get(cfg.api_key_env, "")
        self._secret = key
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        limit = cfg.concurrency * len(urls)
        self.client = httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(cfg.timeout),
                                        limits=httpx.Limits(max_connections=limit, max_keepalive_connections=limit))
        self.slots = asyncio.Semaphore(limit)
        self.pinned: list[asyncio.Semaphore] | None = None
        self.load = [0] * len(urls)
        self._turn = 0
        self._homes: dict[str, int] = {}  # pinned: each prompt's server
        self._waiting = [0] * len(urls)  # pinned: calls sent to or waiting for each server

    def pin(self, per_server: int) -> None:
        """From now on a call goes to its prompt's own server (never spilling to another), at
        most `per_server` at a time there, in the order the calls were made: for servers whose
        slots reuse only the previous prompt (llama.cpp). A prompt seen first goes to the server
        with the fewest calls waiting; a retry may go anywhere."""
        self.slots = asyncio.Semaphore(per_server * len(self.urls))
        self.pinned = [asyncio.Semaphore(per_server) for _ in self.urls]

    def redact(self, text: str) -> str:
        return scrub(text, self._secret)

    def clip(self, text: str, n: int) -> str:
        """The first `n` characters of `text`, scrubbed first: a key straddling the cut leaves nothing."""
        return self.redact(text)[:n]

    async def send(self, url: str, body: dict, label: str) -> Any:
        """One HTTP attempt; while it is outstanding past `warn_after` seconds, say so (once per
        interval), so a hung server never leaves the progress bar silent."""
        task = asyncio.ensure_future(self.client.post(url, json=body))
        every, start = self.cfg.warn_after or None, time.monotonic()
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=every)
                if done:
                    return task.result()
                self.stats["slow_call_warnings"] += 1
                _log.warning("%s: still waiting for %s after %.0fs (timeout %gs per attempt)",
                             label, url, time.monotonic() - start, self.cfg.timeout)
        except asyncio.CancelledError:
            task.cancel()
            raise

    async def wait(self, label: str, attempt: int, delay: float, cause: str, reason: str) -> None:
        self.stats["retries"] += 1
        self.stats[f"retries_after_{cause}"] += 1
        self.stats["retry_wait_seconds"] = round(self.stats["retry_wait_seconds"] + delay, 3)
        _log.info("%s: retry %d in %.2fs after %s", label, attempt, delay, self.redact(reason))
        await asyncio.sleep(delay)

    def pick(self, affinity: str | None = None) -> int:
        """The server for one call. Calls with the same `affinity` (the prompt all variants of an
        item share) go to the same server, so its prefix cache holds that prompt, unless that
        server has a full set of calls in flight while another has room; else the least loaded."""
        n = len(self.urls)
        if affinity is not None and n > 1:
            home = int(hashlib.sha256(affinity.encode()).hexdigest()[:8], 16) % n
            if self.load[home] < self.cfg.concurrency or self.load[home] <= min(self.load):
                return home
        order = [(self._turn + k) % n for k in range(n)]
        self._turn = (self._turn + 1) % n
        return min(order, key=lambda j: self.load[j])

    def home(self, affinity: str | None) -> int:
        """A pinned call's server (see `pin`)."""
        if affinity is None or affinity not in self._homes:
            j = min(range(len(self.urls)), key=lambda k: (self._waiting[k], k))
            if affinity is None:
                return j
            self._homes[affinity] = j
        return self._homes[affinity]

    def backoff(self, attempt: int) -> float:
        return min(self.cfg.backoff_max, self.cfg.backoff_base * 2**attempt) * random.uniform(0.5, 1.0)

    async def post(self, path: str, body: dict, label: str, parse: Callable[[dict], T], affinity: str | None = None) -> T:
        """`parse(json)` of a successful answer; a parse error counts as a malformed body and is retried."""
        reason, cause, delay = "", "", 0.0
        for attempt in range(self.cfg.max_retries + 1):
            if attempt:
                await self.wait(label, attempt, delay, cause, reason)
            delay = self.backoff(attempt)
            home = self.home(affinity) if self.pinned is not None and not attempt else None
            if home is not None:
                self._waiting[home] += 1
            try:
                async with self.slots if home is None else self.pinned[home]:  # type: ignore[index]
                    j = self.pick(affinity) if home is None else home
                    url = self.urls[j] + path
                    self.load[j] += 1
                    self.stats["attempts"] += 1
                    try:
                        resp = await self.send(url, body, label)
                    except self.httpx.TimeoutException:
                        reason, cause = f"timed out after {self.cfg.timeout}s at {url}", "timeout"
                        continue
                    except self.httpx.TransportError as e:
                        reason, cause = f"connection error at {url} ({type(e).__name__}: {e})", "connection_error"
                        continue
                    finally:
                        self.load[j] -= 1
            finally:
                if home is not None:
                    self._waiting[home] -= 1
            status = resp.status_code
            if status == 429 or status == 408 or status >= 500:
                reason, cause = f"HTTP {status} from {url}: {self.clip(resp.text, 200)!r}", f"http_{status}"
                wait = retry_after(resp.headers.get("retry-after"))
                delay = min(self.cfg.backoff_max, wait) if wait is not None else delay
                continue
            if status >= 400:
                self.stats["failures"] += 1
                raise CallFailed(self.redact(f"{label}: HTTP {status} from {url}: {self.clip(resp.text, 300)!r} (not retried)"))
            try:
                return parse(json.loads(resp.content))
            except MALFORMED as e:
                reason = f"malformed response body from {url} ({type(e).__name__}: {e}; body {self.clip(resp.text, 120)!r})"
                cause = "malformed_body"
        self.stats["failures"] += 1
        raise CallFailed(self.redact(f"{label}: {reason}; gave up after {self.cfg.max_retries + 1} attempts"))

    async def get_json(self, url: str) -> dict | None:
        """One GET asking what a server is (no retries): its JSON object, or None for any error."""
        try:
            resp = await self.client.get(url, timeout=min(10.0, self.cfg.timeout))
            data = json.loads(resp.content) if resp.status_code == 200 else None
        except (self.httpx.HTTPError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    async def status_of(self, path: str, body: dict) -> tuple[int, dict]:
        """A capability probe: (status, json) of one retried call, where 4xx is an answer, not an error.
        When no attempt could even connect, nothing is listening there: ModelUnavailable."""
        refused: str | None = None
        for attempt in range(self.cfg.max_retries + 1):
            if attempt:
                await asyncio.sleep(min(self.backoff(attempt), 2.0) if refused else self.backoff(attempt))
            try:
                resp = await self.client.post(self.urls[0] + path, json=body)
            except self.httpx.ConnectError as e:
                refused = refused if refused is not None or attempt else f"{type(e).__name__}: {e}"
                continue
            except self.httpx.TransportError:
                refused = ""  # it connected: a server is there
                continue
            refused = ""
            if resp.status_code in (408, 429) or resp.status_code >= 500:
                continue
            if resp.status_code in (401, 403):  # not "unsupported": the key is missing or wrong
                raise CallFailed(f"capability probe {path} at {self.urls[0]}: HTTP {resp.status_code} "
                                 f"(is the key in ${self.cfg.api_key_env} right?)")
            try:
                return resp.status_code, json.loads(resp.content) if resp.status_code < 400 else {}
            except ValueError:
                continue
        if refused:
            raise ModelUnavailable(f"openai:{self.model}: no server answers at {self.urls[0]} ({refused}; "
                                   f"{self.cfg.max_retries + 1} attempts); is it running, and is the URL right?")
        raise CallFailed(f"capability probe {path} at {self.urls[0]}: no usable answer after retries")
