"""`openai:MODEL@URL[,URL2,...]`: any OpenAI-compatible HTTP server (vLLM, llama.cpp, SGLang, hosted APIs).

The wire calls are async (httpx) with bounded concurrency, run inside the synchronous
`generate`, so one slow server call never blocks the rest of a batch. Every call is
retried with exponential backoff and jitter on 429, 5xx, timeouts, connection resets and
malformed bodies (honouring Retry-After); a call that still fails becomes a Completion
with `error` naming the request, so a run goes on and the engine counts it.

Several URLs spread requests across servers: each call goes to the least-loaded server
(ties broken round-robin). The API key is read from an environment variable when a batch
starts and lives only in that batch's HTTP client: it is never kept on the backend, and
is scrubbed from error messages and log lines (before any cut, so no fragment survives)
in case a server echoes it back.

Each call is handed to the engine the moment it is answered (`generate_stream`), so it is
in the cache before the next request is sent. Retries are logged one line each (INFO, the
CLI's -v) and counted with their cause and the time spent waiting in `counters`, which
the run's manifest records; a call still waiting after `warn_after` seconds is reported
(WARNING) while it waits. A server that refuses connections fails the run at once
(`ModelUnavailable`) instead of failing every call.

How a request is written for the server (endpoint, chat template, an edited CoT as an open
assistant turn, llama.cpp's prompt cache and the order requests reach it) is decided once per
backend, in `_openai_prompt.py`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Awaitable
from dataclasses import dataclass, field
from typing import TypeVar

from faithcheck.backends import backends
from faithcheck.backends._chat_template import BUILTIN
from faithcheck.backends._openai_http import MALFORMED as _MALFORMED
from faithcheck.backends._openai_http import CallFailed, _Session, scrub
from faithcheck.backends._openai_prompt import TEMPLATE_CHOICES, MissingCapability, Prompting, read_order
from faithcheck.backends._openai_server import ServerInfo
from faithcheck.backends.base import HARMLESS, ScoreRequest, StreamingBackend, parse_model_args
from faithcheck.errors import BadInput, MissingExtra, ModelUnavailable
from faithcheck.records import Completion, GenerationRequest

T = TypeVar("T")


@dataclass(frozen=True)
class OpenAIConfig:
    endpoint: str = "auto"  # auto | completions | chat
    concurrency: int = field(default=8, metadata=HARMLESS)  # requests in flight per server
    timeout: float = field(default=120.0, metadata=HARMLESS)  # seconds per HTTP attempt
    max_retries: int = field(default=5, metadata=HARMLESS)
    api_key_env: str = field(default="OPENAI_API_KEY", metadata=HARMLESS)  # the variable's *name*; its value is never stored
    logprobs_top_k: int = 20  # hosted completions APIs cap this at 5
    scoring: str = "topk"  # topk | echo (see OpenAIBackend.loglikelihood)
    backoff_base: float = field(default=1.0, metadata=HARMLESS)  # seconds; doubles per retry, with jitter
    backoff_max: float = field(default=60.0, metadata=HARMLESS)  # cap on one wait, Retry-After included
    warn_after: float = field(default=30.0, metadata=HARMLESS)  # report a call still waiting after this many seconds (0: never)
    # none | auto (the server's, GET /props) | chatml | gemma | llama3 | PATH: rendered here for /completions
    chat_template: str = "none"
    # auto: a llama.cpp server gets requests in prefix order, one per slot (and cache_prompt) | off
    prompt_cache: str = field(default="auto", metadata=HARMLESS)

    def __post_init__(self) -> None:
        if self.endpoint not in ("auto", "completions", "chat"):
            raise BadInput(f"--model-arg endpoint={self.endpoint}: expected auto, completions or chat")
        if self.prompt_cache not in ("auto", "off"):
            raise BadInput(f"--model-arg prompt_cache={self.prompt_cache}: expected auto or off")
        if not self.chat_template:
            raise BadInput(f"--model-arg chat_template=: expected {TEMPLATE_CHOICES}")
        if self.endpoint == "chat" and self.chat_template != "none":
            raise BadInput(f"--model-arg chat_template={self.chat_template} renders the turns here for /completions, "
                           "but endpoint=chat sends them to the server's template: drop one (endpoint=auto tries "
                           "the chat endpoint first, then the template)")
        if self.scoring not in ("topk", "echo"):
            raise BadInput(f"--model-arg scoring={self.scoring}: expected topk or echo")
        for key in ("concurrency", "logprobs_top_k"):
            if getattr(self, key) < 1:
                raise BadInput(f"--model-arg {key}={getattr(self, key)}: must be at least 1")
        for key in ("timeout", "backoff_base", "backoff_max", "warn_after"):
            if not math.isfinite(getattr(self, key)):
                raise BadInput(f"--model-arg {key}={getattr(self, key)}: must be a finite number of seconds")
        if self.timeout <= 0 or self.max_retries < 0 or self.backoff_base < 0 or self.backoff_max < 0 or self.warn_after < 0:
            raise BadInput("--model-arg timeout must be > 0; max_retries, backoff_base, backoff_max, warn_after >= 0")


def describe(i: int, req: GenerationRequest | ScoreRequest) -> str:
    """How an error names its request: batch position, a key prefix and the prompt's start."""
    key = req.key()[:10] if isinstance(req, GenerationRequest) else f"score:{req.continuation!r}"
    head = (req.prompt + req.prefill)[:40].replace("\n", " ")
    return f"request #{i} ({key}, prompt {head!r}...)"


