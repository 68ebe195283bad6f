"""The openai: backend against a real OpenAI-compatible server (llama.cpp serving gemma-3-270m) on loopback.

Faults are injected by tests/backends/fault_proxy.py in front of the server. Every
request loop is bounded (max_retries) and waits are shortened (backoff_base) except where
a test checks that Retry-After is honoured.
"""

from __future__ import annotations

import logging
import math
import time

import pytest
from fault_proxy import FaultProxy

from faithcheck.backends import ScoreRequest
from faithcheck.backends.openai import MissingCapability, OpenAIBackend, load
from faithcheck.engine.cache import CallCache
from faithcheck.engine.engine import Engine
from faithcheck.errors import BadInput, ModelUnavailable
from faithcheck.records import GenerationRequest

FAST = ["backoff_base=0.01", "timeout=60"]
PROMPTS = ["The capital of France is", "One, two, three, four,", "My favourite colour is",
           "Water boils at", "The first planet from the sun is", "A cat says"]


def make(url: str, *args: str) -> OpenAIBackend:
    return load(f"gemma@{url}", [*FAST, *args])


def greedy(prompts: list[str], n: int = 8) -> list[GenerationRequest]:
    return [GenerationRequest(p, "", n) for p in prompts]


@pytest.fixture(scope="module")
def reference(llama_server) -> dict[str, str]:
    """Greedy completions straight from the server, one request at a time: the expected answers."""
    backend = make(llama_server.url, "concurrency=1")
    return {r.prompt: backend.generate([r])[0].text for r in greedy(PROMPTS)}


# -- configuration -----------------------------------------------------------------------

@pytest.mark.parametrize("target, match", [
    ("gemma", "MODEL@BASE_URL"), ("@http://127.0.0.1:1/v1", "MODEL@BASE_URL"),
    ("gemma@127.0.0.1:8000", "http://"), ("gemma@http://user:pw@127.0.0.1/v1", "credentials"),
])
def test_bad_targets_are_bad_input(target, match):
    with pytest.raises(BadInput, match=match):
        load(target, [])


@pytest.mark.parametrize("arg", ["endpont=chat", "endpoint=legacy", "concurrency=0", "scoring=auto"])
def test_bad_options_are_bad_input(arg):
    with pytest.raises(BadInput):
        load("gemma@http://127.0.0.1:1/v1", [arg])


def test_unreachable_server_fails_fast_and_names_it():
    backend = load("gemma@http://127.0.0.1:9/v1", ["max_retries=1", "backoff_base=0", "timeout=2"])
    with pytest.raises(ModelUnavailable, match=r"no server answers at http://127\.0\.0\.1:9/v1"):
        backend.generate(greedy(["first prompt", "second prompt"]))


# -- generation against the real server --------------------------------------------------

def test_greedy_is_deterministic(llama_server, reference):
    backend = make(llama_server.url)
    first = backend.generate(greedy(PROMPTS[:3]))
    again = backend.generate(greedy(PROMPTS[:3]))
    assert [c.text for c in first] == [c.text for c in again] == [reference[p] for p in PROMPTS[:3]]
    assert all(c.error is None and c.text and c.n_prompt_tokens > 0 and 0 < c.n_generated_tokens <= 8 for c in first)


def test_stop_strings_cut_the_text(llama_server):
    backend = make(llama_server.url)
    (full,) = backend.generate(greedy(["Count: one, two, three,"], 16))
    stop = full.text.strip()[2:4]
    assert len(stop) == 2 and stop in full.text
    (cut,) = backend.generate([GenerationRequest("Count: one, two, three,", "", 16, (stop, "zzz-never"))])
    assert cut.text == full.text[: full.text.find(stop)] and cut.finish_reason == "stop"


def test_order_is_preserved_under_concurrency(llama_server, reference):
    backend = make(llama_server.url, "concurrency=4")
    reqs = greedy(PROMPTS + PROMPTS[::-1])
    out = backend.generate(reqs)
    assert [c.text for c in out] == [reference[r.prompt] for r in reqs]


def test_zero_max_tokens_sends_nothing(llama_server):
    with FaultProxy(llama_server.root) as proxy:
        backend = make(proxy.url, "endpoint=completions")
        (c,) = backend.generate([GenerationRequest("anything", "", 0)])
        assert (c.text, c.error, c.finish_reason) == ("", None, "length")
        assert proxy.log == []  # max_tokens=0 would mean "unlimited" to llama.cpp


def test_auto_picks_completions_and_prefill_is_plain_concatenation(llama_server):
    backend = make(llama_server.url)
    prefilled = GenerationRequest("Q: What is 2 + 2?\nA:", " Let's think. 2 + 2", 8)
    concatenated = GenerationRequest("Q: What is 2 + 2?\nA: Let's think. 2 + 2", "", 8)
    a, b = backend.generate([prefilled, concatenated])
    assert backend._endpoint == "completions"
    assert a.error is None and a.text == b.text


