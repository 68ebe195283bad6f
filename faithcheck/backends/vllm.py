"""`vllm:MODEL`: vLLM in-process on a GPU, with prefix caching on.

UNTESTED AGAINST A REAL vLLM HERE. The project's machines have no CUDA and cannot install
vLLM, so this module is written against vLLM's documented offline API (`LLM`,
`SamplingParams`, `RequestOutput.outputs[0].logprobs`) and tested only through a stand-in
module injected as `vllm` (tests/backends/conftest.py) that checks the calls it receives.
vLLM's OpenAI-compatible *server* is covered by the `openai:` backend, which is tested
against a real server.

Answers are scored from the top-k log-probabilities of the next token with `max_tokens=1`,
never `prompt_logprobs`: prompt log-probabilities are computed outside vLLM's prefix
cache, so every scoring call would re-run its whole prompt.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from faithcheck.backends import backends
from faithcheck.backends.base import Backend, ScoreRequest, parse_model_args
from faithcheck.errors import BadInput, MissingExtra
from faithcheck.records import Completion, GenerationRequest

INSTALL = "the vllm: backend needs vLLM: pip install faithcheck[vllm] (needs a CUDA GPU)"
_DTYPES = ("auto", "half", "float16", "bfloat16", "float", "float32")


@dataclass(frozen=True)
class VLLMConfig:
    """Engine options passed through to `vllm.LLM` (None: vLLM's default), plus `logprobs_top_k`."""

    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1
    dtype: str = "auto"
    gpu_memory_utilization: float = 0.9
    max_model_len: int | None = None
    max_num_seqs: int | None = None
    quantization: str | None = None
    revision: str | None = None
    tokenizer: str | None = None
    download_dir: str | None = None
    trust_remote_code: bool = False
    enforce_eager: bool = False
    seed: int = 0
    logprobs_top_k: int = 20  # answer scoring; the engine's max_logprobs is raised to match

    def __post_init__(self) -> None:
        bad = []
        if self.dtype not in _DTYPES:
            bad.append(f"dtype={self.dtype} (expected one of {', '.join(_DTYPES)})")
        if not 0 < self.gpu_memory_utilization <= 1:
            bad.append(f"gpu_memory_utilization={self.gpu_memory_utilization} (expected in (0, 1])")
        for key in ("tensor_parallel_size", "pipeline_parallel_size", "max_model_len", "max_num_seqs", "logprobs_top_k"):
            value = getattr(self, key)
            if value is not None and value < 1:
                bad.append(f"{key}={value} (expected at least 1)")
        if bad:
            raise BadInput("--model-arg " + "; ".join(bad))

    def engine_args(self) -> dict[str, Any]:
        args = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "logprobs_top_k"}
        args = {k: v for k, v in args.items() if v is not None}
        args["max_logprobs"] = max(20, self.logprobs_top_k)
        return args


def _describe(i: int, req: GenerationRequest) -> str:
    head = req.text[:40].replace("\n", " ")
    return f"request #{i} ({req.key()[:10]}, prompt {head!r}...)"


def _cut_at_stop(text: str, stop: tuple[str, ...]) -> str:
    cuts = [text.find(s) for s in stop if s and s in text]
    return text[: min(cuts)] if cuts else text


