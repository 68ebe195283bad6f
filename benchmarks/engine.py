"""How close the engine gets to the physical limit of an audit, and how much faster than naive.

For each model it runs one full audit (all default probes) twice in this process on the
same weights, each with a fresh call cache: once with prefix sharing (the engine's path)
and once with plain left-padded batches (`prefix_sharing` off, what a naive harness does),
and checks that both give the same answers. It also times the baseline CoT generation
alone, and early answering at K cut points of one CoT: one prefix-tree call against K
separate passes.

    python benchmarks/engine.py                      # organism:faithful (n=100) and gemma-3-270m (n=10)
    python benchmarks/engine.py --skip-gemma --n 200
    python benchmarks/engine.py --qwen-only --qwen-n 100   # Qwen2.5-Coder-0.5B on GSM8K through llamacpp:

A real chat model through `llamacpp:` (Qwen, `--qwen-n` GSM8K items, every default probe,
fresh call cache) is measured differently: llama.cpp has no padding, so the figures are
  tokens_computed     prompt tokens llama.cpp evaluated + tokens it generated
  prefix_tree_tokens  distinct tokens of the prefix tree of every prompt, + tokens generated
  ratio               tokens_computed / prefix_tree_tokens (target <= 1.15)
  audit_tok_s         tokens the audit generated / seconds in model calls
  raw_tok_s           llama.cpp's own generation (`Llama.create_completion`, one request at a
                      time, greedy) on a sample of the audit's own requests that write a CoT
                      or a continuation (budget >= 64 tokens), in the same run: tokens
                      generated / seconds; engine_sample_tok_s: the same sample through
                      faithcheck's engine (fresh cache)
  throughput_ratio    audit_tok_s / raw_tok_s (target >= 0.8)
  audit_seconds       wall time of the whole audit (target <= 30 min at n=100 on 2 cores)
  floor_seconds       the machine's compute-bound time for the audit's tokens, measured right
                      after it (benchmarks/llama_rates.py at `parallel` sequences): prompt
                      tokens evaluated / prompt rate + generated / decode rate;
                      audit_over_floor: audit_seconds / floor_seconds (--no-floor: skip)

Figures, per model:
  tokens_computed     tokens the engine forwarded through the model (padding included)
  prefix_tree_tokens  the limit: distinct tokens of the prefix tree of every prompt of the
                      audit, plus the tokens generated
  ratio               tokens_computed / prefix_tree_tokens (target <= 1.15)
  naive_tokens        sum over requests of prompt + generated tokens (no sharing at all)
  speedup_vs_naive    wall time with plain batches / wall time with prefix sharing
  model_seconds       time spent in model calls (the rest: rewrites and their checks, scoring, report)
  audit_over_baseline full audit wall time / baseline CoT generation wall time (target <= 2);
                      audit_model_over_baseline: the same for model-call time only;
                      generated_over_baseline: tokens the audit generates / tokens the baseline
                      generates (hints and competence controls write whole new CoTs)
  k16_speedup         K=16 cut points: K separate passes / one prefix-tree call (target >= 5);
                      for gemma also on logical_deduction, whose 3-shot prompt is ~800 tokens
The last line printed is one JSON object with all of them and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from faithcheck.backends import load_backend  # noqa: E402
from faithcheck.backends.base import FollowUps  # noqa: E402
from faithcheck.backends.prefix_tree import Trie  # noqa: E402
from faithcheck.engine.cache import CallCache  # noqa: E402
from faithcheck.engine.engine import Engine  # noqa: E402
from faithcheck.audit.pipeline import AuditConfig, baseline, run_audit  # noqa: E402
from faithcheck.records import GenerationRequest  # noqa: E402
from faithcheck.tasks import get_task  # noqa: E402

GEMMA = Path.home() / ".cache" / "faithcheck" / "gemma-3-270m-q4_k_m.gguf"


class Recorder:
    """Wraps a backend's generate to keep every request and count generated tokens (their
    prompts are tokenised afterwards, in `rows`, outside the timed audit)."""

    def __init__(self, backend):
        self.backend, self.requests, self.generated = backend, [], 0
        self._generate = backend.generate

    @property
    def rows(self) -> list[list[int]]:
        b = self.backend
        return [b.encode(b.render(r.prompt, r.prefill)) for r in self.requests]

    def __enter__(self):
        def generate(requests):
            out = self._generate(requests)
            self.requests.extend(requests)
            self.generated += sum(c.n_generated_tokens for c in out)
            return out

        self.backend.generate = generate
        return self

    def __exit__(self, *exc):
        self.backend.generate = self._generate


class StreamRecorder:
    """Keeps every request a streaming backend (llamacpp) is asked for and the tokens it generates."""

    def __init__(self, backend):
        self.backend, self.requests, self.generated = backend, [], 0
        self._stream = backend.generate_stream

    def __enter__(self):
        def generate_stream(requests, emit, ahead=None):
            self.requests.extend(requests)

            def counted(pairs):
                self.generated += sum(c.n_generated_tokens for _, c in pairs)
                emit(pairs)

            if ahead is None:
                self._stream(requests, counted)
                return

            def answered(req, comp):  # a follow-up decoded in its CoT's sequence: one more request
                self.requests.append(req)
                self.generated += comp.n_generated_tokens
                ahead.answered(req, comp)

            self._stream(requests, counted, ahead=FollowUps(ahead.next, answered))

        self.backend.generate_stream = generate_stream
        return self

    def __exit__(self, *exc):
        self.backend.generate_stream = self._stream


def measure_gguf(path: Path, task_name: str, n: int, tmp: Path, sample: int, threads: int = 0, seed: int = 0,
                 keep_cache: Path | None = None, floor: bool = True) -> dict:
    """A full audit of a chat model through llamacpp:, its tokens against the prefix-tree
    limit, and its generation throughput against llama.cpp's own on its own requests."""
    import os
    import random

    model = f"llamacpp:{path}"
    model_args = [f"threads={threads}"] if threads else []
    backend = load_backend(model, model_args)
    load_s = backend.load_seconds
    if keep_cache is not None and keep_cache.exists():
        raise SystemExit(f"--keep-cache {keep_cache}: already exists; the audit must start from an empty cache")
    cache = CallCache(keep_cache or tmp / "qwen.sqlite")
    config = AuditConfig(model=model, task=task_name, n=n, out=tmp / "qwen-run", progress=False,
                         model_args=tuple(model_args))
    load_before = os.getloadavg()[0]
    with StreamRecorder(backend) as rec:
        start = time.perf_counter()
        result = run_audit(config, backend=backend, cache=cache)
        audit_s = time.perf_counter() - start
    load_after = os.getloadavg()[0]
    cache.close()
    counters = dict(backend.counters)
    manifest = json.loads((result.run_dir / "manifest.json").read_text())
    model_s = manifest["engine"]["seconds"]
    rows = [backend.tokens(r) for r in rec.requests]
    limit = len(Trie(rows)) + rec.generated
    computed = counters["tokens_evaluated"] + counters["generated_tokens"]

    # llama.cpp's own generation on a sample of the same requests that write (CoTs, continuations:
    # budgets of 64 tokens and more), one at a time, with its own reuse of the previous prompt
    gen = [i for i, r in enumerate(rec.requests) if r.temperature == 0 and r.max_new_tokens >= 64]
    picked = random.Random(seed).sample(gen, min(sample, len(gen)))
    llm = backend.llm
    llm.reset()
    raw_tokens, raw_s = 0, 0.0
    for i in picked:
        req = rec.requests[i]
        start = time.perf_counter()
        out = llm.create_completion(rows[i], max_tokens=req.max_new_tokens, temperature=0.0, top_k=1,
                                    repeat_penalty=1.0, stop=list(req.stop) or None)
        raw_s += time.perf_counter() - start
        raw_tokens += out["usage"]["completion_tokens"]
    # the same sample through faithcheck's engine, fresh cache
    sample_reqs = [rec.requests[i] for i in picked]
    cache = CallCache(tmp / "qwen-sample.sqlite")
    engine = Engine(backend, cache, progress=False)
    backend._decoder.reset() if backend._decoder is not None else None
    before = backend.counters["generated_tokens"]
    start = time.perf_counter()
    engine.run(sample_reqs)
    sample_s = time.perf_counter() - start
    sample_tokens = backend.counters["generated_tokens"] - before
    cache.close()
    audit_tok_s = rec.generated / model_s
    raw_tok_s = raw_tokens / raw_s
    figures = {
        "model": model, "task": task_name, "items": n, "probes": list(result.config.probes),
        "load_seconds": round(load_s, 1), "threads": backend.threads, "parallel": backend.config.parallel,
        "model_calls": len(rec.requests), "outcomes": len(result.outcomes),
        "prompt_tokens": counters["prompt_tokens"], "tokens_evaluated": counters["tokens_evaluated"],
        "generated_tokens": rec.generated,
        "tokens_computed": computed, "prefix_tree_tokens": limit, "ratio": round(computed / limit, 3),
        "audit_seconds": round(audit_s, 1), "model_seconds": round(model_s, 1),
        "audit_tok_s": round(audit_tok_s, 1),
        "raw_sample_requests": len(picked), "raw_tokens": raw_tokens, "raw_seconds": round(raw_s, 1),
        "raw_tok_s": round(raw_tok_s, 1), "throughput_ratio": round(audit_tok_s / raw_tok_s, 2),
        "engine_sample_tok_s": round(sample_tokens / sample_s, 1),
        "engine_sample_ratio": round(sample_tokens / sample_s / raw_tok_s, 2),
        "load_average_start": round(load_before, 2), "load_average_end": round(load_after, 2),
        "verdict": result.verdict.label, "reason": result.verdict.reason,
        "cot_accuracy": result.summary["accuracy"]["cot"],
    }
    threads_used, parallel = backend.threads, backend.config.parallel
    backend.close()
    if floor:
        from llama_rates import floor_seconds
        from llama_rates import measure as machine_rates

        rates = machine_rates(str(path), threads_used, sequences=(parallel,))
        floor_s = floor_seconds(rates, counters["tokens_evaluated"], rec.generated, parallel)
        figures.update({"machine_prompt_tok_s": rates["prompt_tok_s"],
                        "machine_decode_tok_s": rates["decode_tok_s"][parallel],
                        "floor_seconds": round(floor_s, 1), "audit_over_floor": round(audit_s / floor_s, 3)})
    return figures


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def audit(backend, model: str, task: str, n: int, tmp: Path, tag: str):
    from faithcheck.rewriters import checks

    checks._EMBEDDINGS.clear()  # each audit embeds its rewrites itself: neither run inherits the other's
    cache = CallCache(tmp / f"{tag}.sqlite")
    config = AuditConfig(model=model, task=task, n=n, out=tmp / tag, progress=False)
    backend.counters.clear()
    with Recorder(backend) as rec:
        start = time.perf_counter()
        result = run_audit(config, backend=backend, cache=cache)
        seconds = time.perf_counter() - start
    cache.close()
    return result, seconds, dict(backend.counters), rec


