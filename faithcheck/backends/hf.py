"""`hf:PATH` — a causal LM run in-process with Hugging Face transformers (a directory or a `.gguf`).

torch and transformers are imported only when a backend is built, so listing backends
stays cheap. Weights load from safetensors or GGUF only: pickled checkpoints can run code.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from faithcheck.backends import _gguf_cache, backends
from faithcheck.backends._hf_generate import Generator
from faithcheck.backends._hf_passes import ModelPasses
from faithcheck.backends._hf_score import Scorer
from faithcheck.backends._hf_text import HFText
from faithcheck.backends.base import HARMLESS, Backend, ScoreRequest, parse_model_args
from faithcheck.backends.hf_tree import TreeRunner
from faithcheck.errors import BadInput, MissingExtra
from faithcheck.records import Completion, GenerationRequest

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
    threads: int = field(default=0, metadata=HARMLESS)
    batch_size: int = field(default=0, metadata=HARMLESS)  # a request decodes the same in any batch
    trust_remote_code: bool = False
    chat: str = "auto"
    bos: str = "auto"
    device: str = "cpu"
    prefix_sharing: str = "auto"  # packed passes agree with plain ones to float tolerance only
    pack_tokens: int = field(default=0, metadata=HARMLESS)

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
    if path.is_dir() and not (path / "config.json").is_file():
        raise BadInput(f"model 'hf:{target}': {path} is a directory without config.json, not a transformers "
                       "model directory (give the directory holding config.json and the weights, or a .gguf file)")
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
        dequantized = _gguf_cache.dequantized_dir(weights_fingerprint(path))
        if _gguf_cache.ready(dequantized):  # de-quantised once already: read the safetensors copy
            source = str(dequantized)
            del kwargs["gguf_file"]
    try:
        with _gguf_parsed_once() if "gguf_file" in kwargs else nullcontext():
            tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
            model_kwargs = kwargs if "gguf_file" in kwargs else {**kwargs, "use_safetensors": True}
            model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **model_kwargs)
    except (OSError, ValueError, KeyError) as e:
        why = f"{e} (faithcheck loads safetensors or GGUF weights only, never pickles)"
        raise BadInput(f"model 'hf:{target}': transformers cannot load it: {why}") from None
    if "gguf_file" in kwargs and config.dtype in ("auto", "float32"):  # the copy holds float32 weights only
        _gguf_cache.save(model, tokenizer, dequantized)
    model.to(config.device).eval()
    if path.exists():
        fingerprint = f"hf:{path.resolve()}:{weights_fingerprint(path)}"
    else:
        fingerprint = f"hf:{target}:{getattr(model.config, '_commit_hash', None) or 'unknown'}"
    return model, tokenizer, fingerprint


class HFBackend(Backend):
    """A transformers causal LM: batched left-padded generation and continuation scoring.

    A facade over its parts, one concern each: `text` (templates, BOS/EOS, tokens <-> text),
    `passes` (forward passes, the prefix-tree runner's interface), `generator` and `scorer`."""

    def __init__(self, target: str, config: HFConfig, name: str | None = None):
        import torch
        from transformers import GenerationConfig

        if config.threads:
            torch.set_num_threads(config.threads)
        self.config = config
        self.name = name or f"hf:{target}"
        self.model, self.tokenizer, self.fingerprint = _load(target, config)
        self.text = HFText(self.tokenizer, self.model, config.chat, config.bos, self.name)
        # batch_size 0: wide batches for tiny models (the organisms), narrow ones for real LMs
        self.batch_size = config.batch_size or (64 if self.model.num_parameters() < 100_000_000 else 8)
        # A request sets only temperature: drop the checkpoint's sampling defaults (top_k, top_p,
        # repetition penalty) so the same request means the same decoding on every backend.
        self.model.generation_config = GenerationConfig(
            bos_token_id=self.text.bos_id, eos_token_id=self.text.eos_ids or None, pad_token_id=self.text.pad_id
        )
        self.counters: Counter[str] = Counter()
        self.passes = ModelPasses(self.model, self.text.pad_id, self.counters)
        self.max_positions = getattr(self.model.config.get_text_config(), "max_position_embeddings", None)
        pack_tokens = config.pack_tokens or 512
        self.scorer = Scorer(self.passes, self.text, self.batch_size, self.max_positions, pack_tokens)
        self.generator = Generator(self.passes, self.text, self.name, self.batch_size, self.max_positions, pack_tokens, None)
        self.generator.tree = self._tree_runner()
        # wide chunks let the prefix tree span many items; each chunk is still committed as it returns
        self.chunk_size = 16 * self.batch_size if self.tree is not None else 4 * self.batch_size

    @property
    def tree(self) -> TreeRunner | None:
        """The prefix-tree runner greedy requests go through; None: plain left-padded batches."""
        return self.generator.tree

    @tree.setter
    def tree(self, runner: TreeRunner | None) -> None:
        self.generator.tree = runner

    @property
    def eos_ids(self) -> list[int]:
        return self.text.eos_ids

    @property
    def bos_id(self) -> int | None:
        return self.text.bos_id

    def _tree_runner(self) -> TreeRunner | None:
        """The prefix-tree runner when the model supports it and matches plain passes on load."""
        from faithcheck.backends.hf_tree import unsupported_reason  # looked up at call time: tests replace it

        if self.config.prefix_sharing == "off":
            return None
        why = unsupported_reason(self.model)
        if why is None:
            runner = TreeRunner(self.passes)
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

    # --- the Backend interface, delegated ----------------------------------------------

    def render(self, prompt: str, prefill: str) -> str:
        return self.text.render(prompt, prefill)

    def encode(self, text: str) -> list[int]:
        return self.text.encode(text)

    def count_tokens(self, text: str) -> int:
        return self.text.count_tokens(text)

    def generate(self, requests: list[GenerationRequest]) -> list[Completion]:
        return self.generator.generate(requests)

    def generate_stream(self, requests: list[GenerationRequest], emit: Any) -> None:
        """Each decoded batch goes to `emit` as it finishes: the engine saves it before the next runs."""
        self.generator.generate(requests, emit)

    def loglikelihood(self, requests: list[ScoreRequest]) -> list[float]:
        return self.scorer.loglikelihood(requests)

    def next_token_logits(self, rows: list[list[int]], runner: TreeRunner | None) -> list[Any]:
        return self.scorer.next_token_logits(rows, runner)


@backends.register("hf", "Hugging Face transformers, in-process: hf:DIR, hf:FILE.gguf or hf:HUB_ID")
def hf_backend(target: str, model_args: list[str]) -> HFBackend:
    return HFBackend(target, parse_model_args(HFConfig, model_args))
