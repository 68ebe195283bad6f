"""The machine's own llama.cpp rates for a GGUF: prompt evaluation and batched decoding.

What an audit through `llamacpp:` can reach at best on this machine: tokens per second for
one prompt evaluated in a batch, and for one decode step of S sequences (one token each) at a
given context length, each the best of three timed `llama_decode` calls on a context with
S sequences in one unified KV cache (`--layout unified`, the tree decoder's setting: every
token attends over every cell held) or in one KV stream per sequence (`--layout streams`:
each over its own sequence's cells). With the token counts of an audit
(benchmarks/engine.py), the compute-bound time is prompt tokens evaluated / prompt
rate + generated tokens / decode rate at `parallel` sequences.

    python benchmarks/llama_rates.py [--model PATH.gguf] [--threads 2] [--context 600] [--layout unified|streams]
"""

from __future__ import annotations

import argparse
import json
import os
import time

from faithcheck.pretrained import qwen_gguf


def measure(model: str, threads: int = 2, context: int = 600, sequences: tuple[int, ...] = (1, 8, 16, 32),
            layout: str = "unified") -> dict:
    """Prompt tokens/s and, per number of sequences, decode tokens/s on this machine now."""
    from llama_cpp import llama_cpp as C

    n_seq = max(sequences)
    C.llama_backend_init()
    lmodel = C.llama_model_load_from_file(str(model).encode(), C.llama_model_default_params())
    p = C.llama_context_default_params()
    per_seq = -(-(context + 8) // 256) * 256  # llama.cpp pads a stream to 256 cells
    p.n_ctx, p.n_batch, p.n_ubatch, p.n_seq_max = per_seq * n_seq, 512, 512, n_seq
    p.kv_unified, p.n_threads, p.n_threads_batch, p.no_perf = layout == "unified", threads, threads, True
    ctx = C.llama_init_from_model(lmodel, p)
    mem = C.llama_get_memory(ctx)
    batch = C.llama_batch_init(512, 0, n_seq)

    def decode(entries) -> float:
        for k, (tok, pos, seq, logits) in enumerate(entries):
            batch.token[k], batch.pos[k], batch.n_seq_id[k], batch.logits[k] = tok, pos, 1, int(logits)
            batch.seq_id[k][0] = seq
        batch.n_tokens = len(entries)
        start = time.perf_counter()
        if C.llama_decode(ctx, batch) != 0:
            raise SystemExit("llama_decode failed")
        return time.perf_counter() - start

    try:
        prompt_s = 0.0
        for s in range(n_seq):  # every sequence gets its own context, 512 tokens per call
            for start in range(0, context, 512):
                part = range(start, min(context, start + 512))
                prompt_s += decode([(100 + (p_ * 7 + s) % 5000, p_, s, p_ == context - 1) for p_ in part])
        out = {"model": str(model), "threads": threads, "context": context, "layout": layout,
               "prompt_tok_s": round(n_seq * context / prompt_s, 1), "decode_tok_s": {},
               "load_average": os.getloadavg()[0]}
        for n in sequences:
            times = []
            for _ in range(3):
                times.append(decode([(200, context, s, True) for s in range(n)]))
                for s in range(n):
                    C.llama_memory_seq_rm(mem, s, context, -1)
            out["decode_tok_s"][n] = round(n / min(times), 1)
        out["load_average_end"] = os.getloadavg()[0]
        return out
    finally:
        C.llama_batch_free(batch)
        C.llama_free(ctx)
        C.llama_model_free(lmodel)


def floor_seconds(rates: dict, prompt_tokens: int, generated_tokens: int, sequences: int) -> float:
    """Compute-bound model time of an audit: its prompt tokens evaluated at the prompt rate plus
    its generated tokens at the decode rate of `sequences` decoded together."""
    return prompt_tokens / rates["prompt_tok_s"] + generated_tokens / rates["decode_tok_s"][sequences]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--context", type=int, default=600, help="tokens each sequence holds before the decode steps")
    ap.add_argument("--sequences", default="1,8,16,32")
    ap.add_argument("--layout", choices=("unified", "streams"), default="unified")
    args = ap.parse_args()
    seqs = tuple(int(s) for s in args.sequences.split(","))
    print(json.dumps(measure(str(args.model or qwen_gguf()), args.threads, args.context, seqs, args.layout), indent=1))


if __name__ == "__main__":
    main()
