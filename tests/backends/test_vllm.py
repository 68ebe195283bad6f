"""The vllm: backend, driven through the stand-in `vllm` module of conftest.py (no real vLLM here)."""

from __future__ import annotations

import math
import sys

import pytest
from conftest import FakeLLM, FakeTokenizer, next_token_logprobs

from faithcheck.backends import ScoreRequest, backends, load_backend
from faithcheck.backends.vllm import load
from faithcheck.errors import BadInput, MissingExtra
from faithcheck.records import GenerationRequest


def test_module_says_it_is_untested_against_real_vllm():
    import faithcheck.backends.vllm as mod

    assert "UNTESTED AGAINST A REAL vLLM HERE" in mod.__doc__


def test_missing_vllm_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` raise ImportError
    with pytest.raises(MissingExtra, match=r"pip install faithcheck\[vllm\] \(needs a CUDA GPU\)"):
        load("some/model", [])


def test_registered_as_vllm_scheme(fake_vllm):
    assert backends.get("vllm").factory is load
    assert load_backend("vllm:org/model").fingerprint == "vllm:org/model"


def test_engine_args_are_validated_and_passed_through(fake_vllm):
    backend = load("org/model", ["tensor_parallel_size=2", "dtype=bfloat16", "max_model_len=256",
                                              "gpu_memory_utilization=0.5", "enforce_eager=true"])
    (llm,) = FakeLLM.instances
    assert llm.model == "org/model"
    assert llm.kwargs["enable_prefix_caching"] is True
    assert llm.kwargs["tensor_parallel_size"] == 2 and llm.kwargs["max_model_len"] == 256
    assert llm.kwargs["dtype"] == "bfloat16" and llm.kwargs["gpu_memory_utilization"] == 0.5
    assert llm.kwargs["enforce_eager"] is True and llm.kwargs["max_logprobs"] >= 20
    assert "quantization" not in llm.kwargs  # unset options keep vLLM's defaults
    assert backend.fingerprint == "vllm:org/model|dtype=bfloat16"


@pytest.mark.parametrize("arg, match", [
    ("tensor_paralel_size=2", "unknown key"),
    ("tensor_parallel_size=two", "expected int"),
    ("tensor_parallel_size=0", "at least 1"),
    ("dtype=fp7", "dtype=fp7"),
    ("gpu_memory_utilization=1.5", "gpu_memory_utilization"),
])
def test_bad_engine_args_are_bad_input(fake_vllm, arg, match):
    with pytest.raises(BadInput, match=match):
        load("m", [arg])
    assert not FakeLLM.instances


def test_generate_sorts_for_prefix_sharing_and_restores_order(fake_vllm):
    backend = load("m", [])
    reqs = [GenerationRequest("zeta question ", "", 5), GenerationRequest("alpha question ", "step one", 7, ("x",)),
            GenerationRequest("alpha question ", "", 3, temperature=0.7, seed=11)]
    out = backend.generate(reqs)
    (llm,) = FakeLLM.instances
    ((prompts, params),) = llm.calls
    assert prompts == sorted(r.text for r in reqs)
    by_prompt = dict(zip(prompts, params))
    p = by_prompt["alpha question step one"]
    assert (p.temperature, p.max_tokens, p.stop, p.seed) == (0.0, 7, ["x"], None)
    p = by_prompt["alpha question "]
    assert (p.temperature, p.max_tokens, p.seed) == (0.7, 3, 11)  # seed only for sampled requests
    assert all(q.logprobs is None and q.prompt_logprobs is None for q in params)
    alone = [backend.generate([r])[0] for r in reqs]
    assert out == alone  # order restored; greedy and seeded results do not depend on the batch
    assert all(c.error is None and c.n_prompt_tokens == len(r.text) + 1 for c, r in zip(out, reqs))


def test_zero_max_tokens_makes_no_call(fake_vllm):
    backend = load("m", [])
    (c,) = backend.generate([GenerationRequest("q", "", 0)])
    assert c.text == "" and c.error is None and FakeLLM.instances[0].calls == []


def test_an_over_long_prompt_fails_only_its_own_request(fake_vllm):
    backend = load("m", ["max_model_len=64"])
    reqs = [GenerationRequest("short one", "", 4), GenerationRequest("long " * 40, "", 4), GenerationRequest("ok", "", 4)]
    out = backend.generate(reqs)
    assert out[0].error is None and out[2].error is None and out[0].text and out[2].text
    assert out[1].error and out[1].error.startswith("request #1 (") and "maximum model length" in out[1].error


def test_loglikelihood_uses_next_token_logprobs_not_prompt_logprobs(fake_vllm):
    backend = load("m", ["logprobs_top_k=40"])
    reqs = [ScoreRequest("the answer is", ":", " b"), ScoreRequest("question", "", "x")]
    scores = backend.loglikelihood(reqs)
    tok = FakeTokenizer()
    for req, score in zip(reqs, scores):
        ids, expected = tok.encode(req.prompt + req.prefill), 0.0
        for ch in req.continuation:
            expected += next_token_logprobs(ids)[ord(ch)]
            ids = ids + [ord(ch)]
        assert score == pytest.approx(expected)
    llm = FakeLLM.instances[0]
    assert len(llm.calls) == 2  # one batched call per continuation position
    for prompts, params in llm.calls:
        assert all(isinstance(p, dict) and "prompt_token_ids" in p for p in prompts)
        assert all(q.max_tokens == 1 and q.logprobs == 40 and q.prompt_logprobs is None for q in params)
    assert len(llm.calls[1][0]) == 1  # the one-token continuation is done after the first position


def test_a_token_outside_the_top_k_scores_minus_infinity(fake_vllm):
    backend = load("m", ["logprobs_top_k=1"])
    dist = next_token_logprobs(FakeTokenizer().encode("q"))
    worst = chr(min(dist, key=dist.get))
    best = chr(max(dist, key=dist.get))
    assert backend.loglikelihood([ScoreRequest("q", "", worst)]) == [-math.inf]
    assert backend.loglikelihood([ScoreRequest("q", "", best)])[0] == pytest.approx(max(dist.values()))
