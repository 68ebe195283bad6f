"""Which OpenAI-compatible server answers, for what it offers beyond the API.

- llama.cpp's C++ server (`llama-server`): GET /props answers with its slots, its chat
  template and its EOS text; /v1/models says `owned_by: llamacpp`. It takes `cache_prompt`
  in a request body: a slot keeps the KV cache of its previous prompt and evaluates only
  what follows their common prefix.
- llama-cpp-python's server (`python -m llama_cpp.server`): its FastAPI schema at
  /openapi.json is titled "llama.cpp Python API". One model computes one request at a time,
  always reusing the longest common prefix with the tokens it evaluated last (and, with
  `--cache True`, a RAM cache of earlier prompts' states).
- anything else (vLLM, hosted APIs): nothing is sent beyond the OpenAI API, since hosted
  APIs answer 400 to a field they do not know.

Both llama.cpp servers reuse only what their slots hold, so requests that share a prefix
must reach them one after another: the backend then sends as many at once as the server
has slots, in prefix order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

LLAMA_CPP, LLAMA_CPP_PYTHON, OTHER = "llama.cpp", "llama-cpp-python", "other"


@dataclass(frozen=True)
class ServerInfo:
    kind: str = OTHER
    slots: int = 0  # requests it computes at once (0: not known)
    chat_template: str | None = None  # the template it applies on /chat/completions, where it says
    eos_token: str = ""

    @property
    def keeps_prefix(self) -> bool:
        """Its slots reuse the previous prompt's KV cache, so the order of requests matters."""
        return self.kind in (LLAMA_CPP, LLAMA_CPP_PYTHON)


def _root(url: str) -> str:
    return url[: -len("/v1")] if url.endswith("/v1") else url


async def detect(session: Any, url: str) -> ServerInfo:  # session: _openai_http._Session
    """At most three GETs, each answered or not: a server that answers none is `other`."""
    props = await session.get_json(_root(url) + "/props")
    if props is not None and ("total_slots" in props or "default_generation_settings" in props):
        slots = props.get("total_slots")
        template, eos = props.get("chat_template"), props.get("eos_token")
        return ServerInfo(LLAMA_CPP, slots if isinstance(slots, int) and slots > 0 else 0,
                          template if isinstance(template, str) and template else None,
                          eos if isinstance(eos, str) else "")
    models = await session.get_json(url + "/models")
    data = models.get("data") if models else None
    if isinstance(data, list) and any(isinstance(m, dict) and m.get("owned_by") == "llamacpp" for m in data):
        return ServerInfo(LLAMA_CPP)
    schema = await session.get_json(_root(url) + "/openapi.json")
    info = schema.get("info") if schema else None
    if isinstance(info, dict) and "llama.cpp Python" in str(info.get("title", "")):
        return ServerInfo(LLAMA_CPP_PYTHON, 1)
    return ServerInfo()
