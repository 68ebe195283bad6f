"""The issue-15 scenarios, rerun: what an audit does when its model server misbehaves.

    python benchmarks/faults.py

Against a loopback OpenAI-compatible server (tests/backends/fake_openai.py) behind the fault
proxy (tests/backends/fault_proxy.py), each scenario runs `faithcheck audit` as a user would
and prints its exit status, how long it took and what it reported:
- a port with no server (with --fail-on);
- one call in four refused with HTTP 400 (with --fail-on);
- a 429 (Retry-After), 500, 503, reset, truncated and malformed body, each once;
- Ctrl-C after some calls were answered: the calls the message says were saved, and the
  cache's count.
No model is needed; it takes well under a minute.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "backends"))

from fake_openai import FakeOpenAI  # noqa: E402
from fault_proxy import FaultProxy  # noqa: E402

ARGS = ["--task", "modular", "--n", "8", "--probes", "early_answering,no_cot", "--quiet",
        "--model-arg", "endpoint=completions", "--model-arg", "backoff_base=0.01", "--model-arg", "concurrency=1"]


def audit(model: str, tmp: Path, *extra: str) -> tuple[subprocess.CompletedProcess, float]:
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "faithcheck.cli", "audit", model, *ARGS, "--cache",
                           str(tmp / "c.sqlite"), "--out", str(tmp / "run"), *extra],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    return done, time.monotonic() - start


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:160] if lines else ""


def main() -> None:
    with tempfile.TemporaryDirectory() as root:
        root = Path(root)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        (root / "dead").mkdir()
        done, secs = audit(f"openai:m@http://127.0.0.1:{port}/v1", root / "dead", "--fail-on", "post_hoc_rationalization")
        print(f"dead server:        exit {done.returncode} in {secs:.1f} s; {last_line(done.stderr)}")

        with FakeOpenAI() as server:
            (root / "400").mkdir()
            with FaultProxy(server.root, ["ok", "ok", "ok", "echo_auth"] * 200) as proxy:
                done, secs = audit(f"openai:fake-model@{proxy.url}", root / "400", "--fail-on", "post_hoc_rationalization")
            summary = json.loads((root / "400" / "run" / "summary.json").read_text())
            cot = summary["accuracy"]["cot"]
            print(f"1 call in 4 HTTP 400: exit {done.returncode} in {secs:.1f} s; failed calls {summary['failed_calls']}, "
                  f"CoT accuracy on n={cot['n']} answered of {summary['n_items']} items; verdict "
                  f"{summary['verdict']['label']}; {last_line(done.stderr)}")

            (root / "faults").mkdir()
            schedule = ["429", "500", "503", "reset", "truncated", "malformed", "missing_field", "empty_choices"]
            with FaultProxy(server.root, schedule, retry_after=0.5) as proxy:
                done, secs = audit(f"openai:fake-model@{proxy.url}", root / "faults")
            backend = json.loads((root / "faults" / "run" / "manifest.json").read_text())["backend"]
            print(f"8 faults, each once: exit {done.returncode} in {secs:.1f} s; retries {backend.get('retries')}, "
                  f"waited {backend.get('retry_wait_seconds')} s; failed calls "
                  f"{json.loads((root / 'faults' / 'run' / 'summary.json').read_text())['failed_calls']}")

            (root / "int").mkdir()
            slow = FakeOpenAI(delay=0.05)
            with slow:
                proc = subprocess.Popen([sys.executable, "-m", "faithcheck.cli", "audit", f"openai:fake-model@{slow.url}",
                                         *ARGS, "--cache", str(root / "int" / "c.sqlite"), "--out",
                                         str(root / "int" / "run")], cwd=ROOT, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)
                while len(slow.answered) < 15 and proc.poll() is None:
                    time.sleep(0.005)
                proc.send_signal(signal.SIGINT)
                _, err = proc.communicate(timeout=60)
                answered = len(slow.answered)
            import sqlite3

            with sqlite3.connect(root / "int" / "c.sqlite") as con:
                rows = con.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
            said = re.search(r"the (\d+) model call", err)
            print(f"Ctrl-C after {answered} answered calls: exit {proc.returncode}; message says "
                  f"{said.group(1) if said else '?'} saved; cache holds {rows}")
    print(f"load: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")


if __name__ == "__main__":
    main()
