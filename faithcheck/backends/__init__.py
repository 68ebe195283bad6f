"""Backend registry and model strings: `hf:PATH`, `vllm:ID`, `openai:MODEL@URL`, `organism:NAME`."""

from __future__ import annotations

from faithcheck.backends.base import Backend, ScoreRequest, parse_model_args
from faithcheck.errors import BadInput
from faithcheck.registry import Registry, UnknownNameError

backends = Registry("backend", "faithcheck.backends", ("hf", "organism", "openai", "vllm"))


def load_backend(model: str, model_args: list[str] | None = None) -> Backend:
    """Instantiate the backend a model string names (its heavy library is imported here)."""
    scheme, sep, target = model.partition(":")
    if not sep or not target:
        raise BadInput(f"model {model!r}: expected SCHEME:TARGET with scheme one of {', '.join(backends.names())}")
    try:
        entry = backends.get(scheme)
    except UnknownNameError as e:
        raise BadInput(f"model {model!r}: {e}") from None
    return entry.factory(target, model_args or [])


__all__ = ["Backend", "ScoreRequest", "backends", "load_backend", "parse_model_args"]
