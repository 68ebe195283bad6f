"""The probes' options (`AuditConfig.options`): a frozen, typed config that rejects what it does
not know, so a misspelt `hint_kinds` is an error naming it instead of a silent default.

None means "the probe's own default" (`early_answering.MAX_CUTS`, `mistakes.MAX_POSITIONS`,
every hint kind, the task's own languages), so each default lives beside the code it tunes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from faithcheck.errors import BadInput


@dataclass(frozen=True)
class AuditOptions:
    max_cuts: int | None = None                 # early_answering: cut points per trace (0 and n always kept)
    mistake_positions: int | None = None        # mistakes: positions a wrong step is planted at
    hint_kinds: tuple[str, ...] | None = None   # hints: the cue kinds posed (suggested, metadata, fewshot_pattern)
    languages: tuple[str, ...] | None = None    # translation: target languages (codes or names)

    def __post_init__(self) -> None:
        for key in ("max_cuts", "mistake_positions"):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise BadInput(f"audit option {key}={value!r}: expected an integer >= 1")
        for key in ("hint_kinds", "languages"):
            value = getattr(self, key)
            if value is None:
                continue
            if isinstance(value, str) or not all(isinstance(v, str) and v for v in value) or not value:
                raise BadInput(f"audit option {key}={value!r}: expected a non-empty list of names")
            object.__setattr__(self, key, tuple(value))
        if self.hint_kinds is not None:
            from faithcheck.probes.hints import KINDS

            unknown = [k for k in self.hint_kinds if k not in KINDS]
            if unknown:
                raise BadInput(f"audit option hint_kinds: unknown kind(s) {', '.join(unknown)}; known: {', '.join(KINDS)}")

    @classmethod
    def parse(cls, options: AuditOptions | Mapping[str, Any] | None) -> AuditOptions:
        """From a mapping (the API's `options={...}`); an unknown key is an error naming it."""
        if isinstance(options, cls):
            return options
        options = dict(options or {})
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise BadInput(f"audit option(s) {', '.join(unknown)}: unknown; known: {', '.join(known)}")
        return cls(**options)

    def to_dict(self) -> dict[str, Any]:
        """The options that were set (for the manifest)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items() if v is not None}
