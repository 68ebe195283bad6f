"""The progress bar moves at each hand-over of answered calls (call by call, batch by batch),
not once per engine chunk, and its ETA reads the calls left at the speed of their own kind."""

from __future__ import annotations

import pytest

import faithcheck.engine.engine as engine_module
from faithcheck.engine.cache import CallCache
from faithcheck.engine.engine import Engine, Progress
from faithcheck.paths import data_dir
from faithcheck.records import Completion, GenerationRequest
from tests.fakes import ScriptedBackend


class Recorded(Progress):
    """A Progress that keeps the count after each hand-over (the bar itself stays off)."""

    seen: list[list[int]] = []

    def __init__(self, budgets, desc, enabled, clock=None):
        super().__init__(budgets, desc, False)
        self.counts: list[int] = []
        Recorded.seen.append(self.counts)

    def done(self, budgets, completions):
        super().done(budgets, completions)
        if budgets:
            self.counts.append(self.n)

    def found(self, budgets):
        super().found(budgets)
        self.counts.append(self.n)


@pytest.fixture
def recorded(monkeypatch):
    Recorded.seen = []
    monkeypatch.setattr(engine_module, "Progress", Recorded)
    return Recorded.seen


class PerCall(ScriptedBackend):
    """Hands each call over as it is answered, like a server backend."""

    streams = True

    def generate_stream(self, requests, emit):
        for i, r in enumerate(requests):
            emit([(i, self.generate([r])[0])])


def test_the_bar_moves_per_call_on_a_backend_that_hands_calls_over_one_by_one(tmp_path, recorded):
    backend = PerCall(lambda r: r.prompt.upper())
    reqs = [GenerationRequest(f"q{i}") for i in range(10)]
    Engine(backend, CallCache(tmp_path / "c.sqlite"), chunk_size=64, progress=True).run(reqs)
    assert recorded == [list(range(1, 11))]  # one chunk of 10, ten moves


def test_the_bar_counts_calls_another_process_computed(tmp_path, recorded):
    cache = CallCache(tmp_path / "c.sqlite")
    reqs = [GenerationRequest(f"q{i}") for i in range(6)]
    engine = Engine(PerCall(lambda r: "x"), cache, progress=True)
    fp = engine.backend.identity.cache_key
    # another process has answered two of them since this run looked in the cache
    real_get_many = cache.get_many
    calls = []

    def get_many(fingerprint, keys):
        calls.append(keys)
        if len(calls) == 2:
            cache.put_many(fp, [(reqs[0], Completion("a")), (reqs[1], Completion("b"))])
        return real_get_many(fingerprint, keys)

    cache.get_many = get_many
    out = engine.run(reqs)
    assert [c.text for c in out[:2]] == ["a", "b"]
    assert recorded == [[2, 3, 4, 5, 6]]


def test_eta_counts_each_kind_of_call_at_its_own_speed():
    now = [0.0]
    bar = Progress([8] * 4 + [100] * 2, "calls", False, clock=lambda: now[0])
    assert bar.eta() is None and bar.postfix() == "ETA ?"
    for _ in range(4):  # forced answers: 1 s and 2 generated tokens each
        now[0] += 1.0
        bar.done([8], [Completion("7", 50, 2)])
    # no CoT timed yet: each is charged its whole budget at 4 s / 8 tokens = 0.5 s a token, a bound
    assert bar.eta() == (pytest.approx(2 * 100 * 0.5), True)
    assert bar.postfix() == "ETA <=1:40, 2.0 tok/s"
    now[0] += 20.0  # the first CoT: 20 s; the other is expected to take as long
    bar.done([100], [Completion("x " * 60, 50, 60)])
    assert bar.eta() == (pytest.approx(20.0), False)
    assert bar.postfix().startswith("ETA 0:20, ")
    now[0] += 30.0
    bar.done([100], [Completion("y", 50, 60)])
    assert bar.eta() == (0.0, False) and bar.n == 6


def test_time_waiting_for_another_process_is_not_charged_to_the_next_calls():
    now = [0.0]
    bar = Progress([8] * 3, "calls", False, clock=lambda: now[0])
    now[0] += 100.0
    bar.found([8])
    now[0] += 2.0
    bar.done([8], [Completion("1", 10, 1)])
    assert bar.eta() == (pytest.approx(2.0), False)


def test_hf_hands_over_each_batch_of_a_chunk_larger_than_its_batch(tmp_path, recorded):
    if not (data_dir() / "organisms" / "faithful" / "model.safetensors").is_file():
        pytest.skip("organism faithful not bundled")
    from faithcheck.backends import load_backend
    from faithcheck.tasks import get_task

    task = get_task("modular")
    items = task.load(16, 0).items
    reqs = [GenerationRequest(task.prompt(i), max_new_tokens=24, stop=task.cot_stop) for i in items]
    backend = load_backend("organism:faithful", ["batch_size=4"])
    try:
        handed: list[list[int]] = []
        backend.generate_stream(reqs[:12], lambda pairs: handed.append([i for i, _ in pairs]))
        batches = [h for h in handed if h]
        assert len(batches) == 3 and sorted(i for h in batches for i in h) == list(range(12))
        # through the engine: a first chunk of one batch, then one chunk of 12 handed over in 3 batches
        Engine(backend, CallCache(tmp_path / "c.sqlite"), chunk_size=12, progress=True).run(reqs)
    finally:
        backend.close()
    assert recorded == [[4, 8, 12, 16]]
