"""Scoring for the hf backend: log-likelihoods of continuations (lm-eval style), and the
next-token logits that check the prefix-tree path against plain passes when a model loads.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from faithcheck.backends._hf_passes import ModelPasses
from faithcheck.backends._hf_text import HFText
from faithcheck.backends.base import ScoreRequest

if TYPE_CHECKING:
    from faithcheck.backends.hf_tree import TreeRunner


class Scorer:
    def __init__(self, passes: ModelPasses, text: HFText, batch_size: int, max_positions: int | None, pack_tokens: int):
        self.passes, self.text = passes, text
        self.batch_size, self.max_positions, self.pack_tokens = batch_size, max_positions, pack_tokens

    def loglikelihood(self, requests: list[ScoreRequest]) -> list[float]:
        """Sum of log-probabilities of each continuation's tokens (lm-eval style); NaN for a
        request that cannot be scored (longer than the context, or the model failed on it),
        so one bad request does not end the run and its score cannot pass for a real one.

        Context and context + continuation are tokenised separately and the tokens past their
        common prefix are scored, so a token that straddles the join is scored whole."""
        pairs = []
        for r in requests:
            context = self.text.render(r.prompt, r.prefill)
            ctx, whole = self.text.encode(context), self.text.encode(context + r.continuation)
            start = next((k for k, (a, b) in enumerate(zip(ctx, whole)) if a != b), min(len(ctx), len(whole)))
            if start == 0 and whole:  # nothing to condition the first token on
                whole, start = [self.text.bos_id if self.text.bos_id is not None else self.text.pad_id, *whole], 1
            pairs.append((whole, start))
        scores = [0.0 if len(w) <= s else math.nan for w, s in pairs]
        fits = [i for i, (w, s) in enumerate(pairs) if s < len(w) <= (self.max_positions or len(w))]
        fits.sort(key=lambda i: -len(pairs[i][0]))
        size = self.batch_size
        for chunk in (fits[k:k + size] for k in range(0, len(fits), size)):
            for i, score in zip(chunk, self._score_safely([pairs[i] for i in chunk])):
                scores[i] = score
        return scores

    def _score_safely(self, pairs: list[tuple[list[int], int]]) -> list[float]:
        """One batch; when it fails, each pair alone, so only the one that fails scores NaN."""
        try:
            return self._score_batch(pairs)
        except Exception:  # noqa: BLE001
            return [s for p in pairs for s in self._score_safely([p])] if len(pairs) > 1 else [math.nan]

    def _score_batch(self, pairs: list[tuple[list[int], int]]) -> list[float]:
        import torch

        inputs = self.passes.left_pad([whole for whole, _ in pairs])
        self.passes.counters["tokens_computed"] += inputs["input_ids"].numel()
        keep = max(len(w) - s for w, s in pairs) + 1
        with torch.inference_mode():  # only the continuation's logits: a 262k vocabulary is large
            logits = self.passes.forward(**inputs, logits_to_keep=keep).logits
            logprobs = torch.log_softmax(logits[:, -keep:].float(), dim=-1)
        scores = []
        for b, (whole, start) in enumerate(pairs):
            targets = torch.tensor(whole[start:], device=logprobs.device)
            n = len(targets)  # the logit at position p predicts token p + 1; the last one is unused
            scores.append(float(logprobs[b, keep - 1 - n: keep - 1].gather(-1, targets[:, None]).sum()))
        return scores

    def next_token_logits(self, rows: list[list[int]], runner: TreeRunner | None) -> list[Any]:
        """Logits for the token after each row: through the prefix tree (`runner`) or, with
        None, one plain left-padded pass. Used to check the tree against plain passes."""
        import torch

        out: list[Any] = [None] * len(rows)
        with torch.inference_mode():
            if runner is None:
                return list(self.passes.forward(**self.passes.left_pad(rows)).logits[:, -1].float())

            def step(reqs: list[int], cache: Any) -> None:
                inputs = self.passes.left_pad([rows[r] for r in reqs])
                width = inputs["input_ids"].shape[1]
                kwargs = {**inputs, "past_key_values": cache} if cache is not None else inputs
                if cache is not None:
                    kwargs["input_ids"] = inputs["input_ids"][:, width - 1:]
                    if "position_ids" in kwargs:
                        kwargs["position_ids"] = inputs["position_ids"][:, width - 1:]
                logits = self.passes.forward(**kwargs).logits[:, -1].float()
                for r, row_logits in zip(reqs, logits):
                    out[r] = row_logits

            runner.run(rows, self.pack_tokens, self.batch_size, step)
        return out
