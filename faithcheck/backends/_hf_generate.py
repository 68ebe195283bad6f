"""Generation for the hf backend: requests grouped by settings, batched left-padded (or along
their prefix tree), stop strings honoured per row, results in request order.

A request decodes the same whatever it is batched with: its token budget (capped by the
context) is part of its group, sampled requests run alone under their own seed, and a
failed batch is retried one request at a time so one bad request fails only itself.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from faithcheck.backends._hf_passes import ModelPasses
from faithcheck.backends._hf_text import HFText
from faithcheck.records import Completion, GenerationRequest

if TYPE_CHECKING:
    from faithcheck.backends.hf_tree import TreeRunner


class _StopOnText:
    """Stopping criterion: a row is done once its new text contains a stop string.

    Returns one flag per row, so finished rows stop while the rest of the batch goes on."""

    def __init__(self, text: HFText, rows: list[list[int]], texts: list[str], width: int, stop: tuple[str, ...]):
        self.text, self.rows, self.texts, self.width, self.stop = text, rows, texts, width, stop
        self.done_at: list[int | None] = [None] * len(rows)

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        n_new = input_ids.shape[1] - self.width
        for i, row in enumerate(self.rows):
            if self.done_at[i] is None and self.text.hit_stop(row, input_ids[i, self.width:].tolist(), self.texts[i], self.stop):
                self.done_at[i] = n_new
        return torch.tensor([d is not None for d in self.done_at], dtype=torch.bool, device=input_ids.device)


def failed(req: GenerationRequest, why: str) -> Completion:
    return Completion("", finish_reason="error", error=f"{why} (request {req.prompt[:80]!r})")


class Generator:
    """`generate(requests)`; `tree` is the prefix-tree runner, or None for plain batches."""

    def __init__(self, passes: ModelPasses, text: HFText, name: str, batch_size: int, max_positions: int | None,
                 pack_tokens: int, tree: TreeRunner | None):
        self.passes, self.text, self.name = passes, text, name
        self.batch_size, self.max_positions, self.pack_tokens, self.tree = batch_size, max_positions, pack_tokens, tree
        self.counters = passes.counters

    def generate(self, requests: list[GenerationRequest], emit: Callable | None = None) -> list[Completion]:
        """Group by settings, sort by length, batch, restore request order (lm-eval's Collator).

        A request's token budget is capped by the model's context; the capped budget is part
        of the group key, so a request decodes the same whatever it is batched with. `emit`
        gets each batch's (index, completion) pairs as soon as the batch is decoded, so the
        engine can save them before the next batch runs."""
        results: list[Completion | None] = [None] * len(requests)
        texts = [self.text.render(r.prompt, r.prefill) for r in requests]
        rows = [self.text.encode(t) for t in texts]
        groups: dict[tuple, list[int]] = {}
        for i, req in enumerate(requests):
            room = req.max_new_tokens if self.max_positions is None else self.max_positions - len(rows[i])
            budget = min(req.max_new_tokens, room)
            if req.max_new_tokens <= 0:
                results[i] = Completion("", len(rows[i]), 0, "length")
            elif budget <= 0:
                results[i] = failed(req, f"prompt has {len(rows[i])} tokens; the model's context is {self.max_positions}")
            elif req.temperature > 0:  # sampled rows run alone, so their output depends only on their seed
                groups[(budget, "sampled", i)] = [i]
            else:
                groups.setdefault((budget, req.stop), []).append(i)
        for key, idxs in groups.items():
            self.counters["naive_tokens"] += sum(len(rows[i]) for i in idxs)
            if self.tree is not None and key[1] != "sampled" and self._generate_tree(requests, texts, rows, idxs, key[0],
                                                                                    results, emit):
                continue
            idxs.sort(key=lambda i: -len(rows[i]))
            size = self.batch_size
            for chunk in (idxs[k:k + size] for k in range(0, len(idxs), size)):
                for i, c in zip(chunk, self._generate_safely(requests, texts, rows, chunk, key[0])):
                    results[i] = c
                if emit is not None:
                    emit([(i, results[i]) for i in chunk])
        assert all(r is not None for r in results)
        if emit is not None:  # those answered without a batch (no budget, no room): a repeat is ignored
            grouped = {i for idxs in groups.values() for i in idxs}
            emit([(i, r) for i, r in enumerate(results) if i not in grouped])
        for r in results:
            self.counters["naive_tokens"] += r.n_generated_tokens  # type: ignore[union-attr]
        return results  # type: ignore[return-value]

    def _generate_tree(self, requests: list[GenerationRequest], texts: list[str], rows: list[list[int]],
                       idxs: list[int], budget: int, results: list[Completion | None], emit: Callable | None = None) -> bool:
        """Greedy requests of one group along their prefix tree; False (nothing done) when the
        tree fails, so the caller falls back to plain batches."""

        def decode(reqs: list[int], cache: Any) -> None:
            chunk = [idxs[r] for r in reqs]
            if cache is None:
                done = self._generate_safely(requests, texts, rows, chunk, budget)
            else:
                done = self._decode_greedy([requests[i] for i in chunk], [texts[i] for i in chunk],
                                           [rows[i] for i in chunk], budget, cache)
            for i, c in zip(chunk, done):
                results[i] = c
            if emit is not None:
                emit([(i, results[i]) for i in chunk])

        try:
            self.tree.run([rows[i] for i in idxs], self.pack_tokens, self.batch_size, decode)  # type: ignore[union-attr]
            return True
        except Exception as e:  # noqa: BLE001 - a failed tree falls back to plain batches
            self.counters["tree_fallbacks"] += 1
            warnings.warn(f"model {self.name!r}: prefix-tree batch failed ({type(e).__name__}: {e}); using plain batches", stacklevel=3)
            for i in idxs:
                results[i] = None
            return False

    def _generate_safely(self, requests: list[GenerationRequest], texts: list[str], rows: list[list[int]], chunk: list[int], budget: int) -> list[Completion]:
        """One batch; when it fails, each request alone, so one bad request fails only itself."""
        try:
            return self._generate_batch([requests[i] for i in chunk], [texts[i] for i in chunk], [rows[i] for i in chunk], budget)
        except Exception as e:  # noqa: BLE001 - a failed batch must not end the run
            if len(chunk) > 1:
                return [c for i in chunk for c in self._generate_safely(requests, texts, rows, [i], budget)]
            return [failed(requests[chunk[0]], f"{type(e).__name__}: {e}")]

    def _generate_batch(self, reqs: list[GenerationRequest], texts: list[str], rows: list[list[int]], budget: int) -> list[Completion]:
        """Requests sharing settings: left-padded, positions counted from each row's first token."""
        import torch
        from transformers import GenerationConfig, StoppingCriteriaList

        model, req = self.passes.model, reqs[0]
        inputs = self.passes.left_pad(rows)
        width = inputs["input_ids"].shape[1]
        sampling = {"do_sample": True, "temperature": req.temperature, "top_k": 0, "top_p": 1.0} if req.temperature > 0 else {"do_sample": False}
        gen_config = GenerationConfig(
            max_new_tokens=budget, eos_token_id=self.text.eos_ids or None, pad_token_id=self.text.pad_id, **sampling
        )
        stop = _StopOnText(self.text, rows, texts, width, req.stop) if req.stop else None
        rng_devices = [model.device] if model.device.type == "cuda" else []
        with torch.inference_mode(), torch.random.fork_rng(devices=rng_devices):
            torch.manual_seed(req.seed)
            out = model.generate(**inputs, generation_config=gen_config, stopping_criteria=StoppingCriteriaList([stop] if stop else []))
        steps = out.shape[1] - width  # forward passes over the batch: the prefill, then one per new token but the last
        self.counters["tokens_computed"] += len(rows) * (width + max(0, steps - 1))
        completions = []
        for i, (row, text) in enumerate(zip(rows, texts)):
            new = out[i, width:].tolist()
            if stop and stop.done_at[i] is not None:
                new = new[: stop.done_at[i]]
            completions.append(self._completion(req, row, text, new))
        return completions

    def _completion(self, req: GenerationRequest, row: list[int], text: str, new: list[int]) -> Completion:
        kept, end = self.text.visible(new)
        hit_eos = end < len(new)
        completion = self.text.continuation(row, kept, text)
        cut = min((completion.find(s) for s in req.stop if s in completion), default=-1)
        finish = "stop" if cut >= 0 or hit_eos else "length"
        text_out = completion[:cut] if cut >= 0 else completion
        return Completion(text_out, len(row), end + int(hit_eos), finish)

    def _decode_greedy(self, reqs: list[GenerationRequest], texts: list[str], rows: list[list[int]], budget: int,
                       cache: Any) -> list[Completion]:
        """Greedy decoding from a prefix-tree cache that holds every row but its last token.

        Unlike `generate`, a row leaves the batch (and its cache) as soon as it is done, so
        requests of very different lengths in one batch cost only their own tokens."""
        import torch

        inputs = self.passes.left_pad(rows)
        mask = inputs["attention_mask"]
        positions = mask.sum(-1, keepdim=True) - 1  # each row's last prompt token
        step_ids = inputs["input_ids"][:, -1:]
        live = list(range(len(rows)))
        new: list[list[int]] = [[] for _ in rows]
        stops = reqs[0].stop
        eos = self.text.eos_ids
        with torch.inference_mode():
            for _ in range(budget):
                logits = self.passes.forward(input_ids=step_ids, attention_mask=mask, past_key_values=cache, use_cache=True,
                                             position_ids=positions, logits_to_keep=1).logits[:, -1]
                self.counters["tokens_computed"] += len(live)
                chosen = logits.argmax(-1).tolist()
                keep = []
                for b, (i, tok) in enumerate(zip(live, chosen)):
                    new[i].append(tok)
                    if not (tok in eos or len(new[i]) >= budget or self.text.hit_stop(rows[i], new[i], texts[i], stops)):
                        keep.append(b)
                if not keep:
                    break
                if len(keep) < len(live):
                    index = torch.tensor(keep, device=mask.device)
                    cache.batch_select_indices(index)
                    live = [live[b] for b in keep]
                    mask, positions = mask[index], positions[index]
                    chosen = [chosen[b] for b in keep]
                step_ids = torch.tensor(chosen, device=mask.device)[:, None]
                mask = torch.cat([mask, mask.new_ones(len(live), 1)], dim=1)
                positions = positions + 1
        return [self._completion(r, row, text, out) for r, row, text, out in zip(reqs, rows, texts, new)]