def test_chat_endpoint_applies_the_template(llama_server):
    chat, plain = make(llama_server.url, "endpoint=chat"), make(llama_server.url, "endpoint=completions")
    (c,) = chat.generate(greedy(["What is the capital of France?"], 12))
    (p,) = plain.generate(greedy(["What is the capital of France?"], 12))
    assert c.error is None and c.text
    assert c.n_prompt_tokens > p.n_prompt_tokens  # <start_of_turn>user ... <start_of_turn>model


def test_chat_prefill_is_refused_where_the_server_lacks_it(llama_server):
    backend = make(llama_server.url, "endpoint=chat")
    with pytest.raises(MissingCapability, match="continue_final_message") as err:
        backend.generate([GenerationRequest("What is 2 + 2?", "Let me think:", 8)])
    assert "--model-arg chat_template=" in str(err.value)  # the fallback is named


def test_multiple_base_urls_spread_the_requests(llama_server, reference):
    with FaultProxy(llama_server.root) as proxy:  # a second URL in front of the same server
        backend = make(f"{llama_server.url},{proxy.url}", "concurrency=1", "endpoint=completions")
        out = backend.generate(greedy(PROMPTS))
        via_proxy = sum(1 for _, path, _ in proxy.log if path.endswith("/completions"))
        fingerprint = backend.fingerprint  # asked while both servers are up
    assert [c.text for c in out] == [reference[p] for p in PROMPTS]
    assert 2 <= via_proxy <= len(PROMPTS) - 2
    assert fingerprint.startswith(f"openai:gemma@{','.join(sorted([llama_server.url, proxy.url]))}")
    twice = make(f"{llama_server.url},{llama_server.url}")
    assert [c.text for c in twice.generate(greedy(PROMPTS[:2]))] == [reference[p] for p in PROMPTS[:2]]


def test_fingerprint_names_model_urls_and_served_model(llama_server):
    fp = make(llama_server.url).fingerprint
    assert fp.startswith(f"openai:gemma@{llama_server.url}")
    assert "gemma-3-270m" in fp  # llama.cpp reports the model file as its id


# -- scoring -------------------------------------------------------------------------------

def test_scoring_agrees_with_greedy_generation(llama_server):
    backend = make(llama_server.url)
    prompt = "The capital of France is"
    (first,) = backend.generate(greedy([prompt], 1))
    candidates = [first.text] + [c for c in (" London", " banana", " 42") if c != first.text]
    scores = backend.loglikelihood([ScoreRequest(prompt, "", c) for c in candidates])
    assert all(s < 0 for s in scores) and max(range(len(scores)), key=scores.__getitem__) == 0


def test_echo_scoring_agrees_with_topk_scoring(llama_server):
    """Echo is slow on llama.cpp (a vocabulary sort per prompt token): one short request only.
    The two can differ by a few hundredths of a nat: llama.cpp reuses cached prompt state, so
    the same logits come from differently batched 4-bit matmuls."""
    echo, topk = make(llama_server.url, "scoring=echo"), make(llama_server.url)
    req = ScoreRequest("3 4 5", "", " 6")
    (a,), (b,) = echo.loglikelihood([req]), topk.loglikelihood([req])
    assert echo._echo is True and a < 0 and b == pytest.approx(a, abs=0.25)
    assert topk.loglikelihood([ScoreRequest("One, two,", "", " zzqx-unlikely")]) == [-math.inf]


def test_echo_scoring_is_refused_on_the_chat_endpoint(llama_server):
    backend = make(llama_server.url, "endpoint=chat", "scoring=echo")
    with pytest.raises(MissingCapability, match="echo"):
        backend.loglikelihood([ScoreRequest("3 4 5", "", " 6")])


# -- fault tolerance -------------------------------------------------------------------------

def test_every_fault_is_retried_and_none_is_lost(llama_server, reference, tmp_path):
    schedule = ["429", "500", "timeout", "truncated", "malformed", "missing_field", "reset", "ok", "500", "reset"]
    reqs = greedy(PROMPTS) + [GenerationRequest("POISON: this request always gets a malformed body", "", 8)]
    with FaultProxy(llama_server.root, schedule, poison="POISON", retry_after=0.2) as proxy:
        # two calls in flight (prompt_cache=off: a llama.cpp server otherwise gets one at a time), so
        # the schedule's faults fall on several requests, none on one request more than max_retries times
        backend = make(proxy.url, "endpoint=completions", "timeout=10", "max_retries=3", "concurrency=2",
                       "prompt_cache=off")
        engine = Engine(backend, CallCache(tmp_path / "calls.sqlite"), progress=False)
        out = engine.run(reqs)
        faults = proxy.faults()
    assert [c.text for c in out[:-1]] == [reference[p] for p in PROMPTS]
    assert all(c.error is None for c in out[:-1])
    poisoned = out[-1]
    assert poisoned.text == "" and poisoned.error.startswith("request #")
    assert "'POISON: this request" in poisoned.error and "malformed response body" in poisoned.error
    assert "gave up after 4 attempts" in poisoned.error
    assert engine.stats.failed_calls == 1 and engine.stats.failures == [poisoned.error]
    assert backend.counters["failures"] == 1 and backend.counters["retries"] >= 4
    for fault in set(schedule) - {"ok", "malformed"}:
        assert faults.count(fault) == schedule.count(fault), fault
    assert faults.count("malformed") == 1 + 4  # one scheduled, four for the poisoned request
    assert engine.cache.count(backend.identity.cache_key) == len(PROMPTS)  # finished calls are kept, failures are not


