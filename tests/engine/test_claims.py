"""Several processes sharing one cache compute each call once between them (cache claims).

A claim held by a live process is respected; one whose process is gone (same host) or
whose expiry passed (any host) is taken over, so a killed audit never blocks the next."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time

from faithcheck.engine.cache import CallCache
from faithcheck.engine.engine import Engine
from faithcheck.records import GenerationRequest
from tests.fakes import ScriptedBackend


def test_live_claims_are_respected_and_stale_ones_taken_over(tmp_path):
    a, b = CallCache(tmp_path / "c.sqlite"), CallCache(tmp_path / "c.sqlite")
    keys = [f"k{i}" for i in range(5)]
    assert a.claim("m", keys[:3]) == keys[:3]
    assert b.claim("m", keys) == keys[3:]  # a's claims are live (its process runs)
    a.release("m", ["k0"])
    assert b.claim("m", keys) == ["k0", "k3", "k4"]  # its own claims stay its own
    host = socket.gethostname()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    rows = [("m", "gone", f"{host}:{int(dead.stdout)}:x", time.time() + 600),  # this host, process ended
            ("m", "expired", "elsewhere:1:x", time.time() - 1),  # another host, past its expiry
            ("m", "live", "elsewhere:1:y", time.time() + 600)]  # another host, not expired: respected
    a._write(lambda db: db.executemany("INSERT INTO claims VALUES (?, ?, ?, ?)", rows))
    assert b.claim("m", ["gone", "expired", "live"]) == ["gone", "expired"]


def test_a_cached_call_is_never_claimed(tmp_path):
    cache = CallCache(tmp_path / "c.sqlite")
    backend = ScriptedBackend(lambda r: r.prompt.upper())
    Engine(backend, cache, progress=False).run([GenerationRequest("x")])
    assert cache.claim(backend.identity.cache_key, [GenerationRequest("x").key()]) == []


SCRIPT = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {root!r})
    from faithcheck.engine.cache import CallCache
    from faithcheck.engine.engine import Engine
    from faithcheck.records import GenerationRequest
    from tests.fakes import ScriptedBackend
    def slow(r):
        with open({log!r}, "a") as f:
            f.write(r.prompt + "\\n")
        time.sleep(0.01)
        return r.prompt.upper()
    while time.time() < {start!r}:
        time.sleep(0.005)
    reqs = [GenerationRequest(f"q{{i:03d}}") for i in range(120)]
    out = Engine(ScriptedBackend(slow), CallCache({db!r}), chunk_size=8, progress=False).run(reqs)
    assert [c.text for c in out] == [f"Q{{i:03d}}" for i in range(120)]
    print("ok")
""")


def test_two_processes_started_together_compute_each_call_once(tmp_path):
    db, log = tmp_path / "c.sqlite", tmp_path / "computed.log"
    CallCache(db).close()  # the schema exists before both start
    code = SCRIPT.format(root=os.getcwd(), log=str(log), db=str(db), start=time.time() + 2.0)
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e for _, e in outs]
    computed = log.read_text().splitlines()
    assert sorted(computed) == [f"q{i:03d}" for i in range(120)]  # each once, between the two
    assert CallCache(db).count() == 120


def test_two_identical_organism_audits_started_together_share_the_work(organism_path, tmp_path):
    """Two `faithcheck audit` processes on one cache make, between them, exactly the calls one
    audit alone makes, and write the same numbers."""
    organism_path("faithful")
    args = ["audit", "organism:faithful", "--n", "12", "--probes", "early_answering,no_cot", "--quiet"]
    solo = subprocess.run([sys.executable, "-m", "faithcheck.cli", *args, "--cache", str(tmp_path / "solo.sqlite"),
                           "--out", str(tmp_path / "solo")], capture_output=True, text=True, timeout=600)
    assert solo.returncode == 0, solo.stderr
    shared = tmp_path / "shared.sqlite"
    procs = [subprocess.Popen([sys.executable, "-m", "faithcheck.cli", *args, "--cache", str(shared),
                               "--out", str(tmp_path / f"run{i}")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for i in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e for _, e in outs]

    def engine(d):
        return json.loads((tmp_path / d / "manifest.json").read_text())["engine"]

    calls = [engine(f"run{i}")["model_calls"] for i in range(2)]
    assert sum(calls) == engine("solo")["model_calls"] > 0
    summaries = [json.loads((tmp_path / d / "summary.json").read_text()) for d in ("solo", "run0", "run1")]
    assert summaries[0]["accuracy"] == summaries[1]["accuracy"] == summaries[2]["accuracy"]
    assert summaries[0]["probes"] == summaries[1]["probes"] == summaries[2]["probes"]
