"""Fixtures for the backend tests: a stand-in `vllm` (the llama.cpp server fixture,
`llama_server`, lives in tests/conftest.py: the rewriter and probe tests use it too).

The stand-in `vllm` is injected at the import boundary (sys.modules) because vLLM cannot
be installed here: a character-level toy model behind vLLM's offline API that checks the
arguments it receives the way vLLM does (unknown engine args, max_tokens < 1, logprobs
over max_logprobs, prompts over max_model_len) and refuses prompt_logprobs outright.
"""

from __future__ import annotations

import math
import random
import sys
import types
import zlib
from dataclasses import dataclass
from types import SimpleNamespace

import pytest

# -- a stand-in for vllm ---------------------------------------------------------------

BOS = 1
VOCAB = [ord(c) for c in "abcdefghijklmnopqrstuvwxyz .,\n0123456789"]
ENGINE_ARGS = {"model", "tokenizer", "dtype", "tensor_parallel_size", "pipeline_parallel_size",
               "gpu_memory_utilization", "max_model_len", "max_num_seqs", "quantization", "revision",
               "download_dir", "trust_remote_code", "enforce_eager", "seed", "enable_prefix_caching", "max_logprobs"}


@dataclass(frozen=True)
class Logprob:
    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


class FakeTokenizer:
    """One token per character (id = code point), BOS first, like an HF tokenizer's encode."""

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return ([BOS] if add_special_tokens else []) + [ord(c) for c in text]

    def decode(self, ids: list[int]) -> str:
        return "".join(chr(i) for i in ids if i != BOS)


def next_token_logprobs(ids: list[int]) -> dict[int, float]:
    """A fixed pseudo-random next-token distribution, a function of the last 4 tokens."""
    rng = random.Random(zlib.crc32(repr(ids[-4:]).encode()))
    logits = [rng.gauss(0.0, 3.0) for _ in VOCAB]
    norm = math.log(sum(math.exp(x) for x in logits))
    return {t: x - norm for t, x in zip(VOCAB, logits)}


class FakeSamplingParams:
    def __init__(self, n: int = 1, temperature: float = 1.0, max_tokens: int | None = 16, stop=None,
                 seed: int | None = None, logprobs: int | None = None, prompt_logprobs: int | None = None):
        if max_tokens is not None and max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {max_tokens}.")
        if temperature < 0:
            raise ValueError(f"temperature must be non-negative, got {temperature}.")
        self.n, self.temperature, self.max_tokens = n, temperature, max_tokens or 16
        self.stop = [stop] if isinstance(stop, str) else list(stop or [])
        self.seed, self.logprobs, self.prompt_logprobs = seed, logprobs, prompt_logprobs


class FakeLLM:
    instances: list[FakeLLM] = []

    def __init__(self, model: str, **kwargs):
        unknown = set(kwargs) - ENGINE_ARGS
        if unknown:
            raise TypeError(f"LLM got unexpected engine arguments {sorted(unknown)}")
        self.model, self.kwargs = model, kwargs
        self.max_model_len = kwargs.get("max_model_len") or 512
        self.max_logprobs = kwargs.get("max_logprobs", 20)
        self.calls: list[tuple[list, list[FakeSamplingParams]]] = []
        FakeLLM.instances.append(self)

    def get_tokenizer(self) -> FakeTokenizer:
        return FakeTokenizer()

    def generate(self, prompts, sampling_params=None, use_tqdm: bool = True):
        prompts = [prompts] if isinstance(prompts, (str, dict)) else list(prompts)
        params = sampling_params if isinstance(sampling_params, list) else [sampling_params or FakeSamplingParams()]
        params = params * len(prompts) if len(params) == 1 else params
        if len(params) != len(prompts):
            raise ValueError("The lengths of prompts and sampling_params must be the same.")
        self.calls.append((prompts, params))
        outs = []
        for prompt, p in zip(prompts, params):
            assert p.prompt_logprobs is None, "prompt_logprobs defeat the prefix cache: use logprobs at max_tokens=1"
            if p.logprobs is not None and p.logprobs > self.max_logprobs:
                raise ValueError(f"Requested sample logprobs of {p.logprobs}, which is greater than max allowed: "
                                 f"{self.max_logprobs}")
            ids = prompt["prompt_token_ids"] if isinstance(prompt, dict) else FakeTokenizer().encode(prompt)
            if len(ids) > self.max_model_len:
                raise ValueError(f"The decoder prompt (length {len(ids)}) is longer than the maximum model length "
                                 f"of {self.max_model_len}.")
            outs.append(self._decode(prompt, list(ids), p))
        return outs

    def _decode(self, prompt, ids: list[int], p: FakeSamplingParams) -> SimpleNamespace:
        rng = random.Random(p.seed)
        out_ids: list[int] = []
        logprobs: list[dict[int, Logprob]] = []
        text, finish = "", "length"
        for _ in range(p.max_tokens):
            dist = next_token_logprobs(ids + out_ids)
            if p.temperature == 0:
                token = max(dist, key=dist.get)
            else:
                weights = [math.exp(dist[t] / p.temperature) for t in VOCAB]
                token = rng.choices(VOCAB, weights)[0]
            out_ids.append(token)
            if p.logprobs is not None:
                ranked = sorted(dist, key=dist.get, reverse=True)
                top = {t: Logprob(dist[t], r + 1, chr(t)) for r, t in enumerate(ranked[: p.logprobs])}
                top[token] = Logprob(dist[token], ranked.index(token) + 1, chr(token))
                logprobs.append(top)
            text += chr(token)
            hits = [text.find(s) for s in p.stop if s in text]
            if hits:
                text, finish = text[: min(hits)], "stop"
                break
        best = SimpleNamespace(index=0, text=text, token_ids=out_ids, finish_reason=finish,
                               logprobs=logprobs if p.logprobs is not None else None)
        return SimpleNamespace(prompt=prompt if isinstance(prompt, str) else None, prompt_token_ids=ids, outputs=[best])


@pytest.fixture
def fake_vllm(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """`import vllm` yields the stand-in for the duration of a test."""
    module = types.ModuleType("vllm")
    module.LLM, module.SamplingParams = FakeLLM, FakeSamplingParams
    FakeLLM.instances = []
    monkeypatch.setitem(sys.modules, "vllm", module)
    return module
