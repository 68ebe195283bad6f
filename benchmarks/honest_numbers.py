"""Issue 14's figures, rerunnable: intervals at the edges before and after, p-values at full
precision, and `--estimate` on an empty, a half-full and a full cache against the audit it predicts.

    python benchmarks/honest_numbers.py [--n 20] [--out /tmp/numbers]

"Before" is the rule this code replaced: a percentile bootstrap of per-item values (zero width
when every item agrees) and p-values rounded to 6 decimals in summary.json."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
from scipy import stats as sps

from faithcheck.audit.estimate import estimate_audit
from faithcheck.audit.pipeline import AuditConfig, run_audit
from faithcheck.backends import load_backend
from faithcheck.engine.cache import CallCache
from faithcheck.scoring import stats


def intervals() -> None:
    print("== a rate whose 100 items all agree")
    ones = np.ones(100)
    old = sps.bootstrap((ones,), np.mean, n_resamples=2000, method="percentile", rng=np.random.default_rng(0))
    print(f"  before (item bootstrap):          1.000 [{old.confidence_interval.low:.3f}, {old.confidence_interval.high:.3f}]")
    print(f"  after  (Wilson, one per item):    {stats.item_rate(ones, range(100))}")
    print(f"  after  (4 variants per item):     {stats.item_rate(np.ones(400), np.repeat(np.arange(100), 4))}")
    print(f"  after  (AOC, all items equal):    {stats.bootstrap_mean(ones, 0, bounded=True)}")
    print("== p-values")
    p = stats.mcnemar_exact([True] * 60, [False] * 60)
    print(f"  60 items all changing one way: p = {p!r}; before stored as {round(p, 6)!r}, now {json.dumps(p)}, printed {stats.format_p(p)}")


def estimates(n: int, out: Path) -> None:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    cfg = dict(model="organism:faithful", progress=False, cache_path=out / "calls.sqlite")

    def audit(k: int) -> dict:
        backend = load_backend(cfg["model"])
        try:
            r = run_audit(AuditConfig(n=k, out=out / f"run{k}", **cfg), backend, CallCache(cfg["cache_path"]))
        finally:
            backend.close()
        return json.loads((r.run_dir / "manifest.json").read_text())["engine"]

    for label, before in (("empty cache", None), (f"half-full cache (an audit of {n // 2} items ran)", n // 2),
                          ("full cache (the audit itself ran)", n)):
        if before:
            engine = audit(before)
            print(f"  [audit n={before}: {engine['unique']} distinct calls, {engine['model_calls']} computed, "
                  f"{engine['prompt_tokens']} prompt + {engine['generated_tokens']} generated tokens computed]")
        started = time.time()
        est = estimate_audit(AuditConfig(n=n, **cfg))
        print(f"== --estimate, {label} ({time.time() - started:.1f} s)")
        print(str(est))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--out", type=Path, default=Path("/tmp/faithcheck-numbers"))
    args = ap.parse_args()
    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    intervals()
    estimates(args.n, args.out)


if __name__ == "__main__":
    main()
