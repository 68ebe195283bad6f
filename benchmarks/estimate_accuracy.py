"""`--estimate` against the audit it predicts, on a fresh cache.

    python benchmarks/estimate_accuracy.py MODEL [--task T] [--n N] [--probes P,..] [--model-arg K=V ...] [--audit]

1. `faithcheck audit MODEL ... --estimate` as a user runs it (a fresh process, a fresh
   cache): its wall time, model loading included, and its printout.
2. With --audit: the estimate again on another fresh cache, in process, then the audit on
   that cache: predicted calls, tokens and seconds still to compute against what the audit
   computed (its manifest's engine counts; seconds are the engine's time in model calls).
Every figure is printed with the machine's load (`uptime`) before and after.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def cli_estimate(args: argparse.Namespace, cache: Path) -> None:
    cmd = [sys.executable, "-m", "faithcheck.cli", "audit", args.model, "--task", args.task, "--n", str(args.n),
           "--estimate", "--cache", str(cache)]
    cmd += ["--probes", args.probes] if args.probes else []
    for arg in args.model_arg:
        cmd += ["--model-arg", arg]
    print("$", " ".join(cmd[2:]))
    started = time.time()
    res = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.time() - started
    print(res.stdout.rstrip())
    if res.returncode:
        print(res.stderr[-2000:])
    print(f"== CLI --estimate: exit {res.returncode}, wall {wall:.1f} s (model loading included)")


def against_audit(args: argparse.Namespace, tmp: Path) -> None:
    from faithcheck.audit.estimate import estimate_audit
    from faithcheck.audit.pipeline import AuditConfig, run_audit
    from faithcheck.probes import DEFAULT_PROBES

    probes = tuple(args.probes.split(",")) if args.probes else DEFAULT_PROBES
    cfg = AuditConfig(args.model, task=args.task, n=args.n, probes=probes, model_args=tuple(args.model_arg),
                      progress=False, cache_path=tmp / "calls.sqlite", out=tmp / "run")
    started = time.time()
    est = estimate_audit(cfg)
    print(f"== estimate in process: wall {time.time() - started:.1f} s")
    print(est)
    started = time.time()
    result = run_audit(cfg)
    wall = time.time() - started
    engine = json.loads((result.run_dir / "manifest.json").read_text())["engine"]
    print(f"== audit: wall {wall:.1f} s; engine: {engine['model_calls']} calls computed, {engine['prompt_tokens']:,} "
          f"prompt + {engine['generated_tokens']:,} generated tokens, {engine['seconds']:.1f} s in model calls")
    rows = [("calls", "calls", "model_calls"), ("prompt tokens", "prompt_tokens", "prompt_tokens"),
            ("generated tokens", "generated_tokens", "generated_tokens"), ("seconds", "seconds", "seconds")]
    print(f"{'still to compute':18} {'point':>10} {'low':>10} {'high':>10} {'audit':>10}  audit/point")
    for label, field, actual in rows:
        values = [getattr(p, field) if p is not None else None for p in (est.point, est.low, est.high)]
        shown = ["-" if v is None else f"{v:,.0f}" for v in values]
        ratio = f"{engine[actual] / values[0]:.2f}" if values[0] else "-"
        print(f"{label:18} {shown[0]:>10} {shown[1]:>10} {shown[2]:>10} {engine[actual]:>10,.0f}  {ratio}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--task", default="modular")
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--probes", default="")
    ap.add_argument("--model-arg", action="append", default=[])
    ap.add_argument("--audit", action="store_true", help="also run the audit and compare (step 2)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print(uptime())
        cli_estimate(args, Path(tmp) / "cli.sqlite")
        print(uptime())
        if args.audit:
            against_audit(args, Path(tmp))
            print(uptime())


if __name__ == "__main__":
    main()
