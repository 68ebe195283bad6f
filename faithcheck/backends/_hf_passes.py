"""Forward passes of a loaded transformers model: the one object generation, scoring and the
prefix-tree runner (`hf_tree.TreeRunner`) call the model through.

Models differ in which optional inputs their `forward` takes (`position_ids`,
`logits_to_keep`); callers pass both and this drops what the model does not take, so no
caller asks the model what it supports. Work done is counted in the shared `counters`.
"""

from __future__ import annotations

import inspect
from collections import Counter
from typing import Any

_OPTIONAL = ("position_ids", "logits_to_keep")


class ModelPasses:
    """`model`, `counters` (tokens_computed, packed_passes, tokens_reused, ...), `left_pad(rows)`
    and `forward(**inputs)`: the whole interface `TreeRunner` needs from a backend."""

    def __init__(self, model: Any, pad_id: int, counters: Counter[str]):
        self.model = model
        self.pad_id = pad_id
        self.counters = counters
        params = inspect.signature(model.forward).parameters
        self.takes = frozenset(k for k in _OPTIONAL if k in params)
        # transformers 5 renamed the KV cache `past_key_values` -> `cache` (argument and output)
        # and warns on every call that uses the old name; older releases know only the old one
        self.cache_name = "cache" if "cache" in params else "past_key_values"

    @property
    def device(self) -> Any:
        return self.model.device

    def forward(self, **inputs: Any) -> Any:
        """`model(**inputs)` without the optional inputs the model does not take; a KV cache
        given as `past_key_values` goes in under the name this transformers version uses."""
        if "past_key_values" in inputs:
            inputs[self.cache_name] = inputs.pop("past_key_values")
        return self.model(**{k: v for k, v in inputs.items() if k not in _OPTIONAL or k in self.takes})

    def kv_cache(self, output: Any) -> Any:
        """The KV cache a forward pass returned (`output.cache` or, before transformers 5, `.past_key_values`)."""
        return getattr(output, self.cache_name)

    def left_pad(self, rows: list[list[int]]) -> dict[str, Any]:
        """Model inputs for rows padded on the left, with position ids that skip the padding."""
        import torch

        width = max(map(len, rows))
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, width - len(row):] = torch.tensor(row, dtype=torch.long)
            mask[i, width - len(row):] = 1
        inputs = {"input_ids": ids.to(self.device), "attention_mask": mask.to(self.device)}
        if "position_ids" in self.takes:
            inputs["position_ids"] = (inputs["attention_mask"].cumsum(-1) - 1).clamp(min=0)
        return inputs
