"""Cost and memory of an audit as the number of items grows.

Audits an organism on `modular` (all default probes, fresh call cache each time) at growing
item counts, each in its own process so that peak memory is that audit's alone, and prints
the wall time, time per item and peak RSS of each. Problems are drawn like the bundled held-out set, with
another seed (some may have been seen in training: cost and memory are measured here, not
faithfulness).

    python benchmarks/scale.py                        # 500, 1000, 5000 items
    python benchmarks/scale.py --sizes 200,2000

Last line: one JSON object, {"runs": [{"items", "seconds", "seconds_per_item",
"peak_rss_mb", "outcomes", "verdict"}...], "peak_rss_mb": the largest, "per_item_growth":
seconds per item at the largest size over seconds per item at the smallest}.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def one_run(n: int, organism: str, tmp: Path) -> dict:
    sys.path.insert(0, str(ROOT))
    from faithcheck.engine.cache import CallCache
    from faithcheck.audit.pipeline import AuditConfig, run_audit
    from faithcheck.organisms.data import heldout_rows

    data = tmp / "problems.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in heldout_rows(n, seed=987_654)))
    start = time.perf_counter()
    result = run_audit(
        AuditConfig(model=f"organism:{organism}", task=f"modular:{data}", n=n, out=tmp / "run", progress=False),
        cache=CallCache(tmp / "calls.sqlite"),
    )
    seconds = time.perf_counter() - start
    return {
        "items": n, "seconds": round(seconds, 1), "seconds_per_item": round(seconds / n, 4),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "outcomes": len(result.outcomes), "verdict": result.verdict.label,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="500,1000,5000")
    parser.add_argument("--organism", default="faithful")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: run one size in this process
    args = parser.parse_args()
    if args.one:
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(one_run(args.one, args.organism, Path(tmp))))
        return
    runs = []
    for n in (int(s) for s in args.sizes.split(",")):
        out = subprocess.run([sys.executable, __file__, "--one", str(n), "--organism", args.organism],
                             capture_output=True, text=True, check=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(runs[-1]), flush=True)
    print(json.dumps({
        "runs": runs, "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
        "per_item_growth": round(runs[-1]["seconds_per_item"] / runs[0]["seconds_per_item"], 2),
    }))


if __name__ == "__main__":
    main()
