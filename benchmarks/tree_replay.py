"""Replay a finished audit through the llama.cpp tree decoder's scheduling, without the model.

The audit runs again, stage by stage, against a call cache that holds every answer it got
(`--source`, e.g. the `--keep-cache` of `benchmarks/engine.py --qwen-only`): each request
goes through `TreeDecoder.run` exactly as `llamacpp:` sends it, but every decode step
"generates" the recorded answer's tokens instead of running the model, and the engine gets
the recorded completion, so the audit follows the original path call for call. What the
decoder would evaluate is counted exactly: prompt tokens sent through the model, against
the prefix-tree limit (the distinct tokens of every prompt), for a given `parallel` and
`parallel_ctx`. Seconds, not minutes, for a 1,500-call audit, so admission policies can be
compared on a real audit's requests.

Two limits are printed. `ratio` is engine.py's: (evaluated + generated) / (distinct tokens of
every prompt + generated). It counts a CoT's tokens twice when a later prompt holds them (the
forced answer after it), so a decoder that answers in the CoT's own sequence can go under 1.
`sequence_ratio` divides by the distinct tokens of every call's whole sequence (its prompt
followed by its answer), which no prefix-sharing decoder can go under.

    python benchmarks/tree_replay.py --source /work/bench/qwen100b.sqlite --n 100
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import tempfile
import time
from pathlib import Path

from faithcheck.audit.pipeline import AuditConfig, run_audit
from faithcheck.backends._llama_tree import TreeDecoder
from faithcheck.backends.base import FollowUps
from faithcheck.backends.llamacpp import MAX_SEQUENCES, LlamaCppBackend, LlamaCppConfig
from faithcheck.backends.prefix_tree import Trie
from faithcheck.engine.cache import CallCache
from faithcheck.pretrained import qwen_gguf
from faithcheck.records import Completion, GenerationRequest


class _NoLlama:
    """The llama.cpp calls the decoder makes on its cache: nothing to do without a model."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


class ReplayDecoder(TreeDecoder):
    """TreeDecoder's scheduling with each row's next token read from its recorded answer."""

    def __init__(self, n_seq: int, n_ctx: int, n_batch: int, eog: set[int], answers, live_max: int | None = None):
        self.C, self.mem, self.ctx = _NoLlama(), None, None
        self._schedule_state(n_seq, n_ctx, n_batch, eog, live_max)
        self.steps = 0
        self.answers = answers  # row tokens -> recorded answer tokens (ending where the row must stop)
        self.rows: list = []

    def run(self, rows, on_done) -> None:
        self.rows = rows
        super().run(rows, on_done)

    def _step(self, entries, wants):
        self.steps += 1
        out = []
        for _, seq in wants:
            i, got = self.live[seq]
            answer = self.answers[tuple(self.rows[i].tokens)]
            out.append((seq, answer[len(got)] if len(got) < len(answer) else next(iter(self.eog))))
        return out


class ReplayBackend(LlamaCppBackend):
    """`llamacpp:` with a replaying decoder: every completion is the recorded one."""

    def __init__(self, path: Path, recorded: dict[str, Completion], config: LlamaCppConfig):
        super().__init__(str(path), config)
        self.recorded = recorded
        self.answers: dict[tuple[int, ...], list[int]] = {}
        self.missing = 0

    def _tree(self) -> TreeDecoder:
        if self._decoder is None:
            cells = self.config.parallel_ctx or self.config.n_ctx * 4
            n_seq = min(self.config.parallel + 1 + self.config.donor_slots, MAX_SEQUENCES)
            self._decoder = ReplayDecoder(n_seq, cells, self.config.n_batch, self.eog, self.answers, self.config.parallel)
        return self._decoder

    def _tree_decode(self, requests, rows, todo, emit, ahead=None) -> None:
        for i in todo:
            self.answers[tuple(rows[i])] = self._answer_tokens(requests[i])
        super()._tree_decode(requests, rows, todo, emit, ahead)

    def _follow_row(self, req: GenerationRequest):
        row = super()._follow_row(req)
        if row is not None:
            self.answers[tuple(row.tokens)] = self._answer_tokens(req)
        return row

    def _answer_tokens(self, req: GenerationRequest) -> list[int]:
        comp = self.recorded.get(req.key())
        if comp is None:
            self.missing += 1
            return []
        text = comp.text + (req.stop[0] if comp.finish_reason == "stop" and req.stop else "")
        toks = self.llm.tokenize(text.encode(), add_bos=False, special=True)
        return toks[: req.max_new_tokens] if comp.finish_reason == "length" else toks

    def _completion(self, req, row, new, finish) -> Completion:
        self.counters["generated_tokens"] += len(new)
        return self.recorded.get(req.key()) or Completion("", len(row), 0, "error", error="not in the source cache")


