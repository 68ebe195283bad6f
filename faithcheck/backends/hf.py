"""`hf:PATH` — a causal LM run in-process with Hugging Face transformers (a directory or a `.gguf`).

torch and transformers are imported only when a backend is built, so listing backends
stays cheap. Weights load from safetensors or GGUF only: pickled checkpoints can run code.
"""

from __future__ import annotations

import hashlib
import inspect
import math
import os
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from faithcheck.backends import backends
from faithcheck.backends.base import Backend, ScoreRequest, parse_model_args
from faithcheck.backends.hf_tree import TreeRunner
from faithcheck.errors import BadInput, MissingExtra
from faithcheck.records import Completion, GenerationRequest

# Prompt tokens decoded together with the new ones to find where the new text starts.
# A few are enough: only the join between prompt and continuation matters.
_DECODE_WINDOW = 8
# End-of-turn markers of common chat formats: generation stops there when a chat template is used.
_END_OF_TURN = ("<end_of_turn>", "<|im_end|>", "<|eot_id|>", "<|end|>")
_CHOICES = {"dtype": ("auto", "float32", "bfloat16", "float16"), "chat": ("auto", "on", "off"), "bos": ("auto", "on", "off"),
            "prefix_sharing": ("auto", "on", "off")}
# Largest relative gap between packed and plain logits that the load-time check accepts.
_TREE_TOLERANCE = 1e-3