def cut_at_stop(text: str, stop: tuple[str, ...]) -> str:
    """Servers differ on whether a stop string is kept; we always drop it and what follows."""
    cuts = [text.find(s) for s in stop if s and s in text]
    return text[: min(cuts)] if cuts else text


def _text_choice(d: dict) -> tuple[str, str, dict]:
    c = d["choices"][0]
    if not isinstance(c["text"], str):
        raise TypeError("choices[0].text is not a string")
    return c["text"], c.get("finish_reason") or "stop", d.get("usage") or {}


def _chat_choice(d: dict) -> tuple[str, str, dict]:
    c = d["choices"][0]
    content = c["message"]["content"]
    if content is not None and not isinstance(content, str):
        raise TypeError("choices[0].message.content is not a string")
    return content or "", c.get("finish_reason") or "stop", d.get("usage") or {}


def _top_completions(d: dict) -> dict[str, float]:
    return {str(t): float(lp) for t, lp in d["choices"][0]["logprobs"]["top_logprobs"][0].items()}


def _top_chat(d: dict) -> dict[str, float]:
    return {e["token"]: float(e["logprob"]) for e in d["choices"][0]["logprobs"]["content"][0]["top_logprobs"]}


class OpenAIBackend(StreamingBackend):
    """Any OpenAI-compatible server; see the module docstring."""

    name = "openai"
    takes_turns = True  # GenerationRequest.context: chat turns, or text before the prompt on completions

    @property
    def chat(self) -> bool:
        """Prompted as a chat model: when endpoint=chat or a chat_template is set (auto's
        endpoint is decided at the first call)."""
        return self.config.endpoint == "chat" or self.config.chat_template != "none"

    def __init__(self, model: str, urls: tuple[str, ...], config: OpenAIConfig):
        self.model, self.urls, self.config = model, urls, config
        self.prompting = Prompting(model, urls, config)  # endpoint, chat template, server kind
        self._echo: bool | None = None
        self._fingerprint: str | None = None
        self.counters: Counter = Counter()  # attempts, retries (with causes and seconds waited), failures

    @property
    def _endpoint(self) -> str | None:
        """completions | template | chat, once the first call has decided (see _openai_prompt)."""
        return self.prompting.endpoint

    @property
    def server(self) -> ServerInfo | None:
        """What answers at the first URL, once the first call has asked (prompt_cache=auto)."""
        return self.prompting.server

    def _body(self, endpoint: str, req: GenerationRequest, prefill: str, max_tokens: int) -> dict:
        return self.prompting.body(endpoint, req, prefill, max_tokens)

    def __repr__(self) -> str:
        return f"OpenAIBackend(model={self.model!r}, urls={list(self.urls)!r}, config={self.config!r})"

    @property
    def fingerprint(self) -> str:  # type: ignore[override]
        """`openai:MODEL@sorted urls`, plus the model id the server reports when it differs (one cheap GET)."""
        if self._fingerprint is None:
            fp = f"openai:{self.model}@{','.join(sorted(self.urls))}"
            served = self._served_model()
            fp += f" served={served}" if served and served != self.model else ""
            template = self.prompting.template
            if template is not None and self.config.chat_template not in BUILTIN:  # a file: its text
                fp += f" template={template.digest}"
            self._fingerprint = fp
        return self._fingerprint

    def _served_model(self) -> str | None:
        import httpx

        key = os.environ.get(self.config.api_key_env, "")
        url = sorted(self.urls)[0]
        for attempt in range(3):  # a refused connection three times over ~1.5 s: nothing is listening
            try:
                resp = httpx.get(url + "/models", timeout=min(5.0, self.config.timeout),
                                 headers={"Authorization": f"Bearer {key}"} if key else {})
                ids = [m["id"] for m in resp.json()["data"]]
            except httpx.ConnectError as e:
                if attempt == 2:
                    raise ModelUnavailable(f"openai:{self.model}: no server answers at {url} ({type(e).__name__}: "
                                           f"{scrub(str(e), key)}); is it running, and is the URL right?") from None
                time.sleep(0.5 * (attempt + 1))
                continue
            except (httpx.HTTPError, *_MALFORMED):
                return None
            return self.model if self.model in ids else (ids[0] if len(ids) == 1 else None)
        return None

    # -- running a batch -------------------------------------------------------------

    def _run(self, work: Callable[[_Session], Awaitable[T]]) -> T:
        async def main() -> T:
            session = _Session(self.urls, self.config, self.counters, self.model)
            try:
                return await work(session)
            finally:
                await session.client.aclose()

        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(main())
        with concurrent.futures.ThreadPoolExecutor(1) as pool:  # called from inside an event loop
            return pool.submit(asyncio.run, main()).result()

    def generate_stream(self, requests: list[GenerationRequest],
                        emit: Callable[[list[tuple[int, Completion]]], None]) -> None:
        """`emit` gets each call the moment it is answered (or fails for good), inside the event
        loop: nothing else is sent while the engine saves it."""
        if requests:
            self._run(lambda s: self._generate(s, requests, emit))

    async def _generate(self, s: _Session, requests: list[GenerationRequest],
                        emit: Callable[[list[tuple[int, Completion]]], None]) -> None:
        live = [i for i, r in enumerate(requests) if r.max_new_tokens > 0]
        # never send max_tokens=0: llama.cpp reads it as "unlimited"
        emit([(i, Completion("", finish_reason="length")) for i, r in enumerate(requests) if r.max_new_tokens <= 0])
        if not live:
            return
        try:
            endpoint = await self.prompting.prepare(s)
            if endpoint == "chat" and any(requests[i].prefill for i in live):
                await self.prompting.require_chat_prefill(s)  # MissingCapability: a setup error, raised
        except CallFailed as e:  # the probe itself got no answer: fail this batch, retry the probe next time
            emit([(i, Completion("", error=f"{describe(i, requests[i])}: {e}")) for i in live])
            return
        parse = _chat_choice if endpoint == "chat" else _text_choice
        path = "/chat/completions" if endpoint == "chat" else "/completions"
        bodies = {i: self._body(endpoint, requests[i], requests[i].prefill, requests[i].max_new_tokens) for i in live}
        if self.prompting.ordered:  # what the server reads, sorted: shared prefixes one after another
            live.sort(key=lambda i: read_order(bodies[i]))

        async def one(i: int) -> None:
            req = requests[i]
            try:
                text, finish, usage = await s.post(path, bodies[i], describe(i, req), parse, affinity=req.prompt)
            except CallFailed as e:
                emit([(i, Completion("", error=str(e)))])
                return
            emit([(i, Completion(cut_at_stop(text, tuple(bodies[i].get("stop", ()))),
                                 int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0),
                                 finish))])

        await asyncio.gather(*(one(i) for i in live))

    # -- scoring -----------------------------------------------------------------------

    def loglikelihood(self, requests: list[ScoreRequest]) -> list[float]:
        """log P(continuation | prompt + prefill), summed over its tokens.

        "topk" (the default; any server with top-k logprobs, chat included): `max_tokens=1`
        calls at the answer position, consuming the continuation one top-k token at a time; a
        continuation that leaves the top `logprobs_top_k` scores -inf. It asks for log-probabilities
        at one position per token, which keeps vLLM's prefix cache useful and llama.cpp fast.
        "echo" (completions endpoint, where the server gives it; probed once, with a clear error
        where absent): one call on the whole text with `echo` + `logprobs`, summing the tokens
        that cover the continuation. Exact beyond the top k, but it costs log-probabilities at
        every prompt position: llama.cpp sorts its 262k vocabulary per prompt token (measured
        here 5-10x slower than topk), vLLM computes prompt logprobs outside its prefix cache.
        A call that fails for good raises CallFailed naming the request (a float has no error slot).
        """
        return self._run(lambda s: self._score(s, requests)) if requests else []

    async def _score(self, s: _Session, requests: list[ScoreRequest]) -> list[float]:
        endpoint = await self.prompting.prepare(s)
        if self.config.scoring == "echo":
            if self._echo is None:
                self._echo = endpoint != "chat" and await self._probe_echo(s)
            if not self._echo:
                raise MissingCapability(f"openai:{self.model}: the server at {self.urls[0]} does not return prompt "
                                        "log-probabilities (completions echo+logprobs); use --model-arg scoring=topk")
            scorer = self._score_echo
        else:
            if endpoint == "chat" and any(r.prefill or len(r.continuation) > 1 for r in requests):
                await self.prompting.require_chat_prefill(s)  # later top-k steps continue the assistant turn
            scorer = self._score_topk
        if not self.prompting.ordered:
            return list(await asyncio.gather(*(scorer(s, i, r) for i, r in enumerate(requests))))
        # a llama.cpp server: whole requests (all their top-k steps) one after another per slot, in prefix order
        gate = asyncio.Semaphore(self.prompting.per_server * len(self.urls))

        async def held(i: int) -> float:
            async with gate:
                return await scorer(s, i, requests[i])

        order = sorted(range(len(requests)), key=lambda i: (requests[i].prompt + requests[i].prefill,
                                                            requests[i].continuation))
        tasks = {i: asyncio.ensure_future(held(i)) for i in order}  # they queue at the gate in this order
        return list(await asyncio.gather(*(tasks[i] for i in range(len(requests)))))

    async def _probe_echo(self, s: _Session) -> bool:
        status, d = await s.status_of("/completions", {"model": self.model, "prompt": "Hello world", "max_tokens": 1,
                                                       "temperature": 0, "echo": True, "logprobs": 0})
        try:
            return status < 400 and len(d["choices"][0]["logprobs"]["token_logprobs"]) >= 2
        except _MALFORMED:
            return False

    async def _score_echo(self, s: _Session, i: int, req: ScoreRequest) -> float:
        gen = GenerationRequest(req.prompt, req.prefill, 1)
        body = self._body(self._endpoint or "completions", gen, req.prefill, 1)
        context = body.pop("prompt")
        full = context + req.continuation
        body.pop("stop", None)
        body.update(prompt=full, temperature=0, echo=True, logprobs=0)

        def parse(d: dict) -> float:
            lp = d["choices"][0]["logprobs"]
            offsets, logprobs = lp["text_offset"], lp["token_logprobs"]
            ends = list(offsets[1:]) + [math.inf]
            picked = [logprobs[k] for k in range(len(offsets)) if ends[k] > len(context) and offsets[k] < len(full)]
            if not picked or any(x is None for x in picked):
                raise ValueError("no log-probabilities for the continuation's tokens")
            return float(sum(picked))

        return await s.post("/completions", body, describe(i, req), parse)

    async def _score_topk(self, s: _Session, i: int, req: ScoreRequest) -> float:
        endpoint = self._endpoint or "completions"
        k = self.config.logprobs_top_k
        path, parse = ("/chat/completions", _top_chat) if endpoint == "chat" else ("/completions", _top_completions)
        total, done = 0.0, ""
        for _ in range(len(req.continuation)):  # each step consumes at least one character
            gen = GenerationRequest(req.prompt, req.prefill + done, 1)
            body = self._body(endpoint, gen, gen.prefill, 1)
            body.update({"logprobs": True, "top_logprobs": k} if endpoint == "chat" else {"logprobs": k})
            top = await s.post(path, body, describe(i, req), parse, affinity=req.prompt)
            rest = req.continuation[len(done):]
            fits = [t for t in top if t and rest.startswith(t)]
            if not fits:
                return -math.inf
            token = max(fits, key=len)
            total, done = total + top[token], done + token
            if done == req.continuation:
                break
        return total


@backends.register("openai", "any OpenAI-compatible HTTP server: openai:MODEL@URL[,URL2...]")
def load(target: str, model_args: list[str]) -> OpenAIBackend:
    try:
        import httpx  # noqa: F401
    except ImportError:
        raise MissingExtra("the openai: backend needs httpx: pip install faithcheck[openai]") from None
    model, sep, urls = target.partition("@")
    if not sep or not model or not urls:
        raise BadInput(f"model 'openai:{target}': expected openai:MODEL@BASE_URL[,BASE_URL2...]")
    parsed = tuple(u.strip().rstrip("/") for u in urls.split(",") if u.strip())
    for u in parsed:
        if not u.startswith(("http://", "https://")) or "@" in u:
            raise BadInput(f"model 'openai:{target}': base URL {u!r} must start with http:// or https:// "
                           "(and carry no credentials: the key comes from --model-arg api_key_env)")
    return OpenAIBackend(model, parsed, parse_model_args(OpenAIConfig, model_args))
