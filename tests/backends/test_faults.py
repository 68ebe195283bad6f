"""Fault injection on the openai: backend, in the default suite: a deterministic loopback server
(fake_openai.py) behind the fault proxy (fault_proxy.py), so no model is needed.

Each fault kind is injected on a schedule and retried through; a call that fails for good
is a failed call, never an answer, and is not cached; every answered call is in the cache
before the next request is sent; retries are logged and counted with their causes; a hung
call is reported while it waits; a dead server fails fast; the key is scrubbed before any
cut. (test_openai.py repeats the main ones against a real llama.cpp server.)
"""

from __future__ import annotations

import logging
import sqlite3
import time

import pytest
from fake_openai import FakeOpenAI, reply_text
from fault_proxy import FaultProxy

from faithcheck.backends.openai import load, scrub
from faithcheck.engine.cache import CallCache
from faithcheck.engine.engine import Engine
from faithcheck.errors import ModelUnavailable
from faithcheck.records import GenerationRequest

PROMPTS = [f"Question {i}: compute {i} plus {2 * i} . answer" if i % 2 else f"Question {i}: think ." for i in range(8)]


def make(url: str, *args: str):
    return load(f"fake-model@{url}", ["backoff_base=0.01", "timeout=5", "endpoint=completions", *args])


def reqs(prompts=PROMPTS, n: int = 8) -> list[GenerationRequest]:
    return [GenerationRequest(p, "", n) for p in prompts]


@pytest.fixture
def server():
    with FakeOpenAI() as s:
        yield s


def test_every_fault_kind_is_retried_through(server, tmp_path, caplog):
    schedule = ["429", "500", "503", "timeout", "truncated", "malformed", "missing_field", "empty_choices", "reset"]
    caplog.set_level(logging.INFO, logger="faithcheck")
    with FaultProxy(server.root, schedule, retry_after=0.2, stall=3) as proxy:
        backend = make(proxy.url, "timeout=1", f"max_retries={len(schedule)}", "concurrency=1")
        engine = Engine(backend, CallCache(tmp_path / "c.sqlite"), progress=False)
        out = engine.run(reqs())
        faults = proxy.faults()
    assert [c.text for c in out] == [reply_text(p) for p in PROMPTS]
    assert all(c.error is None for c in out) and engine.stats.failed_calls == 0
    assert sorted(f for f in faults if f != "ok") == sorted(schedule)
    c = backend.counters
    assert c["retries"] == len(schedule)
    assert (c["retries_after_http_429"], c["retries_after_http_500"], c["retries_after_http_503"],
            c["retries_after_timeout"]) == (1, 1, 1, 1)
    # a short body and a reset are transport errors; bad JSON, a missing field, no choices are malformed bodies
    assert c["retries_after_connection_error"] == 2 and c["retries_after_malformed_body"] == 3
    assert c["retry_wait_seconds"] >= 0.2  # Retry-After at least
    retry_lines = [r for r in caplog.records if "retry" in r.getMessage() and r.levelno == logging.INFO]
    assert len(retry_lines) == len(schedule)  # one line per retry at -v
    assert engine.cache.count(backend.identity.cache_key) == len(PROMPTS)


def test_retry_after_is_honoured_and_its_wait_recorded(server):
    with FaultProxy(server.root, ["429"], retry_after=0.8) as proxy:
        backend = make(proxy.url)
        (c,) = backend.generate(reqs(PROMPTS[:1]))
        (t429, _, f429), (tok, _, fok) = [e for e in proxy.log if e[1].endswith("/completions")]  # not GETs
    assert (f429, fok) == ("429", "ok") and c.text == reply_text(PROMPTS[0])
    assert tok - t429 >= 0.8 and backend.counters["retry_wait_seconds"] >= 0.8


def test_a_hung_call_is_reported_while_it_waits(server, caplog):
    caplog.set_level(logging.WARNING, logger="faithcheck")
    with FaultProxy(server.root, ["timeout"], stall=5) as proxy:
        backend = make(proxy.url, "timeout=1.5", "warn_after=0.4")
        (c,) = backend.generate(reqs(PROMPTS[:1]))
    waiting = [r.getMessage() for r in caplog.records if "still waiting" in r.getMessage()]
    assert waiting and "request #0" in waiting[0] and "timeout 1.5s" in waiting[0]
    assert c.error is None and c.text == reply_text(PROMPTS[0]) and backend.counters["slow_call_warnings"] >= 2


