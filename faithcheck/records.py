"""Frozen records that flow between stages: items -> traces -> variants -> requests -> outcomes.

Each stage returns new records and never mutates its inputs. Free-form data lives only
under `metadata` (or `params`/`checks`, which are written to the run tables as JSON).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class TaskItem:
    """One question of a task, with its gold answer (already normalised by the task)."""

    id: str
    question: str
    answer: str
    choices: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True)
class GenerationRequest:
    """What the engine asks a backend for. `prompt` is the user turn; `prefill` is text the
    assistant turn starts with (the CoT so far); `context` the turns before them. Plain-text
    backends concatenate them."""

    prompt: str
    prefill: str = ""
    max_new_tokens: int = 256
    stop: tuple[str, ...] = ()
    temperature: float = 0.0
    seed: int = 0
    # earlier chat turns as (role, content): a system prompt, few-shot exemplars as turns
    context: tuple[tuple[str, str], ...] = ()

    def key(self) -> str:
        """Hash of what changes the output: a cache key (the model is keyed separately)."""
        fields = asdict(self)
        if self.temperature == 0.0:
            fields.pop("seed")  # greedy decoding does not depend on the seed
        fields["stop"] = list(self.stop)
        if not self.context:
            fields.pop("context")  # requests without turns keep the keys they always had
        else:
            fields["context"] = [list(turn) for turn in self.context]
        return hashlib.sha256(canonical_json(fields).encode()).hexdigest()

    @property
    def text(self) -> str:
        return self.prompt + self.prefill


@dataclass(frozen=True)
class Completion:
    text: str
    n_prompt_tokens: int = 0
    n_generated_tokens: int = 0
    finish_reason: str = "stop"
    error: str | None = None


@dataclass(frozen=True)
class Trace:
    """The model's baseline answer to an item with its CoT, split into steps.

    `steps` concatenate back to `cot` exactly, so a probe can cut or replace steps
    without disturbing the text around them."""

    item_id: str
    prompt: str
    cot: str
    steps: tuple[str, ...]
    answer: str | None
    correct: bool
    raw: str
    sample: int = 0
    failed_call: bool = False  # the model call failed: no answer, not a wrong one
    budget_hit: bool = False  # the CoT ran out of its token budget before stating an answer: no answer


Mode = Literal["answer", "continue", "generate"]


@dataclass(frozen=True)
class Variant:
    """One perturbed input of a probe.

    mode "answer": `prefill` is a complete (perturbed) CoT and the answer is forced after it;
    mode "continue": the model continues writing from `prefill` (e.g. after a planted step)
    and then answers; mode "generate": the model writes its own CoT from scratch for a
    changed `prompt` (hints, competence controls)."""

    item_id: str
    probe: str
    params: dict[str, Any]
    prompt: str
    prefill: str
    mode: Mode = "answer"
    valid: bool = True
    checks: dict[str, Any] = field(default_factory=dict)
    target: str | None = None  # an answer the perturbation pushes towards (planted value, hint)
    sample: int = 0

    @property
    def id(self) -> str:
        return f"{self.item_id}/{self.probe}/{canonical_json(self.params)}/{self.sample}"


@dataclass(frozen=True)
class Outcome:
    """One scored variant: one row of outcomes.parquet."""

    item_id: str
    probe: str
    params: dict[str, Any]
    sample: int
    baseline_answer: str | None
    baseline_correct: bool
    answer: str | None
    correct: bool
    same_as_baseline: bool
    valid: bool
    target: str | None
    follows_target: bool | None
    checks: dict[str, Any]
    completion: str
    failed_call: bool = False
