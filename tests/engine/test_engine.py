import os
import signal
import subprocess
import sys
import textwrap

from faithcheck.engine.cache import CallCache
from faithcheck.engine.engine import Engine
from faithcheck.records import GenerationRequest
from tests.fakes import ScriptedBackend


def echo(r):
    return f"<{r.prompt[-3:]}>"


def test_dedupes_and_caches(tmp_path):
    backend = ScriptedBackend(echo)
    cache = CallCache(tmp_path / "c.sqlite")
    reqs = [GenerationRequest(f"p{i % 3}") for i in range(9)]
    out = Engine(backend, cache, progress=False).run(reqs)
    assert [c.text for c in out] == [echo(r) for r in reqs]
    assert len(backend.calls) == 3
    engine2 = Engine(backend, cache, progress=False)
    engine2.run(reqs)
    assert len(backend.calls) == 3 and engine2.stats.cache_hits == 3


def test_cache_key_ignores_seed_when_greedy_but_not_when_sampled():
    assert GenerationRequest("a", seed=1).key() == GenerationRequest("a", seed=2).key()
    assert GenerationRequest("a", temperature=0.7, seed=1).key() != GenerationRequest("a", temperature=0.7, seed=2).key()


def test_cache_is_keyed_by_model(tmp_path):
    cache = CallCache(tmp_path / "c.sqlite")
    a, b = ScriptedBackend(echo, "m:a"), ScriptedBackend(echo, "m:b")
    Engine(a, cache, progress=False).run([GenerationRequest("x")])
    Engine(b, cache, progress=False).run([GenerationRequest("x")])
    assert len(a.calls) == len(b.calls) == 1


def test_failed_calls_are_reported_and_not_cached(tmp_path):
    cache = CallCache(tmp_path / "c.sqlite")
    flaky = ScriptedBackend(echo, fail=lambda r: r.prompt == "bad")
    engine = Engine(flaky, cache, progress=False)
    out = engine.run([GenerationRequest("good"), GenerationRequest("bad")])
    assert out[0].error is None and "bad" in out[1].error
    assert engine.stats.failed_calls == 1
    assert cache.count() == 1


def test_kill_minus_nine_loses_no_finished_call(tmp_path):
    """A process killed mid-run leaves every finished chunk in the cache; the rerun only does the rest."""
    db = tmp_path / "c.sqlite"
    marker = tmp_path / "calls.log"
    script = textwrap.dedent(f"""
        import os, sys, time
        sys.path.insert(0, {os.getcwd()!r})
        from faithcheck.engine.cache import CallCache
        from faithcheck.engine.engine import Engine
        from faithcheck.records import GenerationRequest
        from tests.fakes import ScriptedBackend
        def slow(r):
            with open({str(marker)!r}, "a") as f:
                f.write(r.prompt + "\\n")
            time.sleep(0.02)
            return r.prompt.upper()
        reqs = [GenerationRequest(f"q{{i:03d}}") for i in range(400)]
        Engine(ScriptedBackend(slow), CallCache({str(db)!r}), chunk_size=10, progress=False).run(reqs)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script])
    while not marker.exists() or len(marker.read_text().splitlines()) < 55:
        assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    cached = CallCache(db).count()
    assert 55 - 1 - 10 <= cached < 400  # at most the chunk of 10 being computed is lost
    backend = ScriptedBackend(lambda r: r.prompt.upper())
    out = Engine(backend, CallCache(db), progress=False).run([GenerationRequest(f"q{i:03d}") for i in range(400)])
    assert len(backend.calls) == 400 - cached
    assert [c.text for c in out] == [f"Q{i:03d}" for i in range(400)]