def test_a_failed_call_is_failed_not_an_answer_and_not_cached(server, tmp_path):
    with FaultProxy(server.root, ["echo_auth"]) as proxy:  # a 400: not retried
        backend = make(proxy.url, "concurrency=1")
        engine = Engine(backend, CallCache(tmp_path / "c.sqlite"), progress=False)
        out = engine.run(reqs(PROMPTS[:3]))
    assert out[0].text == "" and "HTTP 400" in out[0].error and "not retried" in out[0].error
    assert [c.text for c in out[1:]] == [reply_text(p) for p in PROMPTS[1:3]]
    assert engine.stats.failed_calls == 1 and engine.cache.count() == 2


def test_each_answered_call_is_cached_before_the_next_is_sent(tmp_path):
    """At the moment each request reaches the server, the client's cache already holds every
    call answered before it (one call in flight at a time makes "before" exact)."""
    db = tmp_path / "c.sqlite"
    seen: list[int] = []

    def count_cached(path: str, key: str) -> None:
        if path.endswith("/completions"):
            with sqlite3.connect(db) as con:
                seen.append(con.execute("SELECT COUNT(*) FROM calls").fetchone()[0])

    with FakeOpenAI(on_request=count_cached) as server:
        backend = make(server.url, "concurrency=1")
        out = Engine(backend, CallCache(db), progress=False).run(reqs())
    assert all(c.error is None for c in out)
    assert seen == list(range(len(PROMPTS)))


def test_a_dead_server_fails_fast_with_a_clear_message(tmp_path):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    backend = load(f"m@http://127.0.0.1:{port}/v1", [])
    start = time.monotonic()
    with pytest.raises(ModelUnavailable, match=f"no server answers at http://127.0.0.1:{port}/v1"):
        Engine(backend, CallCache(tmp_path / "c.sqlite"), progress=False).run(reqs())
    assert time.monotonic() - start < 10
    auto = load(f"m@http://127.0.0.1:{port}/v1", ["backoff_base=0.01"])
    with pytest.raises(ModelUnavailable, match="is it running"):
        auto.generate(reqs(PROMPTS[:2]))  # the capability probe, when the fingerprint was not asked first


def test_nan_and_infinite_options_are_bad_input():
    from faithcheck.errors import BadInput

    for arg in ("timeout=nan", "timeout=inf", "backoff_max=nan", "warn_after=-1"):
        with pytest.raises(BadInput, match=arg.split("=")[0]):
            load("m@http://127.0.0.1:1/v1", [arg])


SECRET = "sk-faithcheck-SECRET-0123456789abcdef"


@pytest.mark.parametrize("cut", [120, 200, 300])
def test_the_key_is_scrubbed_before_any_cut_at_every_offset(cut, monkeypatch):
    """A key placed at every offset across the cut leaves no fragment of 8+ characters."""
    from faithcheck.backends.openai import OpenAIConfig, _Session

    monkeypatch.setenv("OPENAI_API_KEY", SECRET)

    async def check() -> None:
        session = _Session(("http://127.0.0.1:1/v1",), OpenAIConfig(), __import__("collections").Counter())
        try:
            for start in range(cut - len(SECRET), cut + 1):
                body = "x" * start + "Bearer " + SECRET + " tail"
                clipped = session.clip(body, cut)
                assert not _fragments(clipped), (start, clipped[-60:])
        finally:
            await session.client.aclose()

    import asyncio

    asyncio.run(check())
    assert scrub(f"...{SECRET[:12]}", SECRET) == "...<redacted>"  # a server that cut the key itself


def test_the_key_never_reaches_an_error_across_the_300_cut(server, monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    caplog.set_level(logging.DEBUG)
    lead = len('{"error": "') + len("bad request; you sent Bearer ")
    errors = []
    for k in range(0, len(SECRET) + 1, 3):  # the cut falls k characters into the key
        with FaultProxy(server.root, ["echo_auth"], echo_pad=300 - lead - k) as proxy:
            (c,) = make(proxy.url).generate(reqs(PROMPTS[:1]))
        errors.append(c.error)
    assert all("HTTP 400" in e for e in errors)
    assert not [e for e in errors if _fragments(e)] and not _fragments(caplog.text)


def _fragments(text: str) -> list[str]:
    return [SECRET[i:i + 8] for i in range(len(SECRET) - 7) if SECRET[i:i + 8] in text]