def measure(model: str, task_name: str, n: int, k: int, tmp: Path, model_args: list[str], long_task: str | None = None) -> dict:
    backend = load_backend(model, model_args)
    runner = backend.tree
    if runner is None:
        raise SystemExit(f"{model}: prefix sharing is not available on this model")
    task = get_task(task_name)
    items = list(task.load(n, 0).items)
    audit(backend, model, task_name, 2, tmp, "warmup")  # loads the rewrite checker and report templates once

    # the baseline CoTs alone, with sharing
    cache = CallCache(tmp / f"{model.replace('/', '_')}-baseline.sqlite")
    start = time.perf_counter()
    baseline_engine = Engine(backend, cache, progress=False)
    traces = baseline(baseline_engine, task, items)
    baseline_seconds = time.perf_counter() - start

    shared, shared_s, counters, rec = audit(backend, model, task_name, n, tmp, "shared")
    backend.tree = None
    naive, naive_s, _, _ = audit(backend, model, task_name, n, tmp, "naive")
    backend.tree = runner
    same = (shared.outcomes["answer"].fillna("<none>").tolist() == naive.outcomes["answer"].fillna("<none>").tolist())

    limit = len(Trie(rec.rows)) + rec.generated
    model_s = json.loads((shared.run_dir / "manifest.json").read_text())["engine"]["seconds"]
    naive_model_s = json.loads((naive.run_dir / "manifest.json").read_text())["engine"]["seconds"]
    figures = {
        "model": model, "task": task_name, "items": n, "probes": list(shared.config.probes),
        "model_calls": len(rec.requests), "outcomes": len(shared.outcomes),
        "tokens_computed": counters.get("tokens_computed", 0),
        "prefix_tree_tokens": limit,
        "ratio": round(counters.get("tokens_computed", 0) / limit, 3),
        "naive_tokens": counters.get("naive_tokens", 0),
        "audit_seconds": round(shared_s, 2), "naive_audit_seconds": round(naive_s, 2),
        "speedup_vs_naive": round(naive_s / shared_s, 2),
        "model_seconds": round(model_s, 2),
        "naive_model_seconds": round(naive_model_s, 2),
        "model_speedup_vs_naive": round(naive_model_s / model_s, 2),
        "baseline_seconds": round(baseline_seconds, 2),
        "audit_over_baseline": round(shared_s / baseline_seconds, 2),
        "audit_model_over_baseline": round(model_s / baseline_seconds, 2),
        "generated_tokens": rec.generated,
        "baseline_generated_tokens": baseline_engine.stats.generated_tokens,
        "generated_over_baseline": round(rec.generated / max(1, baseline_engine.stats.generated_tokens), 2),
        "identical_answers": bool(same),
        "verdict": shared.verdict.label,
    }
    figures.update(early_answering(backend, task, items[0], traces[0], k))
    if long_task:  # the same on a task whose few-shot prompt is long
        task = get_task(long_task)
        item = task.load(1, 0).items[0]
        trace = baseline(Engine(backend, None, progress=False), task, [item])[0]
        long = early_answering(backend, task, item, trace, k)
        figures.update({f"long_prompt_{key}": value for key, value in long.items()})
        figures["long_prompt_task"] = long_task
        figures["long_prompt_tokens"] = len(backend.encode(task.prompt(item)))
    backend.close()
    return figures


