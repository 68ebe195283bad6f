"""Text and tokens for the hf backend: chat templates, BOS policy, special tokens, and
turning generated tokens back into exactly the text that follows the prompt.

Kept apart from generation and scoring because every one of them depends on it and none
of it touches the model's weights.
"""

from __future__ import annotations

from typing import Any

from faithcheck.errors import BadInput

# Prompt tokens decoded together with the new ones to find where the new text starts.
# A few are enough: only the join between prompt and continuation matters.
_DECODE_WINDOW = 8
# End-of-turn markers of common chat formats: generation stops there when a chat template is used.
_END_OF_TURN = ("<end_of_turn>", "<|im_end|>", "<|eot_id|>", "<|end|>")


def _token_ids(value: Any) -> list[int]:
    return [] if value is None else [int(v) for v in (value if isinstance(value, (list, tuple)) else [value])]


class HFText:
    """The tokenizer as the model was trained to read it (`chat`, `bos_id`, `eos_ids`, `pad_id`)."""

    def __init__(self, tokenizer: Any, model: Any, chat: str, bos: str, name: str):
        self.tokenizer, self.name = tokenizer, name
        model_config = model.config.get_text_config()
        if chat == "on" and not tokenizer.chat_template:
            raise BadInput(f"model {name!r}: --model-arg chat=on but its tokenizer has no chat template")
        self.chat = bool(tokenizer.chat_template) and chat != "off"
        self.bos_id = self._bos_policy(bos, model_config)
        self.eos_ids = sorted(set(_token_ids(model.generation_config.eos_token_id) + _token_ids(tokenizer.eos_token_id)))
        if self.chat:
            self.eos_ids += [i for i in self._special_ids(_END_OF_TURN) if i not in self.eos_ids]
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else getattr(model_config, "pad_token_id", None)
        self.pad_id = int(pad) if pad is not None else (self.eos_ids[0] if self.eos_ids else 0)
        self._pieces: dict[int, str] = {}

    def _bos_policy(self, bos_option: str, model_config: Any) -> int | None:
        """BOS as the model was trained: the tokenizer's own habit, else the model's distinct BOS token."""
        tok, bos = self.tokenizer, self.tokenizer.bos_token_id
        if bos_option == "off" or bos is None:
            if bos_option == "on":
                raise BadInput(f"model {self.name!r}: --model-arg bos=on but its tokenizer has no BOS token")
            return None
        if bos_option == "on":
            return int(bos)
        probe = tok("x").input_ids
        if probe and probe[0] == bos:
            return int(bos)
        return int(bos) if model_config.bos_token_id == bos and bos != tok.eos_token_id else None

    def _special_ids(self, tokens: tuple[str, ...]) -> list[int]:
        unk = self.tokenizer.unk_token_id
        ids = [self.tokenizer.convert_tokens_to_ids(t) for t in tokens]
        return [int(i) for i in ids if i is not None and i != unk]

    # --- text -> tokens ----------------------------------------------------------------

    def render(self, prompt: str, prefill: str) -> str:
        """The exact text the model reads: the chat template's user turn when there is one."""
        if not self.chat:
            return prompt + prefill
        messages = [{"role": "user", "content": prompt}]
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) + prefill

    def encode(self, text: str) -> list[int]:
        ids = list(self.tokenizer(text, add_special_tokens=False).input_ids)
        if self.bos_id is not None and (not ids or ids[0] != self.bos_id):
            ids.insert(0, self.bos_id)
        return ids

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False).input_ids)

    # --- tokens -> text ----------------------------------------------------------------

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def visible(self, new: list[int]) -> tuple[list[int], int]:
        """(the new tokens before the first EOS, less padding; the index of that EOS or len(new)).

        Special tokens such as <think> stay: only EOS and padding are not text."""
        end = next((i for i, t in enumerate(new) if t in self.eos_ids), len(new))
        return [t for t in new[:end] if t != self.pad_id], end

    def continuation(self, prompt_ids: list[int], new_ids: list[int], prompt_text: str) -> str:
        """The text that follows `prompt_text`, so that prompt_text + result reads as the model wrote it.

        Decoding the new tokens alone loses the space a tokenizer puts before a word, so the
        prompt's last tokens are decoded with them and the prompt part is cut off. A tokenizer
        that drops the prompt's trailing whitespace (word-level) would give that whitespace
        back at the start of the continuation: it is removed once."""
        head_ids = prompt_ids[-_DECODE_WINDOW:]
        head, full = self.decode(head_ids), self.decode(head_ids + new_ids)
        text = full[len(head):] if full.startswith(head) else self.decode(new_ids)
        trailing = prompt_text[len(prompt_text.rstrip()):]
        kept = max(j for j in range(len(trailing) + 1) if head.endswith(trailing[:j]))
        lost = trailing[kept:]
        return text[len(lost):] if lost and text.startswith(lost) else text

    def hit_stop(self, row: list[int], new: list[int], text: str, stops: tuple[str, ...]) -> bool:
        """Whether the text of `new` (tokens after `row`) contains a stop string, given that it
        did not before the last token."""
        if not stops or not new or not self._could_stop(new[-1], stops):
            return False
        written = self.continuation(row, self.visible(new)[0], text)
        return any(s in written for s in stops)

    def _could_stop(self, token: int, stops: tuple[str, ...]) -> bool:
        """False only when `token` cannot complete any stop string: its text lacks every stop's
        last character. Decoding a whole row at every step is what a stop check costs, so
        this filter is checked first; tokens whose text alone is unreliable (empty, partial
        UTF-8, a stop ending in a space that the next token may carry) always pass."""
        piece = self._pieces.get(token)
        if piece is None:
            piece = self._pieces[token] = self.decode([token])
        return not piece or "\ufffd" in piece or any(not s or s[-1] == " " or s[-1] in piece for s in stops)
