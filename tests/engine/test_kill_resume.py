"""Kill an audit at a random moment, resume it, and count the answered calls asked for again.

HTTP: `faithcheck audit openai:...` against a loopback server that logs every request it
receives and every response it finishes writing. With one call in flight, a response is
known to have reached the client once the client's next request arrives (the client sends
it only after saving the answer): none of those may be requested again on resume. Only the
one response in flight at the kill (written, not yet read) may be, and is counted apart.
Organism (a local backend): the driver logs each batch the backend hands back and each
save; no saved call may be computed again, and a kill can cost at most the batch being
handed over. SIGKILL and SIGINT alternate; after SIGINT the message's count of saved calls
must equal the cache's. The default suite runs a few trials; `--runslow` runs 25 in all.
"""

from __future__ import annotations

import json
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "backends"))
from fake_openai import FakeOpenAI  # noqa: E402

from faithcheck.engine.engine import COMMIT_WINDOW  # noqa: E402

DRIVER = Path(__file__).with_name("audit_driver.py")
HTTP_ARGS = ["--task", "modular", "--n", "10", "--probes", "early_answering,no_cot", "--quiet",
             "--model-arg", "endpoint=completions", "--model-arg", "concurrency=1"]
ORGANISM_ARGS = ["--task", "modular", "--n", "24", "--probes", "early_answering,no_cot", "--quiet"]
HTTP_CALLS, ORGANISM_BATCHES = 30, 7  # what one audit above makes: calls (HTTP), batches handed over (organism)


def _cli(*args: str, log: Path | None = None) -> list[str]:
    if log is None:
        return [sys.executable, "-m", "faithcheck.cli", *args]
    return [sys.executable, str(DRIVER), str(log), *args]


def _cached(db: Path) -> int:
    if not db.exists():
        return 0
    with sqlite3.connect(db) as con:
        return con.execute("SELECT COUNT(*) FROM calls").fetchone()[0]


def _kill(proc: subprocess.Popen, sig: int) -> tuple[int, str, float]:
    killed_at = time.monotonic()
    proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return proc.returncode, err, killed_at


def _check_interrupt_message(code: int, err: str, db: Path) -> None:
    """After Ctrl-C: exit 130 and a saved-call count equal to what the cache holds."""
    if code != 130:  # the kill landed after the run finished, or before the CLI was up
        return
    m = re.search(r"the (\d+) model call\(s\) this run had answered are saved", err)
    assert m, err
    assert int(m.group(1)) == _cached(db), err


def _calls(log: list[tuple[float, str, str]]) -> list[str]:
    return [k for _, p, k in log if p.endswith("completions")]


