"""One conformance suite, run against every backend available here.

hf: a tiny untrained GPT-2 with the organisms' tokenizer, saved to a temporary directory;
openai: llama.cpp's server with gemma-3-270m on loopback (skips where llama_cpp is absent);
vllm: the stand-in module of conftest.py (there is no real vLLM here). Prompts are
numbers separated by spaces, which every one of these tokenizers knows.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from faithcheck.backends import Backend, ScoreRequest, backends, load_backend
from faithcheck.records import GenerationRequest

PROMPTS = ["3 4 5 6", "10 20 30", "7 7 7", "1 2", "40 41 42 43 44"]
# Over every context window here (hf: 128 positions, vllm stand-in: 256, llama.cpp: n_ctx 2048).
LONG = "99 98 97 this request is far too long " + " 7" * 3000


@dataclass
class Case:
    backend: Backend
    n: int  # max_new_tokens that gives each backend some text to work with


@pytest.fixture(scope="session")
def tiny_hf_dir(tmp_path_factory: pytest.TempPathFactory):
    import torch

    from faithcheck.organisms.train import RECIPES, build_model, build_tokenizer

    path = tmp_path_factory.mktemp("tiny_hf")
    torch.manual_seed(0)
    tok = build_tokenizer()
    build_model(RECIPES["faithful"], tok).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(params=["hf", "openai", "vllm"])
def case(request: pytest.FixtureRequest) -> Case:
    kind = request.param
    if kind not in backends.names():
        pytest.skip(f"backend {kind!r} is not in this checkout")
    if kind == "hf":
        return Case(load_backend(f"hf:{request.getfixturevalue('tiny_hf_dir')}", ["batch_size=4"]), 6)
    if kind == "openai":
        server = request.getfixturevalue("llama_server")
        return Case(load_backend(f"openai:gemma@{server.url}", ["backoff_base=0.01", "concurrency=2", "timeout=60", "max_retries=2"]), 6)
    request.getfixturevalue("fake_vllm")
    return Case(load_backend("vllm:stand-in", ["max_model_len=256"]), 6)


def test_greedy_is_deterministic(case: Case):
    reqs = [GenerationRequest(p, "", case.n) for p in PROMPTS[:3]]
    first, again = case.backend.generate(reqs), case.backend.generate(reqs)
    assert [c.text for c in first] == [c.text for c in again]
    assert all(c.error is None for c in first) and any(c.text.strip() for c in first)


def test_stop_strings(case: Case):
    prompt = PROMPTS[0]
    (full,) = case.backend.generate([GenerationRequest(prompt, "", 12)])
    body = full.text.rstrip()
    stop = body[len(body) // 2: len(body) // 2 + 2]
    assert stop.strip(), f"not enough text to pick a stop string from: {full.text!r}"
    (cut,) = case.backend.generate([GenerationRequest(prompt, "", 12, (stop,))])
    assert stop not in cut.text and cut.text == full.text[: full.text.find(stop)]


def test_batch_order_is_preserved(case: Case):
    reqs = [GenerationRequest(p, "", case.n) for p in PROMPTS + PROMPTS[::2]]
    batched = case.backend.generate(reqs)
    alone = {r.prompt: case.backend.generate([r])[0].text for r in reqs}
    assert len(batched) == len(reqs)
    assert [c.text for c in batched] == [alone[r.prompt] for r in reqs]


def test_scoring_agrees_with_generation(case: Case):
    prompt = PROMPTS[0]
    (first,) = case.backend.generate([GenerationRequest(prompt, "", 1)])
    assert first.text, "the greedy next token is empty (end of text): pick another prompt"
    candidates = [first.text] + [c for c in (" 1", " 2", " 3", " 9") if c != first.text]
    scores = case.backend.loglikelihood([ScoreRequest(prompt, "", c) for c in candidates])
    assert max(range(len(scores)), key=scores.__getitem__) == 0, dict(zip(candidates, scores))


def test_errors_surface_with_the_request_that_caused_them(case: Case):
    reqs = [GenerationRequest(PROMPTS[0], "", case.n), GenerationRequest(LONG, "", case.n),
            GenerationRequest(PROMPTS[1], "", case.n)]
    out = case.backend.generate(reqs)
    assert out[0].error is None and out[2].error is None
    assert out[1].error and out[1].text == ""
    assert "99 98 97 this request" in out[1].error  # names the request at fault
