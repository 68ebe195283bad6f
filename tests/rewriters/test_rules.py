"""The rule-based rewriter on real CoT: GSM8K worked solutions, BBH exemplars, the modular language."""

from __future__ import annotations

import json
import random

import pytest

from faithcheck.paths import shared_datasets
from faithcheck.rewriters import load_rewriter
from faithcheck.rewriters.base import RewriteRequest
from faithcheck.rewriters.checks import numbers
from faithcheck.rewriters.rules import _EXPR, last_expression
from faithcheck.tasks import modular_lang as ml
from faithcheck.tasks.base import sentence_steps

N_SOLUTIONS = 150
N_PARAPHRASED = 30
# Every step matched as "a op b = c" gets a new c recomputed against a op b, so the only
# way to miss is a result that the expression does not determine (a typo in GSM8K's own
# arithmetic, where the "true" value is the recomputed one anyway). 0.95 leaves room for
# those while a corruption that often lands on the true value would fail.
CORRUPT_FLOOR = 0.95


@pytest.fixture(scope="module")
def gsm8k_solutions() -> list[tuple[str, ...]]:
    from faithcheck.tasks.gsm8k import worked_solution

    path = shared_datasets() / "gsm8k" / "train.jsonl"
    if not path.is_file():
        pytest.skip(f"GSM8K not found at {path}")
    with path.open() as f:
        rows = [json.loads(line) for _, line in zip(range(N_SOLUTIONS), f)]
    return [tuple(sentence_steps(worked_solution(r)[0])) for r in rows]


@pytest.fixture(scope="module")
def rules():
    return load_rewriter("rules")


def _arith_requests(solutions: list[tuple[str, ...]]) -> list[RewriteRequest]:
    return [RewriteRequest("corrupt", s, index=i) for s in solutions for i, step in enumerate(s) if _EXPR.search(step)]


def _recomputed_wrong(step: str) -> bool:
    e = last_expression(step)
    return e is not None and e.true is not None and e.true != e.stated


def test_corrupt_gsm8k_arithmetic_steps_are_provably_wrong(rules, gsm8k_solutions):
    reqs = _arith_requests(gsm8k_solutions)
    assert len(reqs) >= 100, f"only {len(reqs)} arithmetic steps in {len(gsm8k_solutions)} solutions"
    out = rules.rewrite(reqs)
    share = sum(r.ok for r in out) / len(out)
    print(f"GSM8K: {sum(r.ok for r in out)}/{len(out)} arithmetic steps corrupted provably wrong ({share:.3f})")
    assert share >= CORRUPT_FLOOR, f"corruption provably wrong on {share:.3f} of arithmetic steps, floor {CORRUPT_FLOOR}"
    for req, rw in zip(reqs, out):
        if rw.ok:
            new_step = rw.steps[req.index]
            assert _recomputed_wrong(new_step), f"marked wrong but recomputes right: {new_step!r}"
            assert rw.target is not None and rw.target in new_step
            assert rw.steps[:req.index] == req.steps[:req.index] and rw.steps[req.index + 1:] == req.steps[req.index + 1:]


def test_paraphrase_gsm8k_preserves_numbers(rules, gsm8k_solutions):
    solutions = gsm8k_solutions[:N_PARAPHRASED]  # each one runs the embedding model; keep it light
    out = rules.rewrite([RewriteRequest("paraphrase", s) for s in solutions])
    applied = [r for r in out if "reason" not in r.checks]
    print(f"GSM8K paraphrase: rules apply to {len(applied)}/{len(out)}; ok {sum(r.ok for r in applied)}")
    assert len(applied) >= len(out) // 2
    for src, rw in zip(solutions, out):
        if "reason" in rw.checks:
            assert not rw.ok
            continue
        assert numbers("".join(src)) == numbers(rw.text)
        assert rw.checks["numbers_preserved"] and rw.checks["changed"]
    assert sum(r.ok for r in applied) >= 0.9 * len(applied)


def test_format_gsm8k_is_format_only(rules, gsm8k_solutions):
    for src, rw in zip(gsm8k_solutions, rules.rewrite([RewriteRequest("format", s) for s in gsm8k_solutions])):
        assert rw.ok and rw.checks["format_only"] and rw.checks["changed"], (src, rw.steps)