@dataclass(frozen=True)
class HFConfig:
    """`--model-arg` options of the hf and organism backends.

    dtype "auto" keeps the checkpoint's (GGUF is dequantised to float32); threads 0 leaves
    torch's default; chat "auto" applies the tokenizer's chat template when it has one;
    bos "auto" prepends BOS when the tokenizer does or the model has its own BOS token.
    prefix_sharing "auto" computes each shared prefix of a batch once (packed tree passes,
    verified against plain passes when the model loads) and falls back to plain batches
    where the model does not support it; "on" makes that fallback an error; pack_tokens
    caps the tokens of one packed pass (0: auto)."""

    dtype: str = "auto"
    threads: int = 0
    batch_size: int = 0
    trust_remote_code: bool = False
    chat: str = "auto"
    bos: str = "auto"
    device: str = "cpu"
    prefix_sharing: str = "auto"
    pack_tokens: int = 0

    def __post_init__(self) -> None:
        for key, allowed in _CHOICES.items():
            if getattr(self, key) not in allowed:
                raise BadInput(f"--model-arg {key}={getattr(self, key)}: expected one of {', '.join(allowed)}")
        if self.batch_size < 0:
            raise BadInput(f"--model-arg batch_size={self.batch_size}: expected 0 (auto) or an integer >= 1")
        if self.pack_tokens < 0:
            raise BadInput(f"--model-arg pack_tokens={self.pack_tokens}: expected 0 (auto) or an integer >= 1")
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
            if self.done_at[i] is None and self.backend._hit_stop(row, input_ids[i, self.width:].tolist(), self.texts[i], self.stop):
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
        self.counters: Counter[str] = Counter()
        self._pieces: dict[int, str] = {}
        self.pack_tokens = config.pack_tokens or 512
        self._tree = self._tree_runner()
        # wide chunks let the prefix tree span many items; each chunk is still committed as it returns
        self.chunk_size = 16 * self.batch_size if self._tree is not None else 4 * self.batch_size

    def _tree_runner(self) -> TreeRunner | None:
        """The prefix-tree runner when the model supports it and matches plain passes on load."""
        from faithcheck.backends.hf_tree import unsupported_reason  # looked up at call time: tests replace it

        if self.config.prefix_sharing == "off":
            return None
        why = unsupported_reason(self.model)
        if why is None:
            runner = TreeRunner(self)
            try:
                gap = self._tree_gap(runner)
                why = None if gap <= _TREE_TOLERANCE else f"packed logits differ from plain ones by {gap:.2g} (relative)"
            except Exception as e:  # noqa: BLE001 - any failure means: use plain batches
                why = f"{type(e).__name__}: {e}"
            if why is None:
                return runner
        if self.config.prefix_sharing == "on":
            raise BadInput(f"model {self.name!r}: --model-arg prefix_sharing=on, but {why}")
        warnings.warn(f"model {self.name!r}: prefix sharing is off ({why}); using plain batches", stacklevel=2)
        return None

    def _tree_gap(self, runner: TreeRunner) -> float:
        """Largest relative difference of next-token logits, packed vs plain, on a small tree
        whose rows share prefixes, end inside one another and differ in length."""
        ids = self.encode("The answer is 12 because 5 and 7 make 12, so the answer")
        rows = [ids, ids[:-2], ids[: len(ids) // 2] + ids[-3:], ids[:3]]
        packed, plain = self.next_token_logits(rows, runner), self.next_token_logits(rows, None)
        return max(float((a - b).abs().max() / (b.abs().max() + 1e-6)) for a, b in zip(packed, plain))

    def next_token_logits(self, rows: list[list[int]], runner: TreeRunner | None) -> list[Any]:
        """Logits for the token after each row: through the prefix tree (`runner`) or, with
        None, one plain left-padded pass. Used to check the tree against plain passes."""
        import torch

        out: list[Any] = [None] * len(rows)
        with torch.inference_mode():
            if runner is None:
                logits = self.model(**self._left_pad(rows)).logits[:, -1].float()
                return list(logits)

            def step(reqs: list[int], cache: Any) -> None:
                inputs = self._left_pad([rows[r] for r in reqs])
                width = inputs["input_ids"].shape[1]
                kwargs = {**inputs, "past_key_values": cache} if cache is not None else inputs
                if cache is not None:
                    kwargs["input_ids"] = inputs["input_ids"][:, width - 1:]
                    if "position_ids" in kwargs:
                        kwargs["position_ids"] = inputs["position_ids"][:, width - 1:]
                logits = self.model(**kwargs).logits[:, -1].float()
                for r, row_logits in zip(reqs, logits):
                    out[r] = row_logits

            runner.run(rows, self.pack_tokens, self.batch_size, step)
        return out

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

    def _hit_stop(self, row: list[int], new: list[int], text: str, stops: tuple[str, ...]) -> bool:
        """Whether the text of `new` (tokens after `row`) contains a stop string, given that it
        did not before the last token."""
        if not stops or not new or not self._could_stop(new[-1], stops):
            return False
        written = self._continuation(row, self._visible(new)[0], text)
        return any(s in written for s in stops)

    def _could_stop(self, token: int, stops: tuple[str, ...]) -> bool:
        """False only when `token` cannot complete any stop string: its text lacks every stop's
        last character. Decoding a whole row at every step is what a stop check costs, so
        this filter is checked first; tokens whose text alone is unreliable (empty, partial
        UTF-8, a stop ending in a space that the next token may carry) always pass."""
        piece = self._pieces.get(token)
        if piece is None:
            piece = self._pieces[token] = self._decode([token])
        return not piece or "\ufffd" in piece or any(not s or s[-1] == " " or s[-1] in piece for s in stops)

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
            self.counters["naive_tokens"] += sum(len(rows[i]) for i in idxs)
            if self._tree is not None and key[1] != "sampled" and self._generate_tree(requests, texts, rows, idxs, key[0], results):
                continue
            idxs.sort(key=lambda i: -len(rows[i]))
            size = self.batch_size
            for chunk in (idxs[k:k + size] for k in range(0, len(idxs), size)):
                for i, c in zip(chunk, self._generate_safely(requests, texts, rows, chunk, key[0])):
                    results[i] = c
        assert all(r is not None for r in results)
        for r in results:
            self.counters["naive_tokens"] += r.n_generated_tokens  # type: ignore[union-attr]
        return results  # type: ignore[return-value]

    def _generate_tree(self, requests: list[GenerationRequest], texts: list[str], rows: list[list[int]],
                       idxs: list[int], budget: int, results: list[Completion | None]) -> bool:
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

        try:
            self._tree.run([rows[i] for i in idxs], self.pack_tokens, self.batch_size, decode)  # type: ignore[union-attr]
            return True
        except Exception as e:  # noqa: BLE001 - a failed tree falls back to plain batches
            self.counters["tree_fallbacks"] += 1
            warnings.warn(f"model {self.name!r}: prefix-tree batch failed ({type(e).__name__}: {e}); using plain batches", stacklevel=2)
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
        kept, end = self._visible(new)
        hit_eos = end < len(new)
        completion = self._continuation(row, kept, text)
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

        inputs = self._left_pad(rows)
        mask = inputs["attention_mask"]
        positions = mask.sum(-1, keepdim=True) - 1  # each row's last prompt token
        step_ids = inputs["input_ids"][:, -1:]
        live = list(range(len(rows)))
        new: list[list[int]] = [[] for _ in rows]
        stops = reqs[0].stop
        with torch.inference_mode():
            for _ in range(budget):
                kwargs = {"input_ids": step_ids, "attention_mask": mask, "past_key_values": cache, "use_cache": True}
                if self._takes_positions:
                    kwargs["position_ids"] = positions
                if self._takes_logits_to_keep:
                    kwargs["logits_to_keep"] = 1
                logits = self.model(**kwargs).logits[:, -1]
                self.counters["tokens_computed"] += len(live)
                chosen = logits.argmax(-1).tolist()
                keep = []
                for b, (i, tok) in enumerate(zip(live, chosen)):
                    new[i].append(tok)
                    if not (tok in self.eos_ids or len(new[i]) >= budget or self._hit_stop(rows[i], new[i], texts[i], stops)):
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
        self.counters["tokens_computed"] += inputs["input_ids"].numel()
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
