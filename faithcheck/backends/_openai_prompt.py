"""How the openai: backend writes a request for the server in front of it: which endpoint,
with which chat format, and what the server gets beyond the OpenAI API.

Decided once per backend, at its first call, so a baseline and its prefilled variants are
always prompted the same way:
- `chat_template=none` (the default): `endpoint=auto` is /completions whenever the server
  has it (the turns as plain text, no chat format), else /chat/completions; there, a
  prefill is an open assistant turn (`continue_final_message`, probed once: vLLM has it).
- `chat_template` set (`auto`, a built-in format or a jinja file): /chat/completions where
  the server continues an assistant turn (so its own template applies), else /completions
  with the turns rendered here (`_chat_template.py`), else a MissingCapability error naming
  both. `endpoint=completions` with a template always renders here.
- A llama.cpp server (`_openai_server.py`, with `prompt_cache=auto`; the first URL stands
  for all): the C++ server gets `cache_prompt: true`, and both kinds get requests in prefix
  order, as many at once as they have slots, all calls sharing a prompt on one server
  (`_Session.pin`): a slot reuses only what its previous prompt shares with the next.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from typing import Any

from faithcheck.backends._chat_template import BUILTIN, ChatTemplate, template_source
from faithcheck.backends._openai_http import MALFORMED, _Session
from faithcheck.backends._openai_server import LLAMA_CPP, ServerInfo, detect
from faithcheck.errors import BadInput
from faithcheck.records import GenerationRequest

_log = logging.getLogger("faithcheck.backends.openai")
TEMPLATE_CHOICES = f"none, auto, {', '.join(BUILTIN)} or a path to a jinja file"


class MissingCapability(BadInput):
    """The server lacks something the run needs (prefill, log-probabilities); the message names it."""


class Prompting:
    """The endpoint ("completions": plain text, "template": /completions with the turns rendered
    here, "chat": /chat/completions), the chat template, and what the server is."""

    def __init__(self, model: str, urls: tuple[str, ...], config: Any):  # config: OpenAIConfig
        self.model, self.urls, self.config = model, urls, config
        self.endpoint: str | None = {"auto": None, "chat": "chat"}.get(
            config.endpoint, "completions" if config.chat_template == "none" else "template")
        self.template: ChatTemplate | None = None
        if config.chat_template not in ("none", "auto"):
            self.template = ChatTemplate(template_source(config.chat_template), f"openai:{model}")
        self.server: ServerInfo | None = None  # what answers at the first URL
        self.chat_prefill: bool | None = None

    @property
    def ordered(self) -> bool:
        """Requests go in prefix order, as many at once as the server has slots."""
        return self.config.prompt_cache == "auto" and self.server is not None and self.server.keeps_prefix

    @property
    def per_server(self) -> int:
        return min(self.config.concurrency, self.server.slots or 1) if self.server else self.config.concurrency

    async def prepare(self, s: _Session) -> str:
        """Before a batch's first call: what server answers (once), its slots, the endpoint."""
        if self.server is None:
            wanted = self.config.prompt_cache == "auto" or self.config.chat_template == "auto"
            self.server = await detect(s, self.urls[0]) if wanted else ServerInfo()
            if self.ordered:
                _log.info("openai:%s: a %s server at %s: requests in prefix order, %d at a time per server%s",
                          self.model, self.server.kind, self.urls[0], self.per_server,
                          ", cache_prompt on" if self.server.kind == LLAMA_CPP else "")
        if self.ordered:
            s.pin(self.per_server)
        return await self.resolve(s)

    async def resolve(self, s: _Session) -> str:
        if self.endpoint is None:
            if self.config.chat_template == "none":
                endpoint = "completions" if await self._has_completions(s) else "chat"
            elif await self.probe_chat_prefill(s):
                endpoint = "chat"
            else:
                endpoint = "template" if await self._has_completions(s) else "chat"
            if endpoint == "template" and self.template is None:
                self.template = self._server_template()
            self.endpoint = endpoint
        elif self.endpoint == "template" and self.template is None:
            self.template = self._server_template()
        return self.endpoint

    async def _has_completions(self, s: _Session) -> bool:
        status, _ = await s.status_of("/completions", {"model": self.model, "prompt": "Hi", "max_tokens": 1,
                                                       "temperature": 0})
        return status < 400

    def _server_template(self) -> ChatTemplate:
        """chat_template=auto: the template the server says it applies (llama.cpp's GET /props)."""
        if self.server is None or not self.server.chat_template:
            raise MissingCapability(
                f"openai:{self.model}: --model-arg chat_template=auto, but the server at {self.urls[0]} does not "
                "say which chat template it applies (llama.cpp's server does, at GET /props; llama-cpp-python's "
                f"does not): name one of {', '.join(BUILTIN)} or a jinja file")
        return ChatTemplate(self.server.chat_template, f"openai:{self.model} (the server's template)")

    async def probe_chat_prefill(self, s: _Session) -> bool:
        """Whether the chat endpoint continues an assistant message (vLLM's `continue_final_message`).

        A server that honours it renders the prefilled turn without closing it, so its prompt is
        shorter than the default rendering; one that ignores the flag renders both the same
        (llama.cpp's C++ server, which continues a final assistant turn unasked, reads as "no":
        chat_template=auto serves it). Servers known to ignore the flag (llama.cpp's) are not asked."""
        if self.chat_prefill is None and self.server is not None and self.server.keeps_prefix:
            self.chat_prefill = False
        if self.chat_prefill is None:
            msgs = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
            base = {"model": self.model, "messages": msgs, "max_tokens": 1, "temperature": 0}
            s1, open_turn = await s.status_of("/chat/completions", {**base, "continue_final_message": True,
                                                                    "add_generation_prompt": False})
            s2, closed_turn = await s.status_of("/chat/completions", base)
            try:
                self.chat_prefill = s1 < 400 and s2 < 400 and (
                    open_turn["usage"]["prompt_tokens"] < closed_turn["usage"]["prompt_tokens"])
            except MALFORMED:
                self.chat_prefill = False
        return self.chat_prefill

    async def require_chat_prefill(self, s: _Session) -> None:
        if not await self.probe_chat_prefill(s):
            raise MissingCapability(
                f"openai:{self.model}: the chat endpoint at {self.urls[0]} does not continue a prefilled assistant "
                "turn (continue_final_message, as vLLM does), which an edited CoT needs. Either serve the model where "
                f"it does, or add --model-arg chat_template=NAME ({TEMPLATE_CHOICES}; auto: the server's own, from "
                "llama.cpp's GET /props) to render the turns here and send them to /completions "
                "(endpoint=completions without a template sends plain text, no chat format)")

    def body(self, endpoint: str, req: GenerationRequest, prefill: str, max_tokens: int) -> dict:
        body: dict[str, Any] = {"model": self.model, "max_tokens": max(1, max_tokens), "temperature": req.temperature}
        if req.temperature > 0:
            body["seed"] = req.seed
        stop = list(req.stop)
        if self.ordered and self.server.kind == LLAMA_CPP:  # type: ignore[union-attr]
            body["cache_prompt"] = True  # the C++ server only: others may refuse a field they do not know
        if endpoint == "template":
            assert self.template is not None  # resolve() compiled it
            body["prompt"] = self.template.render(replace(req, prefill=prefill),
                                                  eos_token=self.server.eos_token if self.server else "")
            stop += [m for m in self.template.end_of_turn if m not in stop]
        elif endpoint == "completions":  # earlier turns as plain text (a completions server has no turns)
            body["prompt"] = "".join(content + "\n\n" for _, content in req.context) + req.prompt + prefill
        else:
            body["messages"] = [{"role": role, "content": content} for role, content in req.context]
            body["messages"].append({"role": "user", "content": req.prompt})
            if prefill:
                body["messages"].append({"role": "assistant", "content": prefill})
                body.update(continue_final_message=True, add_generation_prompt=False)
        if stop:
            body["stop"] = stop
        return body


def read_order(body: dict) -> str:
    """What the server reads first to last, for sorting shared prefixes next to each other."""
    return body["prompt"] if "prompt" in body else json.dumps(body["messages"])
