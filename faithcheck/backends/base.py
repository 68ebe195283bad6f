"""The backend interface: batches of requests in, results out in the same order.

A backend only translates requests into its library's calls and back; the engine owns
caching, batching order, retries and progress. Options come as `key=value` strings
validated against a frozen config dataclass: an unknown key is an error.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from faithcheck.errors import BadInput
from faithcheck.records import Completion, GenerationRequest, canonical_json

# Field metadata of a backend config option that cannot change what the model writes
# (threads, batch sizes, timeouts, retries): it stays out of the model's identity and
# cache key. Every other option is assumed to change the output.
HARMLESS = {"changes_output": False}


@dataclass(frozen=True)
class ScoreRequest:
    """Log-probability of `continuation` given `prompt` + `prefill`."""

    prompt: str
    prefill: str
    continuation: str


def output_options(config: Any) -> dict[str, Any]:
    """The options of a backend config that can change the model's output and differ from
    their default (defaults add nothing, so a default run keys as it always did)."""
    if config is None or not dataclasses.is_dataclass(config):
        return {}
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)
            if f.metadata.get("changes_output", True) and getattr(config, f.name) != f.default}


@dataclass(frozen=True)
class ModelIdentity:
    """Who answers: the model string as given, a fingerprint of its weights (or of what the
    server reports), and the options that change its output. The call cache keys on
    `cache_key`; the manifest and the report show `to_dict()`."""

    name: str
    fingerprint: str
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def cache_key(self) -> str:
        if not self.options:
            return self.fingerprint
        return f"{self.fingerprint}|{canonical_json(dict(self.options))}"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "fingerprint": self.fingerprint, "options": dict(self.options)}


@dataclass(frozen=True)
class FollowUps:
    """What a backend that `follows_up` is told about the calls of a batch: `next(request,
    completion)` names the call that will follow an answered one (the forced answer after a
    CoT that stated none), or None; the backend may answer it at once, from what it still
    holds, and hands the result to `answered(request, completion)`. The engine keeps those
    for the later call that asks for them. `next` is asked about the follow-ups too (a forced
    answer cut by its budget is followed by its continuation), so a chain ends where it
    returns None."""

    next: Callable[[GenerationRequest, Completion], GenerationRequest | None]
    answered: Callable[[GenerationRequest, Completion], None]


class Backend(ABC):
    name: str = ""
    fingerprint: str = ""
    config: Any = None  # the backend's frozen options (see `output_options`)
    model_args: tuple[str, ...] = ()  # the `--model-arg` strings `load_backend` built it from
    # requests per engine chunk: each chunk is committed to the cache as it returns
    chunk_size: int = 64

    # True when generate_stream hands over each call as it is answered (a server backend):
    # the engine then saves every answered call before the next one is sent
    streams: bool = False
    # True when generate_stream takes `ahead=FollowUps(...)` and answers follow-up calls in
    # the same pass (llama.cpp: in the sequence of the call they follow, while it is held)
    follows_up: bool = False

    @abstractmethod
    def generate(self, requests: list[GenerationRequest]) -> list[Completion]:
        """Results in request order. A request that fails gets a Completion with `error` set."""

    def generate_stream(self, requests: list[GenerationRequest],
                        emit: Callable[[list[tuple[int, Completion]]], None]) -> None:
        """Hand results to `emit` as (request index, completion) pairs as soon as they exist.
        By default once, when the whole batch is done; server backends emit call by call."""
        emit(list(enumerate(self.generate(requests))))

    def loglikelihood(self, requests: list[ScoreRequest]) -> list[float]:
        raise NotImplementedError(f"backend {self.name!r} does not score continuations")

    def count_tokens(self, text: str) -> int:
        """Token count of `text` (an estimate where the backend has no tokenizer)."""
        return max(1, len(text) // 4)

    @property
    def identity(self) -> ModelIdentity:
        """Name, fingerprint and output-changing options: one identity for cache, manifest and report."""
        return ModelIdentity(self.name, self.fingerprint, tuple(sorted(output_options(self.config).items())))

    def close(self) -> None:
        pass


class StreamingBackend(Backend):
    """A backend that hands each call over the moment it is answered (`generate_stream` is
    its one way to generate); `generate` collects the stream in request order."""

    streams = True

    @abstractmethod
    def generate_stream(self, requests: list[GenerationRequest],
                        emit: Callable[[list[tuple[int, Completion]]], None]) -> None: ...

    def generate(self, requests: list[GenerationRequest]) -> list[Completion]:
        """Completions in request order; a request that fails gets a Completion with `error` set."""
        out: list[Completion | None] = [None] * len(requests)

        def keep(pairs: list[tuple[int, Completion]]) -> None:
            for i, c in pairs:
                out[i] = c

        self.generate_stream(requests, keep)
        missing = [i for i, c in enumerate(out) if c is None]
        if missing:
            raise RuntimeError(f"backend {self.name} handed over no result for {len(missing)} of {len(requests)} requests")
        return out  # type: ignore[return-value]


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