def load_recorded(source: Path, model: str) -> dict[str, Completion]:
    """The answers `model` (a cache key: the model's identity) gave, by request key; a cache
    shared with other models (constructions around it ask the same requests) holds theirs too."""
    db = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    out = {}
    for key, completion in db.execute("SELECT key, completion FROM calls WHERE model = ?", [model]):
        c = json.loads(completion)
        out[key] = Completion(c["text"], c["n_prompt_tokens"], c["n_generated_tokens"], c["finish_reason"], c.get("error"))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--source", type=Path, required=True, help="call cache holding the audit's answers")
    ap.add_argument("--model", type=Path, default=None, help="the GGUF the answers came from (default: Qwen)")
    ap.add_argument("--task", default="gsm8k")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--probes", default="", help="the audit's --probes (default: all, as benchmarks/engine.py runs it)")
    ap.add_argument("--donor-slots", type=int, default=LlamaCppConfig.donor_slots,
                    help="sequences beyond `parallel` that only keep donors (--model-arg donor_slots)")
    ap.add_argument("--no-follow-ups", action="store_true",
                    help="forced answers in a later call, as before the decoder took follow-ups (for comparison)")
    ap.add_argument("--parallel", type=int, default=LlamaCppConfig.parallel)
    ap.add_argument("--parallel-ctx", type=int, default=0)
    args = ap.parse_args()
    if not args.source.is_file():
        ap.error(f"--source {args.source}: no such call cache")
    backend = ReplayBackend(args.model or qwen_gguf(), {},
                            LlamaCppConfig(parallel=args.parallel, parallel_ctx=args.parallel_ctx, donor_slots=args.donor_slots))
    backend.recorded = load_recorded(args.source, backend.identity.cache_key)
    if not backend.recorded:
        ap.error(f"--source {args.source}: no call of {backend.name} in it")
    seen: list[list[int]] = []
    stream = backend.generate_stream

    taken: list[GenerationRequest] = []  # follow-ups decoded in their CoT's sequence

    def recording(requests, emit, ahead=None):
        seen.extend(backend.tokens(r) for r in requests)
        if ahead is None:
            stream(requests, emit)
            return

        def answered(req, comp):
            taken.append(req)
            ahead.answered(req, comp)

        stream(requests, emit, ahead=FollowUps(ahead.next, answered))

    if args.no_follow_ups:
        backend.follows_up = False
    backend.generate_stream = recording
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        probes = {"probes": tuple(args.probes.split(","))} if args.probes else {}
        config = AuditConfig(model=f"llamacpp:{backend.path}", task=args.task, n=args.n, seed=args.seed,
                             out=Path(tmp) / "run", progress=False, **probes)
        result = run_audit(config, backend=backend, cache=CallCache(Path(tmp) / "calls.sqlite"))
    seen += [backend.tokens(r) for r in taken]
    limit_prompt = len(Trie(seen))
    whole = len(Trie([list(row) + answer for row, answer in backend.answers.items()]))
    generated = backend.counters["generated_tokens"]
    evaluated = backend.counters["tokens_evaluated"]
    print(json.dumps({
        "source": str(args.source), "task": args.task, "items": args.n, "parallel": args.parallel,
        "calls": len(seen), "answered_ahead": len(taken),
        "missing_from_source": backend.missing, "verdict": result.verdict.label,
        "prompt_tokens": backend.counters["prompt_tokens"], "tokens_evaluated": evaluated,
        "prefix_tree_prompt_tokens": limit_prompt, "generated_tokens": generated,
        "ratio": round((evaluated + generated) / (limit_prompt + generated), 3),
        "prompt_ratio": round(evaluated / limit_prompt, 3),
        "sequence_tree_tokens": whole, "sequence_ratio": round((evaluated + generated) / whole, 3),
        "peak_rows": backend._decoder.peak,
        "decode_steps": backend._decoder.steps, "seconds": round(time.time() - started, 1),
    }, indent=1))
    backend.close()


if __name__ == "__main__":
    main()
