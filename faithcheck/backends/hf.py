"""`hf:PATH` — a causal LM run in-process with Hugging Face transformers (a directory or a `.gguf`).

torch and transformers are imported only when a backend is built, so listing backends
stays cheap. Weights load from safetensors or GGUF only: pickled checkpoints can run code.
"""

from __future__ import annotations

import hashlib
import inspect
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from faithcheck.backends import backends
from faithcheck.backends.base import Backend, ScoreRequest, parse_model_args
from faithcheck.errors import BadInput, MissingExtra
from faithcheck.records import Completion, GenerationRequest

# Prompt tokens decoded together with the new ones to find where the new text starts.
# A few are enough: only the join between prompt and continuation matters.
_DECODE_WINDOW = 8
# End-of-turn markers of common chat formats: generation stops there when a chat template is used.
_END_OF_TURN = ("<end_of_turn>", "<|im_end|>", "<|eot_id|>", "<|end|>")
_CHOICES = {"dtype": ("auto", "float32", "bfloat16", "float16"), "chat": ("auto", "on", "off"), "bos": ("auto", "on", "off")}


@dataclass(frozen=True)
class HFConfig:
    """`--model-arg` options of the hf and organism backends.

    dtype "auto" keeps the checkpoint's (GGUF is dequantised to float32); threads 0 leaves
    torch's default; chat "auto" applies the tokenizer's chat template when it has one;
    bos "auto" prepends BOS when the tokenizer does or the model has its own BOS token."""

    dtype: str = "auto"
    threads: int = 0
    batch_size: int = 0
    trust_remote_code: bool = False
    chat: str = "auto"
    bos: str = "auto"
    device: str = "cpu"

    def __post_init__(self) -> None:
        for key, allowed in _CHOICES.items():
            if getattr(self, key) not in allowed:
                raise BadInput(f"--model-arg {key}={getattr(self, key)}: expected one of {', '.join(allowed)}")
        if self.batch_size < 0:
            raise BadInput(f"--model-arg batch_size={self.batch_size}: expected 0 (auto) or an integer >= 1")
        if self.threads < 0:
            raise BadInput(f"--model-arg threads={self.threads}: expected 0 (torch's default) or more")


_HASHES: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """sha256 of a file, computed once per process for a given (path, size, mtime)."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        digest = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        _HASHES[key] = digest.hexdigest()
    return _HASHES[key]


def weights_fingerprint(path: Path) -> str:
    """Hash of the weight file(s) a local checkpoint loads from, so cached results follow the weights."""
    files = [path] if path.is_file() else sorted(path.glob("*.safetensors"))
    if len(files) == 1:
        return file_sha256(files[0])
    joined = "".join(f"{f.name}:{file_sha256(f)}\n" for f in files)
    return hashlib.sha256(joined.encode()).hexdigest()


def _looks_like_path(target: str) -> bool:
    """Hub ids are NAME or ORG/NAME; anything else is a local path, and a missing one is a typo."""
    return target.startswith(("/", ".", "~")) or target.endswith(".gguf") or target.count("/") > 1 or "\\" in target


@contextmanager
def _gguf_parsed_once() -> Iterator[None]:
    """transformers parses a GGUF's metadata three times (tokenizer, config, weights): about
    15 s each for gemma's 262k-token vocabulary. Share one reader per file while loading."""
    import gguf

    original, readers = gguf.GGUFReader, {}

    def shared_reader(path: Any, *args: Any, **kwargs: Any) -> Any:
        key = (os.fspath(path), args, tuple(sorted(kwargs.items())))
        if key not in readers:
            readers[key] = original(path, *args, **kwargs)
        return readers[key]

    gguf.GGUFReader = shared_reader
    try:
        yield
    finally:
        gguf.GGUFReader = original


