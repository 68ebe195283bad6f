"""Kill audits at random moments, resume them, and count answered calls asked for again.

    python benchmarks/kill_resume.py [--http 15] [--organism 10] [--seed 0]

HTTP trials: `faithcheck audit openai:...` on a loopback OpenAI-compatible server (one
call in flight); organism trials: `organism:faithful` through the hf backend. SIGKILL and
SIGINT alternate. Prints, per kind, the trials, the calls answered before the kills, the
answered calls requested again on resume (must be 0), the calls in flight at a kill that
were requested again (lost by the kill itself: at most one per HTTP trial), the longest a
local batch waited to be saved, and the machine's load. The same trials run in
tests/engine/test_kill_resume.py (a few by default, 25 with --runslow).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "backends")]

from tests.engine.test_kill_resume import _run_http, _run_organism  # noqa: E402


def summarise(kind: str, results: list[dict]) -> str:
    line = (f"{kind:<9} trials {len(results):>3}  answered before the kill {sum(r['answered'] for r in results):>5}  "
            f"answered and requested again {sum(r['repeated'] for r in results)}  "
            f"in flight at the kill, requested again {sum(r['in_flight_repeated'] for r in results)}")
    if results and "max_unsaved_s" in results[0]:
        line += f"  longest unsaved batch {max(r['max_unsaved_s'] for r in results):.1f} s"
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--http", type=int, default=15)
    parser.add_argument("--organism", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.chdir(ROOT)
    start = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "http").mkdir()
        (Path(tmp) / "org").mkdir()
        http = _run_http(Path(tmp) / "http", args.http, args.seed) if args.http else []
        org = _run_organism(Path(tmp) / "org", args.organism, args.seed + 1) if args.organism else []
    print(summarise("http", http))
    print(summarise("organism", org))
    print(f"{time.time() - start:.0f} s; load: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    if any(r["repeated"] for r in http + org):
        sys.exit(1)


if __name__ == "__main__":
    main()
