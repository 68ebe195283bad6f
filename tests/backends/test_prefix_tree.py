"""Prefix sharing: the planner computes every prefix-tree node once, and the packed path of
the hf backend gives what plain left-padded batches give (greedy tokens identical, logits
within float tolerance) on an organism, an untrained GPT-2 and gemma-3-270m."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from faithcheck.backends import load_backend
from faithcheck.backends.hf import HFBackend
from faithcheck.backends.prefix_tree import Extend, Release, Row, Trie, plan
from faithcheck.engine.engine import Engine
from faithcheck.errors import BadInput
from faithcheck.records import GenerationRequest
from faithcheck.tasks import get_task

# --- the planner (pure Python) ----------------------------------------------------------


def random_rows(seed: int, n: int = 60) -> list[list[int]]:
    """Rows that share prefixes at random depths, end inside one another and repeat."""
    rng = random.Random(seed)
    trunks = [[rng.randrange(50) for _ in range(rng.randint(1, 30))] for _ in range(4)]
    rows = []
    for _ in range(n):
        base = list(rng.choice(trunks))
        cut = rng.randint(1, len(base))
        rows.append(base[:cut] + [rng.randrange(50) for _ in range(rng.randint(0, 8))])
    rows.append(list(rows[0]))  # an exact duplicate
    return rows


def distinct_prefixes(rows: list[list[int]]) -> int:
    return len({tuple(r[:k]) for r in rows for k in range(1, len(r) + 1)})


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("limits", [(8, 3), (40, 10), (10_000, 1_000)])
def test_plan_computes_every_node_once_and_serves_every_request_once(seed, limits):
    rows = random_rows(seed)
    trie = Trie(rows)
    assert len(trie) == distinct_prefixes(rows)  # the limit, counted independently
    max_tokens, max_requests = limits
    computed: list[int] = []
    served: list[int] = []
    live: set[int] = {0}
    for step in plan(trie, max_tokens, max_requests):
        if isinstance(step, Extend):
            assert step.parent in live
            for a, b in zip(step.nodes, step.nodes[1:]):
                assert trie.parent[b] == a  # a chain
            computed.extend(step.nodes)
            live.add(step.handle)
        elif isinstance(step, Release):
            live.remove(step.handle)
        else:
            assert isinstance(step, Row) and step.prefix in live
            nodes = [n for r in step.roots for n in trie.subtree(r)]
            assert len(nodes) <= max_tokens and len(step.requests) <= max_requests
            for r in step.requests:  # each request's end lies in the row, or is the prefix's end
                end = trie.end_node[r]
                assert end == step.prefix_node or end in nodes
            # childless nodes are computed by decoding (the last prompt token), not packed
            computed.extend(n for n in nodes if trie.children[n])
            computed.extend(n for n in nodes if not trie.children[n])
            served.extend(step.requests)
    assert live == {0}
    assert sorted(computed) == list(range(len(trie)))
    assert sorted(served) == list(range(len(rows)))


def test_trie_rejects_an_empty_row():
    with pytest.raises(ValueError, match="row 1 is empty"):
        Trie([[1, 2], []])


# --- packed path == plain path -------------------------------------------------------------


def both_ways(backend: HFBackend, requests: list[GenerationRequest]):
    runner = backend.tree
    assert runner is not None, "prefix sharing should be on for this model"
    try:
        backend.tree = None
        plain = backend.generate(requests)
    finally:
        backend.tree = runner
    backend.counters.clear()
    shared = backend.generate(requests)
    assert backend.counters["tree_fallbacks"] == 0, "the prefix tree failed and plain batches answered"
    return plain, shared


def audit_like_requests(backend: HFBackend, task_name: str, n_items: int, cot_tokens: int, k_cuts: int = 6):
    """Baseline CoTs, then forced answers at cut points and continuations from them, as an audit asks."""
    task = get_task(task_name)
    items = task.load(n_items, 0).items
    base = [GenerationRequest(task.prompt(i), "", cot_tokens, task.cot_stop) for i in items]
    traces = backend.generate(base)
    variants = []
    for req, trace in zip(base, traces):
        words = trace.text.split(" ")
        for j in range(k_cuts + 1):
            cut = " ".join(words[: round(len(words) * j / k_cuts)])
            variants.append(GenerationRequest(req.prompt, task.force_answer(cut), task.max_answer_tokens, ("\n",)))
            if 0 < j < k_cuts:
                variants.append(GenerationRequest(req.prompt, cut, cot_tokens // 2, task.cot_stop))
    return base, variants


def assert_logits_close(backend: HFBackend, requests: list[GenerationRequest], rtol: float):
    rows = [backend.encode(backend.render(r.prompt, r.prefill)) for r in requests]
    packed = backend.next_token_logits(rows, backend.tree)
    plain = backend.next_token_logits(rows, None)
    for a, b in zip(packed, plain):
        assert torch.allclose(a, b, atol=rtol * float(b.abs().max()), rtol=0)
        assert int(a.argmax()) == int(b.argmax())


@pytest.fixture
def faithful(organism_path) -> HFBackend:
    return load_backend(f"hf:{organism_path('faithful')}")


def test_organism_packed_equals_plain(faithful):
    base, variants = audit_like_requests(faithful, "modular", 12, 66)
    for requests in (base, variants):
        plain, shared = both_ways(faithful, requests)
        assert shared == plain
    # every distinct prefix once: far fewer tokens than the plain batches computed
    assert faithful.counters["packed_passes"] >= 1
    assert faithful.counters["tokens_computed"] < 0.6 * faithful.counters["naive_tokens"]
    assert_logits_close(faithful, variants, 1e-4)


def test_untrained_model_packed_equals_plain(tiny_gpt2_dir: Path):
    """Wide random weights: logits far from ties, and CoTs that wander, so lengths vary."""
    tiny = load_backend(f"hf:{tiny_gpt2_dir}", ["batch_size=3", "pack_tokens=24"])
    base, variants = audit_like_requests(tiny, "modular", 5, 30, k_cuts=4)
    for requests in (base, variants):
        plain, shared = both_ways(tiny, requests)
        assert shared == plain
    assert tiny.counters["packed_passes"] > 3  # small limits: the plan had to split and extend
    assert_logits_close(tiny, variants, 1e-4)


def test_gemma_packed_equals_plain_past_its_sliding_window(gemma_backend):
    """logical_deduction's 3-shot prompt is ~800 tokens: past gemma's 512-token sliding window,
    so the windowed layers' own mask is exercised."""
    task = get_task("bbh:logical_deduction_three_objects")
    assert len(gemma_backend.encode(task.prompt(task.load(1, 0).items[0]))) > gemma_backend.model.config.sliding_window
    base, variants = audit_like_requests(gemma_backend, task.name, 2, 24, k_cuts=4)
    plain, shared = both_ways(gemma_backend, variants)
    assert shared == plain
    assert gemma_backend.counters["tokens_computed"] < 0.4 * gemma_backend.counters["naive_tokens"]
    assert_logits_close(gemma_backend, variants[:6], 1e-3)


