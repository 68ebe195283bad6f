"""Backend registry and model strings: `hf:PATH`, `llamacpp:PATH.gguf`, `vllm:ID`, `openai:MODEL@URL`, `organism:NAME`,
and the constructed organisms `post_hoc:INNER`, `encoded:INNER`, `mixed:F:INNER` around any of them."""

from __future__ import annotations

from faithcheck.backends.base import Backend, ModelIdentity, ScoreRequest, parse_model_args
from faithcheck.errors import BadInput
from faithcheck.registry import Registry, UnknownNameError

backends = Registry("backend", "faithcheck.backends", ("hf", "llamacpp", "organism", "openai", "vllm", "constructed"))


def load_backend(model: str, model_args: list[str] | tuple[str, ...] | None = None) -> Backend:
    """The one way from a model string and its `--model-arg key=value` options to a backend
    (the CLI, the pytest plugin and the rewriter all come through here); its heavy library
    is imported here."""
    scheme, sep, target = model.partition(":")
    if not sep or not target:
        raise BadInput(f"model {model!r}: expected SCHEME:TARGET with scheme one of {', '.join(backends.names())}")
    try:
        entry = backends.get(scheme)
    except UnknownNameError as e:
        raise BadInput(f"model {model!r}: {e}") from None
    backend = entry.factory(target, list(model_args or []))
    backend.name = model  # the identity's name is the model string as given, whatever the backend
    backend.model_args = tuple(model_args or ())
    return backend


__all__ = ["Backend", "ModelIdentity", "ScoreRequest", "backends", "load_backend", "parse_model_args"]