def _load(target: str, config: HFConfig) -> tuple[Any, Any, str]:
    """(model, tokenizer, fingerprint) for a local directory, a `.gguf` file or a hub id."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(target).expanduser()
    if not path.exists() and _looks_like_path(target):
        raise BadInput(f"model 'hf:{target}': no such file or directory")
    kwargs: dict[str, Any] = {"trust_remote_code": config.trust_remote_code}
    source = str(path) if path.exists() else target
    dtype: Any = "auto" if config.dtype == "auto" else getattr(torch, config.dtype)
    if path.suffix == ".gguf":
        try:
            import accelerate  # noqa: F401  (transformers requires it to load GGUF)
            import gguf  # noqa: F401
        except ImportError as e:
            raise MissingExtra(f"model 'hf:{target}': loading GGUF needs {e.name}: pip install faithcheck[gguf]") from None
        source, kwargs["gguf_file"] = str(path.parent), path.name
        dtype = torch.float32 if config.dtype == "auto" else dtype
    try:
        with _gguf_parsed_once() if "gguf_file" in kwargs else nullcontext():
            tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
            model_kwargs = kwargs if "gguf_file" in kwargs else {**kwargs, "use_safetensors": True}
            model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **model_kwargs)
    except (OSError, ValueError, KeyError) as e:
        why = f"{e} (faithcheck loads safetensors or GGUF weights only, never pickles)"
        raise BadInput(f"model 'hf:{target}': transformers cannot load it: {why}") from None
    model.to(config.device).eval()
    if path.exists():
        fingerprint = f"hf:{path.resolve()}:{weights_fingerprint(path)}"
    else:
        fingerprint = f"hf:{target}:{getattr(model.config, '_commit_hash', None) or 'unknown'}"
    return model, tokenizer, fingerprint


def _token_ids(value: Any) -> list[int]:
    return [] if value is None else [int(v) for v in (value if isinstance(value, (list, tuple)) else [value])]


class _StopOnText:
    """Stopping criterion: a row is done once its new text contains a stop string.

    Returns one flag per row, so finished rows stop while the rest of the batch goes on."""

    def __init__(self, backend: HFBackend, rows: list[list[int]], texts: list[str], width: int, stop: tuple[str, ...]):
        self.backend, self.rows, self.texts, self.width, self.stop = backend, rows, texts, width, stop
        self.done_at: list[int | None] = [None] * len(rows)

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        n_new = input_ids.shape[1] - self.width
        for i, row in enumerate(self.rows):
            if self.done_at[i] is None:
                new = self.backend._visible(input_ids[i, self.width:].tolist())[0]
                text = self.backend._continuation(row, new, self.texts[i])
                if any(s in text for s in self.stop):
                    self.done_at[i] = n_new
        return torch.tensor([d is not None for d in self.done_at], dtype=torch.bool, device=input_ids.device)


class HFBackend(Backend):
    """A transformers causal LM: batched left-padded generation and continuation scoring."""

    def __init__(self, target: str, config: HFConfig, name: str | None = None):
        import torch
        from transformers import GenerationConfig

        if config.threads:
            torch.set_num_threads(config.threads)
        self.config = config
        self.name = name or f"hf:{target}"
        self.model, self.tokenizer, self.fingerprint = _load(target, config)
        tok, model_config = self.tokenizer, self.model.config.get_text_config()
        if config.chat == "on" and not tok.chat_template:
            raise BadInput(f"model {self.name!r}: --model-arg chat=on but its tokenizer has no chat template")
        self.chat = bool(tok.chat_template) and config.chat != "off"
        self.bos_id = self._bos_policy()
        self.eos_ids = sorted(set(_token_ids(self.model.generation_config.eos_token_id) + _token_ids(tok.eos_token_id)))
        if self.chat:
            self.eos_ids += [i for i in self._special_ids(_END_OF_TURN) if i not in self.eos_ids]
        pad = tok.pad_token_id if tok.pad_token_id is not None else getattr(model_config, "pad_token_id", None)
        self.pad_id = int(pad) if pad is not None else (self.eos_ids[0] if self.eos_ids else 0)
        self.max_positions = getattr(model_config, "max_position_embeddings", None)
        # batch_size 0: wide batches for tiny models (the organisms), narrow ones for real LMs
        self.batch_size = config.batch_size or (64 if self.model.num_parameters() < 100_000_000 else 8)
        # A request sets only temperature: drop the checkpoint's sampling defaults (top_k, top_p,
        # repetition penalty) so the same request means the same decoding on every backend.
        self.model.generation_config = GenerationConfig(
            bos_token_id=self.bos_id, eos_token_id=self.eos_ids or None, pad_token_id=self.pad_id
        )
        params = inspect.signature(self.model.forward).parameters
        self._takes_positions = "position_ids" in params
        self._takes_logits_to_keep = "logits_to_keep" in params

    def _bos_policy(self) -> int | None:
        """BOS as the model was trained: the tokenizer's own habit, else the model's distinct BOS token."""
        tok, bos = self.tokenizer, self.tokenizer.bos_token_id
        if self.config.bos == "off" or bos is None:
            if self.config.bos == "on":
                raise BadInput(f"model {self.name!r}: --model-arg bos=on but its tokenizer has no BOS token")
            return None
        if self.config.bos == "on":
            return int(bos)
        probe = tok("x").input_ids
        if probe and probe[0] == bos:
            return int(bos)
        model_bos = self.model.config.get_text_config().bos_token_id
        return int(bos) if model_bos == bos and bos != tok.eos_token_id else None

    def _special_ids(self, tokens: tuple[str, ...]) -> list[int]:
        unk = self.tokenizer.unk_token_id
        ids = [self.tokenizer.convert_tokens_to_ids(t) for t in tokens]
        return [int(i) for i in ids if i is not None and i != unk]

    # --- text <-> tokens ---------------------------------------------------------------

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

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def _visible(self, new: list[int]) -> tuple[list[int], int]:
        """(the new tokens before the first EOS, less padding; the index of that EOS or len(new)).

        Special tokens such as <think> stay: only EOS and padding are not text."""
        end = next((i for i, t in enumerate(new) if t in self.eos_ids), len(new))
        return [t for t in new[:end] if t != self.pad_id], end

    def _continuation(self, prompt_ids: list[int], new_ids: list[int], prompt_text: str) -> str:
        """The text that follows `prompt_text`, so that prompt_text + result reads as the model wrote it.

        Decoding the new tokens alone loses the space a tokenizer puts before a word, so the
        prompt's last tokens are decoded with them and the prompt part is cut off. A tokenizer
        that drops the prompt's trailing whitespace (word-level) would give that whitespace
        back at the start of the continuation: it is removed once."""
        head_ids = prompt_ids[-_DECODE_WINDOW:]
        head, full = self._decode(head_ids), self._decode(head_ids + new_ids)
        text = full[len(head):] if full.startswith(head) else self._decode(new_ids)
        trailing = prompt_text[len(prompt_text.rstrip()):]
        kept = max(j for j in range(len(trailing) + 1) if head.endswith(trailing[:j]))
        lost = trailing[kept:]
        return text[len(lost):] if lost and text.startswith(lost) else text

    # --- generation --------------------------------------------------------------------

    def generate(self, requests: list[GenerationRequest]) -> list[Completion]:
        """Group by settings, sort by length, batch, restore request order (lm-eval's Collator).

        A request's token budget is capped by the model's context; the capped budget is part
        of the group key, so a request decodes the same whatever it is batched with."""
        results: list[Completion | None] = [None] * len(requests)
        texts = [self.render(r.prompt, r.prefill) for r in requests]
        rows = [self.encode(t) for t in texts]
        groups: dict[tuple, list[int]] = {}
        for i, req in enumerate(requests):
            room = req.max_new_tokens if self.max_positions is None else self.max_positions - len(rows[i])
            budget = min(req.max_new_tokens, room)
            if req.max_new_tokens <= 0:
                results[i] = Completion("", len(rows[i]), 0, "length")
            elif budget <= 0:
                results[i] = self._failed(req, f"prompt has {len(rows[i])} tokens; the model's context is {self.max_positions}")
            elif req.temperature > 0:  # sampled rows run alone, so their output depends only on their seed
                groups[(budget, "sampled", i)] = [i]
            else:
                groups.setdefault((budget, req.stop), []).append(i)
        for key, idxs in groups.items():
            idxs.sort(key=lambda i: -len(rows[i]))
            size = self.batch_size
            for chunk in (idxs[k:k + size] for k in range(0, len(idxs), size)):
                for i, c in zip(chunk, self._generate_safely(requests, texts, rows, chunk, key[0])):
                    results[i] = c
        assert all(r is not None for r in results)
        return results  # type: ignore[return-value]

    def _generate_safely(self, requests: list[GenerationRequest], texts: list[str], rows: list[list[int]], chunk: list[int], budget: int) -> list[Completion]:
        """One batch; when it fails, each request alone, so one bad request fails only itself."""
        try:
            return self._generate_batch([requests[i] for i in chunk], [texts[i] for i in chunk], [rows[i] for i in chunk], budget)
        except Exception as e:  # noqa: BLE001 - a failed batch must not end the run
            if len(chunk) > 1:
                return [c for i in chunk for c in self._generate_safely(requests, texts, rows, [i], budget)]
            return [self._failed(requests[chunk[0]], f"{type(e).__name__}: {e}")]

    @staticmethod
    def _failed(req: GenerationRequest, why: str) -> Completion:
        return Completion("", finish_reason="error", error=f"{why} (request {req.prompt[:80]!r})")

    def _generate_batch(self, reqs: list[GenerationRequest], texts: list[str], rows: list[list[int]], budget: int) -> list[Completion]:
        """Requests sharing settings: left-padded, positions counted from each row's first token."""
        import torch
        from transformers import GenerationConfig, StoppingCriteriaList

        req = reqs[0]
        inputs = self._left_pad(rows)
        width = inputs["input_ids"].shape[1]
        sampling = {"do_sample": True, "temperature": req.temperature, "top_k": 0, "top_p": 1.0} if req.temperature > 0 else {"do_sample": False}
        gen_config = GenerationConfig(
            max_new_tokens=budget, eos_token_id=self.eos_ids or None, pad_token_id=self.pad_id, **sampling
        )
        stop = _StopOnText(self, rows, texts, width, req.stop) if req.stop else None
        rng_devices = [self.model.device] if self.model.device.type == "cuda" else []
        with torch.inference_mode(), torch.random.fork_rng(devices=rng_devices):
            torch.manual_seed(req.seed)
            out = self.model.generate(**inputs, generation_config=gen_config, stopping_criteria=StoppingCriteriaList([stop] if stop else []))
        completions = []
        for i, (row, text) in enumerate(zip(rows, texts)):
            new = out[i, width:].tolist()
            if stop and stop.done_at[i] is not None:
                new = new[: stop.done_at[i]]
            kept, end = self._visible(new)
            hit_eos = end < len(new)
            completion = self._continuation(row, kept, text)
            cut = min((completion.find(s) for s in req.stop if s in completion), default=-1)
            finish = "stop" if cut >= 0 or hit_eos else "length"
            text_out = completion[:cut] if cut >= 0 else completion
            completions.append(Completion(text_out, len(row), end + int(hit_eos), finish))
        return completions

    def _left_pad(self, rows: list[list[int]]) -> dict[str, Any]:
        """Model inputs for rows padded on the left, with position ids that skip the padding."""
        import torch

        width = max(map(len, rows))
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, width - len(row):] = torch.tensor(row, dtype=torch.long)
            mask[i, width - len(row):] = 1
        inputs = {"input_ids": ids.to(self.model.device), "attention_mask": mask.to(self.model.device)}
        if self._takes_positions:
            inputs["position_ids"] = (inputs["attention_mask"].cumsum(-1) - 1).clamp(min=0)
        return inputs

    # --- scoring -----------------------------------------------------------------------

    def loglikelihood(self, requests: list[ScoreRequest]) -> list[float]:
        """Sum of log-probabilities of each continuation's tokens (lm-eval style); NaN for a
        request that cannot be scored (longer than the context, or the model failed on it),
        so one bad request does not end the run and its score cannot pass for a real one.

        Context and context + continuation are tokenised separately and the tokens past their
        common prefix are scored, so a token that straddles the join is scored whole."""
        pairs = []
        for r in requests:
            context = self.render(r.prompt, r.prefill)
            ctx, whole = self.encode(context), self.encode(context + r.continuation)
            start = next((k for k, (a, b) in enumerate(zip(ctx, whole)) if a != b), min(len(ctx), len(whole)))
            if start == 0 and whole:  # nothing to condition the first token on
                whole, start = [self.bos_id if self.bos_id is not None else self.pad_id, *whole], 1
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

        inputs = self._left_pad([whole for whole, _ in pairs])
        keep = max(len(w) - s for w, s in pairs) + 1
        if self._takes_logits_to_keep:  # only the continuation's logits: a 262k vocabulary is large
            inputs["logits_to_keep"] = keep
        with torch.inference_mode():
            logprobs = torch.log_softmax(self.model(**inputs).logits[:, -keep:].float(), dim=-1)
        scores = []
        for b, (whole, start) in enumerate(pairs):
            targets = torch.tensor(whole[start:], device=logprobs.device)
            n = len(targets)  # the logit at position p predicts token p + 1; the last one is unused
            scores.append(float(logprobs[b, keep - 1 - n: keep - 1].gather(-1, targets[:, None]).sum()))
        return scores


@backends.register("hf", "Hugging Face transformers, in-process: hf:DIR, hf:FILE.gguf or hf:HUB_ID")
def hf_backend(target: str, model_args: list[str]) -> HFBackend:
    return HFBackend(target, parse_model_args(HFConfig, model_args))