def test_a_resumed_run_repeats_only_the_failed_call(llama_server, reference, tmp_path):
    reqs = greedy(PROMPTS[:3]) + [GenerationRequest("POISON: malformed until the server heals", "", 8)]
    with FaultProxy(llama_server.root, poison="POISON") as proxy:
        backend = make(proxy.url, "endpoint=completions", "max_retries=1")
        first = Engine(backend, CallCache(tmp_path / "calls.sqlite"), progress=False).run(reqs)
        assert [bool(c.error) for c in first] == [False, False, False, True]
        proxy.poison, sent = None, len(proxy.log)
        second = Engine(backend, CallCache(tmp_path / "calls.sqlite"), progress=False)
        out = second.run(reqs)
        assert [p for _, p, _ in proxy.log[sent:] if p.endswith("/completions")] == ["/v1/completions"]
    assert second.stats.cache_hits == 3 and out[:3] == first[:3] and out[-1].error is None and out[-1].text


def test_retry_after_is_honoured(llama_server, reference):
    with FaultProxy(llama_server.root, ["429"], retry_after=1.5) as proxy:
        backend = make(proxy.url, "endpoint=completions")
        (c,) = backend.generate(greedy(PROMPTS[:1]))
        (t429, _, f429), (tok, _, fok) = [e for e in proxy.log if e[1].endswith("/completions")]
    assert (f429, fok) == ("429", "ok") and c.text == reference[PROMPTS[0]]
    assert tok - t429 >= 1.5  # backoff_base is 0.01 here: only Retry-After explains the wait


def test_a_client_error_is_not_retried(llama_server):
    with FaultProxy(llama_server.root, ["echo_auth"]) as proxy:
        backend = make(proxy.url, "endpoint=completions")
        start = time.monotonic()
        (c,) = backend.generate(greedy(["a prompt that the server refuses"]))
        posts = [e for e in proxy.log if e[1].endswith("/completions")]  # not the GETs asking what the server is
        assert len(posts) == 1 and time.monotonic() - start < 5
    assert c.error.startswith("request #0 (") and "HTTP 400" in c.error and "not retried" in c.error


# -- the API key ---------------------------------------------------------------------------------

SENTINEL = "sk-faithcheck-SENTINEL-7f3a9c"


def test_api_key_never_appears_anywhere(llama_server, monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("OPENAI_API_KEY", SENTINEL)
    caplog.set_level(logging.DEBUG)
    with FaultProxy(llama_server.root, ["ok", "echo_auth", "500"], poison="POISON") as proxy:
        backend = make(proxy.url, "endpoint=completions", "concurrency=1", "max_retries=1")
        engine = Engine(backend, CallCache(tmp_path / "calls.sqlite"), progress=False)
        reqs = greedy(PROMPTS[:3]) + [GenerationRequest("POISON", "", 4)]
        out = engine.run(reqs)
        scores = backend.loglikelihood([ScoreRequest("The capital of France is", "", " Paris")])
        assert proxy.auth_headers_seen >= len(reqs)  # the key was sent...
    errors = [c.error for c in out if c.error]
    assert len(errors) == 2 and any("<redacted>" in e for e in errors)  # ...and scrubbed where a server echoed it
    assert scores[0] < 0 and "retry 1" in caplog.text  # our retry log lines are among those searched
    seen = [backend.fingerprint, repr(backend), str(vars(backend)), repr(backend.config), caplog.text,
            *errors, *map(repr, out), repr(engine.stats.to_dict()), llama_server.log.read_text(errors="replace")]
    assert not [s for s in seen if SENTINEL in s]
    engine.cache.close()
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written and not [p for p in written if SENTINEL.encode() in p.read_bytes()]


def test_variants_of_one_prompt_stay_on_one_server(llama_server, reference):
    """Prefix affinity: every call that shares a prompt goes to the same server (so its prefix
    cache holds the prompt) while that server has room. Distinct prompts still spread: see
    test_multiple_base_urls_spread_the_requests."""
    prefills = ["", " so", " so the", " so the answer", " because", " then"]
    with FaultProxy(llama_server.root) as proxy:
        backend = make(f"{llama_server.url},{proxy.url}", "concurrency=8", "endpoint=completions")
        for prompt in PROMPTS[:3]:
            before = len(proxy.log)
            backend.generate([GenerationRequest(prompt, p, 2) for p in prefills])
            via_proxy = sum(1 for _, path, _ in proxy.log[before:] if path.endswith("/completions"))
            assert via_proxy in (0, len(prefills))