class VLLMBackend(Backend):
    """vLLM's offline `LLM` engine; see the module docstring."""

    name = "vllm"

    def __init__(self, model: str, config: VLLMConfig, vllm: Any):
        self.model, self.config, self._vllm = model, config, vllm
        self.llm = vllm.LLM(model=model, enable_prefix_caching=True, **config.engine_args())
        extras = [f"{k}={getattr(config, k)}" for k in ("revision", "dtype", "quantization")
                  if getattr(config, k) not in (None, "auto")]
        self.fingerprint = f"vllm:{model}" + "".join(f"|{e}" for e in extras)

    def __repr__(self) -> str:
        return f"VLLMBackend(model={self.model!r}, config={self.config!r})"

    def _params(self, req: GenerationRequest) -> Any:
        return self._vllm.SamplingParams(
            temperature=req.temperature, max_tokens=req.max_new_tokens, stop=list(req.stop) or None,
            seed=req.seed if req.temperature > 0 else None)

    def _completion(self, req: GenerationRequest, out: Any) -> Completion:
        best = out.outputs[0]
        return Completion(_cut_at_stop(best.text, req.stop), len(out.prompt_token_ids or ()), len(best.token_ids),
                          best.finish_reason or "stop")

    def generate(self, requests: list[GenerationRequest]) -> list[Completion]:
        """One engine call per batch, sorted so shared prefixes are adjacent (vLLM's prefix cache
        then hits); results come back in request order. If the batch call raises (one prompt
        over max_model_len fails them all), the requests are retried one by one so the error
        lands on the request that caused it."""
        results: list[Completion | None] = [None] * len(requests)
        for i, req in enumerate(requests):
            if req.max_new_tokens <= 0:
                results[i] = Completion("", finish_reason="length")
        todo = sorted((i for i, r in enumerate(requests) if results[i] is None), key=lambda i: requests[i].text)
        if todo:
            try:
                outs = self.llm.generate([requests[i].text for i in todo], [self._params(requests[i]) for i in todo],
                                         use_tqdm=False)
                for i, out in zip(todo, outs, strict=True):
                    results[i] = self._completion(requests[i], out)
            except Exception:  # noqa: BLE001 - isolate the request at fault below
                for i in todo:
                    results[i] = self._generate_one(i, requests[i])
        return [r for r in results if r is not None]

    def _generate_one(self, i: int, req: GenerationRequest) -> Completion:
        try:
            (out,) = self.llm.generate([req.text], [self._params(req)], use_tqdm=False)
            return self._completion(req, out)
        except Exception as e:  # noqa: BLE001 - a failed request is a Completion with error, never a crash
            return Completion("", error=f"{_describe(i, req)}: {type(e).__name__}: {e}")

    def count_tokens(self, text: str) -> int:
        return len(self.llm.get_tokenizer().encode(text, add_special_tokens=False))

    def _split(self, req: ScoreRequest) -> tuple[list[int], list[int]]:
        """Token ids of the context and of the continuation as the model would see them together."""
        tok = self.llm.get_tokenizer()
        context = list(tok.encode(req.prompt + req.prefill))
        full = list(tok.encode(req.prompt + req.prefill + req.continuation))
        if full[: len(context)] == context:
            return context, full[len(context):]
        return context, list(tok.encode(req.continuation, add_special_tokens=False))

    def loglikelihood(self, requests: list[ScoreRequest]) -> list[float]:
        """Sum over the continuation's tokens of log P(token | everything before it).

        Position j of every request is one batched engine call on token prompts with
        `max_tokens=1` and `logprobs=logprobs_top_k`; each call extends the previous one's
        prompt by a token, so the prefix cache serves it. A continuation token outside the
        top k (plus the greedy token, which vLLM always returns) scores -inf."""
        plans = [self._split(r) for r in requests]
        totals = [0.0] * len(requests)
        params = self._vllm.SamplingParams(temperature=0.0, max_tokens=1, logprobs=self.config.logprobs_top_k)
        for j in range(max((len(c) for _, c in plans), default=0)):
            live = sorted((i for i, (_, c) in enumerate(plans) if j < len(c) and totals[i] > -math.inf),
                          key=lambda i: plans[i][0] + plans[i][1][:j])
            if not live:
                break
            prompts = [{"prompt_token_ids": plans[i][0] + plans[i][1][:j]} for i in live]
            outs = self.llm.generate(prompts, params, use_tqdm=False)
            for i, out in zip(live, outs, strict=True):
                top = out.outputs[0].logprobs[0]
                target = plans[i][1][j]
                totals[i] += top[target].logprob if target in top else -math.inf
        return totals


@backends.register("vllm", "vLLM in-process on a CUDA GPU, prefix caching on: vllm:MODEL")
def load(target: str, model_args: list[str]) -> VLLMBackend:
    config = parse_model_args(VLLMConfig, model_args)
    try:
        import vllm
    except ImportError:
        raise MissingExtra(INSTALL) from None
    return VLLMBackend(target, config, vllm)
