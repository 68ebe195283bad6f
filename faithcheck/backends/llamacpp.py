"""`llamacpp:PATH.gguf` — llama.cpp in process (llama-cpp-python): the fast path for GGUF on a CPU.

The weights stay quantised (no de-quantisation to fp32 as through `hf:`), and requests that
share a prefix reuse it from the KV cache: llama-cpp-python keeps the tokens it last
evaluated and, on the next call, evaluates only what follows their longest common prefix.
So requests are run in order of their token sequences (an item's early-answering cuts,
its planted mistakes and its forced answers sit together). Greedy requests are decoded
`parallel` at a time (`_llama_tree.TreeDecoder`), continuously batched in one KV cache
shared by `parallel` sequences: each request admitted copies the longest prompt prefix any
sequence holds and evaluates only the rest, and every step decodes one token of each live
request (1.7x the tokens per second of one at a time for Qwen 0.5B on 2 cores; figures in
benchmarks/engine.py and the README). Sampled requests (temperature > 0) are decoded one at a time with
llama.cpp's own sampler, seeded per request.

Chat models are prompted through the GGUF's own chat template (`tokenizer.chat_template`,
rendered with a sandboxed jinja2 as transformers does; `_chat_template.py`, shared with
`openai:`): earlier turns (system prompt, few-shot exemplars) from the request's `context`,
the prompt as the last user turn, and the prefill as the start of the assistant turn, left
open so the model continues it.

Threads: ggml's workers spin while they wait for each other. On a machine whose cores are
busy with other work a spinning thread that gets descheduled stalls the others, so more
threads than free cores is much slower, not faster (8x slower measured, see `free_cores`);
`threads` defaults to the cores that are free when the model loads.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from faithcheck.backends import backends
from faithcheck.backends._chat_template import END_OF_TURN, ChatTemplate
from faithcheck.backends._llama_tree import Decoded, Row, TreeDecoder, common_prefix
from faithcheck.backends.base import (
    HARMLESS,
    Backend,
    FollowUps,
    StreamingBackend,
    parse_model_args,
)
from faithcheck.errors import BadInput
from faithcheck.records import Completion, GenerationRequest

_CHOICES = {"chat": ("auto", "on", "off")}


# Sequences beyond `parallel` kept for donors only. A donor costs no compute, only the cells it
# holds (within parallel_ctx, the oldest given up first); replaying a 20-item Qwen GSM8K audit
# (benchmarks/tree_replay.py) evaluated 1.57x its prefix tree's prompt tokens with none, 1.29x
# with 16, 1.08x with 48 and 1.01x with 112.
DONOR_SLOTS = 112
MAX_SEQUENCES = 256  # llama.cpp's LLAMA_MAX_SEQ


@dataclass(frozen=True)
class LlamaCppConfig:
    """`--model-arg` options of the llamacpp backend.

    threads: ggml threads for generation and prompt evaluation, 0: the cores not busy with
    other work when the model loads (at least 1; see the module docstring);
    n_ctx: context length in tokens; n_batch: prompt tokens evaluated per ggml batch;
    chat "auto" applies the GGUF's chat template when it has one; parallel: greedy requests
    decoded at once (1: one at a time through llama.cpp's high-level API), in a KV cache of
    `parallel_ctx` cells shared by the group (0: n_ctx x 4); donor_slots: sequences beyond
    those `parallel` that only keep finished requests' cells for later requests sharing
    their prefix (an item's no-CoT answer, cuts and forced answers come in later calls than
    its CoT), within the same cells (at most 255 - parallel are used)."""

    threads: int = field(default=0, metadata=HARMLESS)
    n_ctx: int = 4096
    n_batch: int = field(default=512, metadata=HARMLESS)
    chat: str = "auto"
    parallel: int = field(default=16, metadata=HARMLESS)
    parallel_ctx: int = field(default=0, metadata=HARMLESS)
    donor_slots: int = field(default=DONOR_SLOTS, metadata=HARMLESS)

    def __post_init__(self) -> None:
        for key, allowed in _CHOICES.items():
            if getattr(self, key) not in allowed:
                raise BadInput(f"--model-arg {key}={getattr(self, key)}: expected one of {', '.join(allowed)}")
        if self.threads < 0:
            raise BadInput(f"--model-arg threads={self.threads}: expected 0 (auto) or more")
        if not 1 <= self.parallel <= 255:
            raise BadInput(f"--model-arg parallel={self.parallel}: expected 1 to 255")
        if self.donor_slots < 0:
            raise BadInput(f"--model-arg donor_slots={self.donor_slots}: expected 0 or more")
        if self.parallel_ctx < 0:
            raise BadInput(f"--model-arg parallel_ctx={self.parallel_ctx}: expected 0 (n_ctx x 4) or more")
        for key in ("n_ctx", "n_batch"):
            if getattr(self, key) < 1:
                raise BadInput(f"--model-arg {key}={getattr(self, key)}: expected an integer >= 1")


def free_cores() -> int:
    """Cores not busy with other work (1-minute load average), at least 1. Measured on a
    2-core machine at load ~8: Qwen2.5-0.5B Q4_K_M generated 14 tokens/s with 1 thread and
    1.7 with 2."""
    cores = os.cpu_count() or 1
    try:
        busy = os.getloadavg()[0]
    except OSError:
        return cores
    return max(1, min(cores, round(cores - busy)))


def _file_fingerprint(path: Path) -> str:
    """sha256 of the GGUF, memoised beside it by (size, mtime) so a 500 MB file is hashed once."""
    st = path.stat()
    memo = Path(os.environ.get("FAITHCHECK_CACHE_DIR") or Path.home() / ".cache" / "faithcheck") / "sha256"
    key = hashlib.sha256(f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:32]
    try:
        return (memo / key).read_text().strip()
    except OSError:
        pass
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    try:
        memo.mkdir(parents=True, exist_ok=True)
        (memo / key).write_text(digest.hexdigest())
    except OSError:
        pass
    return digest.hexdigest()


class LlamaCppBackend(StreamingBackend):
    # one chunk per stage: requests stream back one by one, so a wide chunk costs no lost work
    # on a kill, and each chunk boundary is a tail where fewer than `parallel` rows decode
    chunk_size = 4096
    follows_up = True  # a forced answer is decoded in its CoT's own sequence (see `_tree_decode`)
    takes_turns = True

    def __init__(self, path: str, config: LlamaCppConfig | None = None, name: str | None = None):
        try:
            from llama_cpp import Llama
        except ImportError:
            raise BadInput("the llamacpp backend needs llama-cpp-python: pip install llama-cpp-python") from None
        self.config = config or LlamaCppConfig()
        self.path = Path(path).expanduser()
        if not self.path.is_file():
            raise BadInput(f"model 'llamacpp:{path}': no such GGUF file")
        self.name = name or f"llamacpp:{path}"
        self.fingerprint = f"llamacpp:{self.path.resolve()}:{_file_fingerprint(self.path)}"
        started = time.time()
        self.threads = self.config.threads or free_cores()
        try:
            self.llm = Llama(model_path=str(self.path), n_ctx=self.config.n_ctx, n_batch=self.config.n_batch,
                             n_threads=self.threads, n_threads_batch=self.threads,
                             seed=0, verbose=False)
        except (ValueError, RuntimeError) as e:
            raise BadInput(f"model 'llamacpp:{path}': llama.cpp cannot load it ({e})") from None
        self.load_seconds = time.time() - started
        meta = self.llm.metadata or {}
        self.template = meta.get("tokenizer.chat_template")
        if self.config.chat == "on" and not self.template:
            raise BadInput(f"model 'llamacpp:{path}': --model-arg chat=on but the GGUF has no chat template")
        self.chat = bool(self.template) and self.config.chat != "off"
        self.eog = {self.llm.token_eos()} | self._special_ids(END_OF_TURN if self.chat else ())
        self.counters = {"prompt_tokens": 0, "tokens_evaluated": 0, "generated_tokens": 0}
        self._jinja = None
        self._decoder: TreeDecoder | None = None

    # --- text -> tokens ---------------------------------------------------------------

    def _special_ids(self, tokens: tuple[str, ...]) -> set[int]:
        ids = set()
        for t in tokens:
            got = self.llm.tokenize(t.encode(), add_bos=False, special=True)
            if len(got) == 1:
                ids.add(got[0])
        return ids

    def render(self, req: GenerationRequest) -> str:
        """The exact text the model reads: its chat template around the turns, or plain text."""
        if not self.chat:
            context = "".join(content + "\n\n" for _, content in req.context)
            return context + req.prompt + req.prefill
        if self._jinja is None:
            self._jinja = ChatTemplate(self.template, self.name)
        bos = self.llm.detokenize([self.llm.token_bos()], special=True).decode("utf-8", "replace") \
            if self.llm.token_bos() >= 0 else ""
        eos = self.llm.detokenize([self.llm.token_eos()], special=True).decode("utf-8", "replace")
        return self._jinja.render(req, bos_token=bos, eos_token=eos)

    def tokens(self, req: GenerationRequest) -> list[int]:
        text = self.render(req)
        ids = self.llm.tokenize(text.encode(), add_bos=True, special=True)
        bos = self.llm.token_bos()
        if len(ids) > 1 and ids[0] == bos and ids[1] == bos:  # the template wrote its own BOS
            ids = ids[1:]
        return ids

    def count_tokens(self, text: str) -> int:
        return len(self.llm.tokenize(text.encode(), add_bos=False, special=True))

    # --- generation -------------------------------------------------------------------

    def generate_stream(self, requests: list[GenerationRequest], emit, ahead: FollowUps | None = None) -> None:
        """Each completion is handed to `emit` the moment it is decoded (progress and the
        cache move per request). Greedy requests go `parallel` at a time through the prefix
        tree decoder, in token order; sampled ones one at a time. With `ahead`, a greedy
        request's follow-up (the forced answer after a CoT that stated none) is decoded the
        moment the request finishes, copying its sequence, and handed to `ahead.answered`."""
        rows: list[list[int] | Exception] = []
        for r in requests:
            try:
                rows.append(self.tokens(r))
            except BadInput:
                raise
            except Exception as e:  # noqa: BLE001 - a request that cannot be rendered fails alone
                rows.append(e)
        order = sorted(range(len(requests)), key=lambda i: rows[i] if isinstance(rows[i], list) else [])
        greedy: list[int] = []
        for i in order:
            row = rows[i]
            if isinstance(row, Exception):
                emit([(i, Completion("", finish_reason="error", error=f"cannot render the prompt: {row}"))])
            elif len(row) + requests[i].max_new_tokens > self.config.n_ctx:
                emit([(i, Completion("", len(row), 0, "error", error=(
                    f"prompt of {len(row)} tokens + {requests[i].max_new_tokens} new exceed n_ctx={self.config.n_ctx} "
                    "(raise it with --model-arg n_ctx=N)")))])
            elif requests[i].temperature > 0 or self.config.parallel == 1 or requests[i].max_new_tokens <= 0:
                emit([(i, self._one(requests[i], row))])
            else:
                greedy.append(i)
        if greedy:
            self._tree_decode(requests, rows, greedy, emit, ahead)

    def _tree(self) -> TreeDecoder:
        if self._decoder is None:
            cells = self.config.parallel_ctx or self.config.n_ctx * 4
            n_seq = min(self.config.parallel + 1 + self.config.donor_slots, MAX_SEQUENCES)
            self._decoder = TreeDecoder(self.llm.model, n_seq, cells, self.config.n_batch, self.threads, self.eog,
                                        live_max=self.config.parallel)
        return self._decoder

    def _tree_decode(self, requests, rows, todo: list[int], emit, ahead: FollowUps | None = None) -> None:
        """Greedy requests `todo` (in token order), continuously batched `parallel` at a time;
        with `ahead`, each one's follow-up decoded as soon as it finishes."""
        tree = self._tree()
        batch = [Row(rows[i], requests[i].max_new_tokens, self._stopper(rows[i], requests[i].stop)) for i in todo]
        before, answered = tree.evaluated, set()
        follow: dict[int, GenerationRequest] = {}  # id of a follow-up's Row -> its request

        def done(s: int, got: Decoded) -> Row | None:
            if s >= len(todo):  # a follow-up row the decoder appended: its own may follow it
                req = follow.pop(id(batch[s]))
                comp = self._completion(req, batch[s].tokens, got.tokens, got.finish)
                ahead.answered(req, comp)
            else:
                answered.add(s)
                req = requests[todo[s]]
                comp = self._completion(req, batch[s].tokens, got.tokens, got.finish)
                emit([(todo[s], comp)])
            nxt = ahead.next(req, comp) if ahead is not None else None
            row = self._follow_row(nxt) if nxt is not None and nxt.temperature == 0 and nxt.max_new_tokens > 0 else None
            if row is not None:
                follow[id(row)] = nxt
            return row

        try:
            tree.run(batch, done)
        except Exception as e:  # noqa: BLE001 - a failed decode fails the calls not yet answered, not the run
            tree.reset()
            failed = Completion("", 0, 0, "error", error=f"llama.cpp: {type(e).__name__}: {e}")
            emit([(todo[s], failed) for s in range(len(todo)) if s not in answered])
        finally:
            self.counters["prompt_tokens"] += sum(len(r.tokens) for r in batch)
            self.counters["tokens_evaluated"] += tree.evaluated - before

    def _follow_row(self, req: GenerationRequest) -> Row | None:
        """The decoder's row for a follow-up request, or None where it is left to a later call
        (it cannot be rendered, or does not fit the context)."""
        try:
            tokens = self.tokens(req)
        except Exception:  # noqa: BLE001 - the later call reports it
            return None
        if len(tokens) + req.max_new_tokens > self.config.n_ctx:
            return None
        return Row(tokens, req.max_new_tokens, self._stopper(tokens, req.stop))

    def _stopper(self, row: list[int], stop: tuple[str, ...]):
        if not stop:
            return None
        return lambda new: any(s in self._decode(row, new) for s in stop)

    def _completion(self, req: GenerationRequest, row: list[int], new: list[int], finish: str) -> Completion:
        self.counters["generated_tokens"] += len(new)
        text = self._decode(row, new)
        cut = min((text.find(s) for s in req.stop if s in text), default=-1)
        if cut >= 0:
            text, finish = text[:cut], "stop"
        return Completion(text, len(row), len(new) + int(finish == "stop" and cut < 0), finish)

    def _one(self, req: GenerationRequest, row: list[int]) -> Completion:
        budget = req.max_new_tokens
        llm = self.llm
        reused = common_prefix(llm._input_ids[: llm.n_tokens].tolist(), row)
        self.counters["prompt_tokens"] += len(row)
        self.counters["tokens_evaluated"] += len(row) - min(reused, len(row) - 1)
        if req.temperature > 0:
            llm.set_seed(req.seed)
            sampling = {"temp": req.temperature, "top_k": 0, "top_p": 1.0, "min_p": 0.0}
        else:
            sampling = {"temp": 0.0, "top_k": 1, "top_p": 1.0, "min_p": 0.0}
        new: list[int] = []
        text, finish = "", "length"
        try:
            for tok in llm.generate(row, reset=True, repeat_penalty=1.0, **sampling):
                if tok in self.eog:
                    finish = "stop"
                    break
                new.append(tok)
                if req.stop:
                    text = self._decode(row, new)
                    if any(s in text for s in req.stop):
                        finish = "stop"
                        break
                if len(new) >= budget:
                    break
        except Exception as e:  # noqa: BLE001 - llama.cpp errors (context full, decode failure) fail this call only
            llm.reset()
            return Completion("", len(row), len(new), "error", error=f"llama.cpp: {type(e).__name__}: {e}")
        return self._completion(req, row, new, finish)

    def _decode(self, row: list[int], new: list[int]) -> str:
        """The text of `new` as it reads after the prompt (the prompt's last tokens decoded
        with it, so a tokenizer that drops a word's leading space on its own keeps it)."""
        head = row[-4:]
        full = self.llm.detokenize(head + new, special=True)
        start = self.llm.detokenize(head, special=True)
        raw = full[len(start):] if full.startswith(start) else self.llm.detokenize(new, special=True)
        return raw.decode("utf-8", "ignore")

    def close(self) -> None:
        if getattr(self, "_decoder", None) is not None:
            self._decoder.close()
            self._decoder = None
        llm = getattr(self, "llm", None)
        if llm is not None and hasattr(llm, "close"):
            llm.close()
        self.llm = None


@backends.register("llamacpp", "llama.cpp in process (llama-cpp-python): llamacpp:PATH.gguf, KV-cache prefix reuse")
def llamacpp_backend(target: str, model_args: list[str]) -> Backend:
    config = parse_model_args(LlamaCppConfig, model_args)
    return LlamaCppBackend(target, config)


__all__ = ["LlamaCppBackend", "LlamaCppConfig"]
