"""Prompt caching on the llama.cpp server path: one GSM8K item's early-answering requests
through `python -m llama_cpp.server` (Qwen2.5-Coder-0.5B-Instruct, ChatML) on loopback.

    flock /tmp/heavy.lock .venv/bin/python benchmarks/server_cache.py [--cuts 10] [--repeats 2]

The item is prompted as a chat model is in an audit (GSM8K's exemplars as chat turns, through
`chat_template=chatml` on /completions); the model writes its baseline CoT (of the first
`--tries` items, the first whose CoT has at least `--cuts` steps), which is cut at
`--cuts` points, each followed by a forced answer ("The answer is", 16 tokens). Those requests
are then sent as one batch by the openai: backend with `prompt_cache=auto` (the server is
recognised as llama-cpp-python's: one request at a time, in prefix order) and with
`prompt_cache=off` (what it did before: up to 8 at once, in the order given), the batch
handed over in the engine's prefix order and shuffled (the order lost, as by out-of-order
dispatch), each to a freshly started server with and without its RAM prompt cache
(`--cache True`).

Prints per configuration the batch's wall time, the prompt tokens the requests carry, the
prompt tokens the server evaluated and its RAM-cache hits (from its own log), whether the
forced answers are the same in every configuration, and the machine's load.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from faithcheck.backends.openai import load  # noqa: E402
from faithcheck.engine.answering import ANSWER_STOP  # noqa: E402
from faithcheck.engine.engine import prefix_order  # noqa: E402
from faithcheck.pretrained import qwen_gguf  # noqa: E402
from faithcheck.probes.early_answering import cut_points  # noqa: E402
from faithcheck.records import GenerationRequest  # noqa: E402
from faithcheck.tasks import get_task, task_options  # noqa: E402

EVALUATED = re.compile(r"prompt eval time\s*=\s*[\d.]+ ms /\s*(\d+) tokens")
CACHE_HIT = "Llama._create_completion: cache hit"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """llama-cpp-python's server on a free loopback port, its log in `log`."""

    def __init__(self, gguf: Path, log: Path, threads: int, cache: bool):
        self.port, self.log = free_port(), log
        cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
               "--port", str(self.port), "--chat_format", "chatml", "--n_ctx", "4096", "--n_threads", str(threads),
               "--seed", "0", "--interrupt_requests", "False", "--cache", str(cache)]
        self.proc = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> Server:
        import httpx

        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited:\n{self.log.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/models", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError("server not ready after 300 s")

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def evaluated(self) -> list[int]:
        """Prompt tokens the server evaluated per request, from its log."""
        return [int(n) for n in EVALUATED.findall(self.log.read_text(errors="replace"))]

    def cache_hits(self) -> int:
        return self.log.read_text(errors="replace").count(CACHE_HIT)


def item_requests(gguf: Path, tmp: Path, cuts: int, cot_tokens: int, threads: int,
                  tries: int) -> list[GenerationRequest]:
    """The baseline CoT (written by the model) cut at `cuts` points, each with a forced answer: of
    the first `tries` items, the first whose CoT has at least `cuts` steps (else the one with most)."""
    task = get_task("gsm8k")
    task.configure(task_options([]), chat=True, takes_turns=True)
    context, best = task.chat_context(), None
    with Server(gguf, tmp / "baseline.log", threads, cache=False) as server:
        backend = load(f"qwen@{server.url}", ["chat_template=chatml", "timeout=600"])
        for item in task.load(tries, seed=0).items:
            prompt = task.prompt(item)
            (base,) = backend.generate([GenerationRequest(prompt, "", cot_tokens, task.cot_stop, context=context)])
            if base.error:
                raise RuntimeError(base.error)
            steps = task.split_steps(task.split_output(base.text)[0])
            print(f"item {item.id}: baseline CoT {base.n_generated_tokens} tokens, {len(steps)} steps", flush=True)
            if best is None or len(steps) > len(best[2]):
                best = (prompt, base, steps)
            if len(steps) >= cuts:
                break
    prompt, base, steps = best
    print(f"{len(context)} context turns (GSM8K's exemplars); the item's prompt {len(prompt)} characters", flush=True)
    return [GenerationRequest(prompt, task.force_answer_after("".join(steps[:k]), base.text), task.max_answer_tokens,
                              ANSWER_STOP, context=context)
            for k in cut_points(len(steps), cuts)]


def run(gguf: Path, log: Path, reqs: list[GenerationRequest], threads: int, cache: bool, mode: str) -> dict:
    with Server(gguf, log, threads, cache) as server:
        backend = load(f"qwen@{server.url}", ["chat_template=chatml", f"prompt_cache={mode}", "timeout=600"])
        backend.generate([GenerationRequest("Hi", "", 1)])  # probes, detection and model warm-up: not timed
        before, hits = len(server.evaluated()), server.cache_hits()
        start = time.perf_counter()
        out = backend.generate(reqs)
        wall = time.perf_counter() - start
        time.sleep(0.5)  # the log's last lines
        evaluated, hits = server.evaluated()[before:], server.cache_hits() - hits
    if any(c.error for c in out):
        raise RuntimeError([c.error for c in out if c.error][0])
    return {"wall": wall, "carried": sum(c.n_prompt_tokens for c in out), "evaluated": sum(evaluated),
            "logged": len(evaluated), "hits": hits, "answers": [c.text for c in out], "server": backend.server.kind}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cuts", type=int, default=10, help="early-answering cut points (+1 for the empty CoT)")
    parser.add_argument("--cot-tokens", type=int, default=256, help="budget of the baseline CoT")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="server threads (1 on a busy 2-core machine)")
    parser.add_argument("--tries", type=int, default=6, help="items tried for a CoT with at least --cuts steps")
    args = parser.parse_args()
    os.chdir(ROOT)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a killed benchmark stops its server too
    gguf = qwen_gguf()
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        reqs = item_requests(gguf, tmp, args.cuts, args.cot_tokens, args.threads, args.tries)
        engine_order = [reqs[i] for i in prefix_order(reqs)]  # as the engine hands them over
        shuffled = random.Random(0).sample(reqs, len(reqs))
        print(f"{len(reqs)} early-answering requests; server threads {args.threads}", flush=True)
        configs = [(cache, order, mode) for cache in (False, True) for order in ("engine", "shuffled")
                   for mode in ("off", "auto")]
        rows, answers = [], {}
        for rep in range(args.repeats):
            for cache, order, mode in configs:
                batch = engine_order if order == "engine" else shuffled
                r = run(gguf, tmp / f"{rep}-{cache}-{order}-{mode}.log", batch, args.threads, cache, mode)
                answers[(rep, cache, order, mode)] = dict(zip(batch, r["answers"]))
                rows.append(((cache, order, mode), r))
                print(f"  --cache {str(cache):<5} {order:<8} prompt_cache={mode:<4} wall {r['wall']:6.1f} s  "
                      f"prompt tokens carried {r['carried']:5d}, evaluated {r['evaluated']:5d} "
                      f"({r['logged']} requests logged, {r['hits']} RAM-cache hits)  [{r['server']}]", flush=True)
    print(f"over {args.repeats} run(s), fewest to most: wall time; prompt tokens evaluated")
    for config in configs:
        walls = sorted(r["wall"] for c, r in rows if c == config)
        evals = sorted(r["evaluated"] for c, r in rows if c == config)
        cache, order, mode = config
        print(f"  --cache {str(cache):<5} {order:<8} prompt_cache={mode:<4} {walls[0]:5.1f}-{walls[-1]:5.1f} s; "
              f"{evals[0]}-{evals[-1]}")
    same = len({tuple(a[r] for r in reqs) for a in answers.values()}) == 1
    print(f"forced answers identical in every configuration: {same}")
    print(f"load: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")


if __name__ == "__main__":
    main()