def http_trial(server, model: str, tmp: Path, rng: random.Random, sig: int, args: list[str] = HTTP_ARGS,
               calls: int = HTTP_CALLS) -> dict:
    """`server` logs `received` and `answered` (time, path, key) lists: FakeOpenAI, or a
    FaultProxy in front of a real server. The kill comes after a random number of the
    audit's `calls` were answered, a random fraction of a call later."""
    db, out = tmp / "c.sqlite", tmp / "run"
    first_rx, first_ans = len(server.received), len(server.answered)
    proc = subprocess.Popen(_cli("audit", model, *args, "--cache", str(db), "--out", str(out)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    target = first_ans + rng.randint(1, calls - 2)
    while len(server.answered) < target and proc.poll() is None:
        time.sleep(0.002)
    time.sleep(rng.uniform(0.0, 0.03))
    code, err, killed_at = _kill(proc, sig)
    _check_interrupt_message(code, err, db)
    received = _calls(server.received[first_rx:])
    arrivals = [t for t, p, _ in server.received[first_rx:] if p.endswith("completions")]
    last_arrival = max(arrivals) if arrivals else 0.0
    answered = [a for a in server.answered[first_ans:] if a[0] < killed_at]
    proven = {k for t, p, k in answered if p.endswith("completions") and t < last_arrival}
    in_flight = {k for t, p, k in answered if p.endswith("completions") and t >= last_arrival}
    resume_rx = len(server.received)
    done = subprocess.run(_cli("audit", model, *args, "--cache", str(db), "--out", str(out)),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    again = set(_calls(server.received[resume_rx:]))
    assert len(in_flight) <= 1
    return {"answered": len(proven | in_flight), "repeated": len(proven & again),
            "in_flight_repeated": len(in_flight & again), "sent_first": len(received)}


def organism_trial(tmp: Path, rng: random.Random, sig: int) -> dict:
    db, out, log = tmp / "c.sqlite", tmp / "run", tmp / "calls.log"
    args = ("audit", "organism:faithful", *ORGANISM_ARGS, "--cache", str(db), "--out", str(out))
    proc = subprocess.Popen(_cli(*args, log=log), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    target = rng.randint(1, ORGANISM_BATCHES - 1)  # kill after this many batches were saved
    while proc.poll() is None and not (log.exists() and log.read_text().count('"saved"') >= target):
        time.sleep(0.005)
    time.sleep(rng.uniform(0.0, 0.3))
    code, err, _ = _kill(proc, sig)
    _check_interrupt_message(code, err, db)
    events = [json.loads(line) for line in log.read_text().splitlines()]
    answered = {k for e in events if e["event"] == "answered" for k in e["keys"]}
    saved = {k for e in events if e["event"] == "saved" for k in e["keys"]}
    sent_at = [e["t"] for e in events if e["event"] == "sent"]
    saved_at = [e["t"] for e in events if e["event"] == "saved"]
    mark = len(events)
    done = subprocess.run(_cli(*args, log=log), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    resumed = [json.loads(line) for line in log.read_text().splitlines()[mark:]]
    again = {k for e in resumed if e["event"] == "sent" for k in e["keys"]}
    # the longest a computed batch waited to be saved: bounded by the engine's commit window
    waits = [min((s for s in saved_at if s >= t), default=t) - t for t in sent_at]
    return {"answered": len(answered), "repeated": len(saved & again),
            "in_flight_repeated": len((answered - saved) & again), "max_unsaved_s": max(waits, default=0.0)}


def _signals(n: int) -> list[int]:
    return [signal.SIGKILL if i % 2 == 0 else signal.SIGINT for i in range(n)]


def _run_http(tmp_path: Path, trials: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    with FakeOpenAI(delay=0.02) as server:
        model = f"openai:{server.model}@{server.url}"
        return [http_trial(server, model, _fresh(tmp_path, i), rng, sig) for i, sig in enumerate(_signals(trials))]


def _run_organism(tmp_path: Path, trials: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    return [organism_trial(_fresh(tmp_path, i), rng, sig) for i, sig in enumerate(_signals(trials))]


def _fresh(root: Path, i: int) -> Path:
    path = root / f"trial{i}"
    path.mkdir()
    return path


def _assert_nothing_repeated(results: list[dict]) -> None:
    assert sum(r["answered"] for r in results) > 0
    assert [r["repeated"] for r in results] == [0] * len(results), results


def test_http_audit_killed_at_random_moments_repeats_no_answered_call(tmp_path):
    results = _run_http(tmp_path, trials=3, seed=1)
    _assert_nothing_repeated(results)


def test_organism_audit_killed_at_random_moments_repeats_no_saved_call(organism_path, tmp_path):
    organism_path("faithful")
    results = _run_organism(tmp_path, trials=2, seed=2)
    _assert_nothing_repeated(results)
    assert all(r["in_flight_repeated"] <= 64 and r["max_unsaved_s"] <= COMMIT_WINDOW * 2 + 5 for r in results)


@pytest.mark.slow
def test_kill_and_resume_25_trials(organism_path, tmp_path):
    """15 HTTP and 10 organism trials at random moments (benchmarks/kill_resume.py prints the same)."""
    organism_path("faithful")
    (tmp_path / "http").mkdir()
    (tmp_path / "org").mkdir()
    results = _run_http(tmp_path / "http", trials=15, seed=11) + _run_organism(tmp_path / "org", trials=10, seed=12)
    _assert_nothing_repeated(results)