def test_bbh_exemplars(rules):
    from faithcheck.tasks import get_task

    task = get_task("bbh:multistep_arithmetic_two")
    if not hasattr(task, "exemplars"):
        pytest.skip("BBH task has no exemplars attribute")
    try:
        exemplars = task.exemplars
    except FileNotFoundError as e:
        pytest.skip(f"BBH prompts absent: {e}")
    steps = [tuple(task.split_steps(e.completion)) for e in exemplars]
    reqs = _arith_requests(steps)
    assert reqs, "no arithmetic step in the BBH exemplars"
    out = rules.rewrite(reqs)
    print(f"BBH: {sum(r.ok for r in out)}/{len(out)} arithmetic steps corrupted provably wrong")
    assert sum(r.ok for r in out) >= CORRUPT_FLOOR * len(out)
    for rw in rules.rewrite([RewriteRequest("format", s) for s in steps]):
        assert rw.ok and rw.checks["format_only"]


def _modular_cot(seed: int, encoded: bool = False, lang: str = "en") -> tuple[ml.Problem, tuple[str, ...]]:
    rng = random.Random(seed)
    problem = ml.Problem(tuple(rng.randrange(ml.P) for _ in range(ml.N_TERMS)), lang=lang)
    texts = ml.encoded_cot_steps(problem) if encoded else ml.faithful_cot_steps(problem, lang, rng)
    return problem, tuple(ml.Layout().join([t]) for t in texts)


def _classes(text: str) -> list[str]:
    return [ml.WORD_CLASS.get(w, "num" if w.isdigit() else w) for w in text.split()]


@pytest.mark.parametrize("seed", range(5))
def test_modular_paraphrase_and_translation_keep_numbers_and_classes(rules, seed):
    _, steps = _modular_cot(seed)
    reqs = [RewriteRequest("paraphrase", steps), RewriteRequest("translate", steps, lang="fr"),
            RewriteRequest("translate", steps, lang="de"), RewriteRequest("back_translate", steps, lang="de")]
    for req, rw in zip(reqs, rules.rewrite(reqs)):
        if req.kind != "translate":
            assert rw.ok, (req.kind, rw.checks)
        assert rw.checks["numbers_preserved"]
        assert _classes("".join(steps)) == _classes(rw.text), (req.kind, rw.text)
        assert [ml.step_numbers(s) for s in steps] == [ml.step_numbers(s) for s in rw.steps]
    fr = rules.rewrite([reqs[1]])[0]
    assert any(ml.WORD_LANG.get(w) == "fr" for w in fr.text.split())


@pytest.mark.parametrize("seed", range(10))
def test_modular_corrupt_faithful_step_gives_wrong_running_result(rules, seed):
    problem, steps = _modular_cot(seed)
    k = seed % len(steps)
    rw = rules.rewrite([RewriteRequest("corrupt", steps, index=k)])[0]
    assert rw.ok and rw.checks["provably_wrong"]
    prev, term, result = ml.step_numbers(rw.steps[k])
    assert result != (prev + term) % ml.P and result == int(rw.target)
    assert result != problem.running[k]


@pytest.mark.parametrize("seed", range(10))
def test_modular_corrupt_encoded_step_gives_different_code(rules, seed):
    problem, steps = _modular_cot(seed, encoded=True)
    k = seed % len(steps)
    rw = rules.rewrite([RewriteRequest("corrupt", steps, index=k)])[0]
    assert rw.ok
    decoded = ml.decode_encoded_step(rw.steps[k])
    assert decoded == int(rw.target) and decoded != problem.running[k]
    assert ml.step_numbers(rw.steps[k]) == ml.step_numbers(steps[k])  # the term is untouched; only the code moved


def test_modular_translation_passes_its_checks(rules):
    _, steps = _modular_cot(0)
    rw = rules.rewrite([RewriteRequest("translate", steps, lang="fr")])[0]
    assert rw.ok, rw.checks


def test_a_corruption_that_cannot_be_proven_wrong_says_why():
    """A step with a number but no expression to recompute: the number still changes, the
    rewrite is not counted as provably wrong, and its checks say why."""
    from faithcheck.rewriters.rules import corrupt_step

    step = "She has 12 apples in her basket."
    new, planted, checks = corrupt_step(step, random.Random(0), modular=False)
    assert new != step and planted in new and "12" not in new
    assert checks["provably_wrong"] is False and "recomputed" in checks["reason"]
    # a recomputable step carries no such reason: it is provably wrong
    _, _, ok = corrupt_step("She has 3 + 4 = 7 apples.", random.Random(0), modular=False)
    assert ok["provably_wrong"] is True and "reason" not in ok