# --- options and fallbacks -----------------------------------------------------------------


def test_prefix_sharing_off_uses_plain_batches(tiny_gpt2_dir):
    backend = load_backend(f"hf:{tiny_gpt2_dir}", ["prefix_sharing=off"])
    assert backend.tree is None
    backend.generate([GenerationRequest("so", "", 4)])
    assert backend.counters["packed_passes"] == 0


def test_unsupported_model_falls_back_with_a_warning_or_fails_when_required(tiny_gpt2_dir, monkeypatch):
    import faithcheck.backends.hf_tree as hf_tree

    monkeypatch.setattr(hf_tree, "unsupported_reason", lambda model: "attention implementation 'flash' takes no custom 4D mask")
    with pytest.warns(UserWarning, match="prefix sharing is off .*flash"):
        backend = load_backend(f"hf:{tiny_gpt2_dir}", [])
    assert backend.tree is None
    with pytest.raises(BadInput, match="prefix_sharing=on.*flash"):
        load_backend(f"hf:{tiny_gpt2_dir}", ["prefix_sharing=on"])


def test_a_failing_tree_falls_back_to_plain_batches(tiny_gpt2_dir, monkeypatch):
    backend = load_backend(f"hf:{tiny_gpt2_dir}", [])
    requests = [GenerationRequest("compute ( 3 + 4 ) mod 23 . answer", p, 6) for p in ("", " so", " so 3")]
    runner = backend.tree
    backend.tree = None
    expected = backend.generate(requests)
    backend.tree = runner

    def broken(*args, **kwargs):
        raise RuntimeError("kernel refused the mask")

    monkeypatch.setattr(runner, "forward", broken)
    with pytest.warns(UserWarning, match="prefix-tree batch failed .*kernel refused"):
        assert backend.generate(requests) == expected
    assert backend.counters["tree_fallbacks"] == 1


def test_pack_tokens_must_be_positive(tiny_gpt2_dir):
    with pytest.raises(BadInput, match="pack_tokens=-1"):
        load_backend(f"hf:{tiny_gpt2_dir}", ["pack_tokens=-1"])


def test_engine_chunks_follow_the_backend(tiny_gpt2_dir):
    shared = load_backend(f"hf:{tiny_gpt2_dir}", ["batch_size=4"])
    plain = load_backend(f"hf:{tiny_gpt2_dir}", ["batch_size=4", "prefix_sharing=off"])
    assert Engine(shared, None, progress=False).chunk_size == 64
    assert Engine(plain, None, progress=False).chunk_size == 16
    assert Engine(plain, None, chunk_size=5, progress=False).chunk_size == 5


def test_a_shared_prefix_is_kept_for_the_next_batch(tiny_gpt2_dir):
    """The few-shot prompt every stage of an audit repeats is computed once per backend."""
    backend = load_backend(f"hf:{tiny_gpt2_dir}", [])
    shots = " ".join(f"compute ( {i} + {i + 1} ) mod 23 . answer {2 * i + 1} ." for i in range(6))
    first = [GenerationRequest(shots + f" compute ( {a} + 2 ) mod 23 .", "", 5) for a in range(4)]
    second = [GenerationRequest(shots + f" compute ( {a} + 9 ) mod 23 .", " so", 5) for a in range(4)]
    plain, shared = both_ways(backend, first)
    assert shared == plain and backend.counters["tokens_reused"] == 0
    plain, shared = both_ways(backend, second)
    assert shared == plain
    assert backend.counters["tokens_reused"] >= len(backend.encode(shots)) - 1


def test_eager_attention_takes_the_packed_path_too(tiny_gpt2_dir):
    backend = load_backend(f"hf:{tiny_gpt2_dir}", ["batch_size=4"])
    backend.model.set_attn_implementation("eager")
    assert backend.model.config._attn_implementation == "eager"
    _, variants = audit_like_requests(backend, "modular", 3, 20, k_cuts=3)
    plain, shared = both_ways(backend, variants)
    assert shared == plain and backend.counters["packed_passes"] >= 1
    assert_logits_close(backend, variants, 1e-4)