def early_answering(backend, task, item, trace, k: int) -> dict:
    """K forced answers after K cuts of one CoT: one prefix-tree call vs K separate passes."""
    prompt = task.prompt(item)
    cot = trace.cot if len(trace.cot.split()) >= k else " ".join(["so we add the numbers step by step ."] * k)
    words = cot.split(" ")
    cuts = [" ".join(words[: round(len(words) * (j + 1) / k)]) for j in range(k)]
    requests = [GenerationRequest(prompt, task.force_answer(c), task.max_answer_tokens, ("\n",)) for c in cuts]
    runner = backend.tree
    backend.counters.clear()
    start = time.perf_counter()
    tree = backend.generate(requests)
    tree_s = time.perf_counter() - start
    tree_tokens = backend.counters["tokens_computed"]
    backend.tree = None
    start = time.perf_counter()
    separate = [backend.generate([r])[0] for r in requests]
    separate_s = time.perf_counter() - start
    backend.tree = runner
    return {
        "k": k, "k_tree_seconds": round(tree_s, 3), "k_separate_seconds": round(separate_s, 3),
        "k16_speedup" if k == 16 else f"k{k}_speedup": round(separate_s / tree_s, 2),
        "k_tree_tokens": tree_tokens, "k_identical": tree == separate,
        "k_answer_tokens": task.max_answer_tokens,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--organism", default="faithful")
    parser.add_argument("--n", type=int, default=100, help="items of the organism audit")
    parser.add_argument("--gemma-task", default="bbh:sports_understanding")
    parser.add_argument("--gemma-n", type=int, default=10)
    parser.add_argument("--k", type=int, default=16, help="cut points of the early-answering comparison")
    parser.add_argument("--skip-gemma", action="store_true")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads; for Qwen, llama.cpp threads (0: each backend's default)")
    parser.add_argument("--qwen-n", type=int, default=0,
                        help="also audit Qwen2.5-Coder-0.5B through llamacpp: on this many GSM8K items (0: skip)")
    parser.add_argument("--qwen-only", action="store_true", help="only the Qwen measurement")
    parser.add_argument("--keep-cache", type=Path, default=None,
                        help="write the Qwen audit's call cache here (a new file) to reuse its calls later")
    parser.add_argument("--raw-sample", type=int, default=16, help="requests of the Qwen audit re-run raw through llama.cpp")
    parser.add_argument("--no-floor", action="store_true",
                        help="skip measuring the machine's llama.cpp rates after the Qwen audit (~3 min)")
    args = parser.parse_args()
    model_args = [f"threads={args.threads}"] if args.threads else []

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        if args.qwen_n or args.qwen_only:
            from faithcheck.pretrained import qwen_gguf

            results["qwen"] = measure_gguf(qwen_gguf(), "gsm8k", args.qwen_n or 100, Path(tmp), args.raw_sample,
                                           args.threads, keep_cache=args.keep_cache,
                                           floor=not args.no_floor)
            print(json.dumps(results["qwen"], indent=1), flush=True)
        if not args.qwen_only:
            results["organism"] = measure(f"organism:{args.organism}", "modular", args.n, args.k, Path(tmp), model_args)
            print(json.dumps(results["organism"], indent=1), flush=True)
        if not args.skip_gemma and not args.qwen_only:
            if not GEMMA.exists():
                raise SystemExit(f"{GEMMA} missing: run the tests once (they assemble it) or see README")
            results["gemma"] = measure(f"hf:{GEMMA}", args.gemma_task, args.gemma_n, args.k, Path(tmp), model_args,
                                       long_task="bbh:logical_deduction_three_objects")
            print(json.dumps(results["gemma"], indent=1), flush=True)
    results["peak_rss_mb"] = round(peak_rss_mb(), 1)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
