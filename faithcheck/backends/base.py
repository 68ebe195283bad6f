"""The backend interface: batches of requests in, results out in the same order.

A backend only translates requests into its library's calls and back; the engine owns
caching, batching order, retries and progress. Options come as `key=value` strings
validated against a frozen config dataclass: an unknown key is an error.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from faithcheck.errors import BadInput
from faithcheck.records import Completion, GenerationRequest


@dataclass(frozen=True)
class ScoreRequest:
    """Log-probability of `continuation` given `prompt` + `prefill`."""

    prompt: str
    prefill: str
    continuation: str


class Backend(ABC):
    name: str = ""
    fingerprint: str = ""
    # requests per engine chunk: each chunk is committed to the cache as it returns
    chunk_size: int = 64

    @abstractmethod
    def generate(self, requests: list[GenerationRequest]) -> list[Completion]:
        """Results in request order. A request that fails gets a Completion with `error` set."""

    def loglikelihood(self, requests: list[ScoreRequest]) -> list[float]:
        raise NotImplementedError(f"backend {self.name!r} does not score continuations")

    def count_tokens(self, text: str) -> int:
        """Token count of `text` (an estimate where the backend has no tokenizer)."""
        return max(1, len(text) // 4)

    def close(self) -> None:
        pass


def _coerce(value: str, typ: Any, key: str, flag: str) -> Any:
    typ = typ if isinstance(typ, type) else {"int": int, "float": float, "bool": bool, "str": str}.get(
        str(typ).replace(" | None", "").strip(), str
    )
    try:
        if typ is bool:
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        return typ(value)
    except ValueError:
        raise BadInput(f"{flag} {key}={value}: expected {typ.__name__}") from None


def parse_model_args(config_cls: type, args: dict[str, str] | list[str] | None, flag: str = "--model-arg") -> Any:
    """Build `config_cls` from `key=value` strings; unknown keys and bad values name the flag."""
    if not args:
        return config_cls()
    pairs: dict[str, str] = {}
    for item in args if isinstance(args, list) else [f"{k}={v}" for k, v in args.items()]:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BadInput(f"{flag} {item!r}: expected key=value")
        pairs[key.strip()] = value.strip()
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(pairs) - set(fields))
    if unknown:
        raise BadInput(f"{flag}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(fields))}")
    return config_cls(**{k: _coerce(v, fields[k].type, k, flag) for k, v in pairs.items()})
