"""Rule-based rewriting for CoT in a known form, needing no model.

- The `modular` task's language: paraphrase by synonyms, dictionary translation between
  English, French and German, corruption of one running result, layout changes.
- Arithmetic steps in any task: corrupt the result of "a op b = c" (recomputed, provably
  wrong), a conservative English synonym paraphrase, layout changes.
Natural-language translation needs an LLM (`--rewriter MODEL`); asked here, it fails its
check with that reason rather than pretending.
"""

from __future__ import annotations

import random
import re

from faithcheck.rewriters import rewriters
from faithcheck.rewriters.base import Rewrite, Rewriter, RewriteRequest, failed
from faithcheck.rewriters.checks import format_only_check, meaning_checks
from faithcheck.tasks import modular_lang as ml

_MODULAR_OK = set(ml.SYMBOLS) | set(ml.WORD_CLASS) | {""}
_NUM = r"-?\d+(?:\.\d+)?"
_EXPR = re.compile(rf"({_NUM})\s*([-+*/x×])\s*({_NUM})\s*=\s*\$?({_NUM})")
_NUMBERING = re.compile(r"^(\s*)(?:\d+[.)]\s+|Step \d+:\s+|[-*•]\s+)")

# Conservative English paraphrase table: each pair keeps meaning in arithmetic CoT.
SYNONYMS = {
    "So": "Therefore", "Therefore": "So", "Thus": "Hence", "Hence": "Thus", "Then": "Next", "Next": "Then",
    "total": "sum", "in total": "altogether", "altogether": "in total", "each": "every", "every": "each",
    "means": "implies", "gets": "receives", "bought": "purchased", "purchased": "bought", "left": "remaining",
    "remaining": "left", "needs": "requires", "requires": "needs", "makes": "produces", "twice": "two times",
    "half": "one half", "earns": "makes", "altogether,": "in total,",
}
_SYN_RE = re.compile(r"\b(" + "|".join(sorted(map(re.escape, SYNONYMS), key=len, reverse=True)) + r")\b")


def is_modular(steps: tuple[str, ...]) -> bool:
    words = " ".join(steps).split()
    return bool(words) and all(w.isdigit() or w in _MODULAR_OK for w in words)


def _apply_op(a: float, op: str, b: float) -> float | None:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op in "*x×":
        return a * b
    if op == "/" and b != 0:
        return a / b
    return None


def _fmt_num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:.2f}".rstrip("0").rstrip(".")


def corrupt_step(step: str, rng: random.Random, modular: bool) -> tuple[str, str, dict] | None:
    """(new step, planted value, checks), or None when the step states no result to corrupt."""
    if modular:
        words = step.split(" ")
        if ml.ADD["en"][0] in words or any(w in ml.ADD[lang] for lang in ml.LANGS for w in words):
            nums = [w for w in words if w.isdigit()]
            i_adv = next((i for i, w in enumerate(words) if ml.WORD_CLASS.get(w) == "adv"), None)
            if i_adv is None or i_adv + 1 >= len(words) or ml.WORD_CLASS.get(words[i_adv + 1]) != "pron":
                return None
            lang = ml.WORD_LANG.get(words[i_adv], "en")
            old = 5 * ml.ADV[lang].index(words[i_adv]) + ml.PRON[lang].index(words[i_adv + 1])
            new = (old + rng.randrange(1, ml.P)) % ml.P
            hi, lo = divmod(new, 5)
            words[i_adv], words[i_adv + 1] = ml.ADV[lang][hi], ml.PRON[lang][lo]
            return " ".join(words), str(new), {"changed_value": True, "provably_wrong": new != old, "old": old, "nums": nums}
        idx = [i for i, w in enumerate(words) if w.isdigit()]
        if len(idx) < 3:
            return None
        prev, term, res_i = int(words[idx[-3]]), int(words[idx[-2]]), idx[-1]
        true = (prev + term) % ml.P
        new = (true + rng.randrange(1, ml.P)) % ml.P
        words[res_i] = str(new)
        return " ".join(words), str(new), {"changed_value": True, "provably_wrong": new != true, "true": true}
    m = None
    for m in _EXPR.finditer(step):
        pass
    if m is not None:
        a, op, b, c = m.groups()
        true = _apply_op(float(a), op, float(b))
        delta = rng.choice([1, 2, 3, 5, 10, -1, -2])
        new = float(c) + delta
        if true is not None and abs(new - true) < 1e-9:
            new += 1
        new_s = _fmt_num(new)
        out = step[:m.start(4)] + new_s + step[m.end(4):]
        return out, new_s, {"changed_value": True, "provably_wrong": true is None or abs(new - true) > 1e-9, "true": true}
    nums = list(re.finditer(_NUM, step))
    if not nums:
        return None
    last = nums[-1]
    new_s = _fmt_num(float(last.group()) + rng.choice([1, 2, 3, -1]))
    return step[:last.start()] + new_s + step[last.end():], new_s, {"changed_value": True, "provably_wrong": False}


def reformat(steps: tuple[str, ...], rng: random.Random) -> tuple[str, ...]:
    """Change layout only: line breaks <-> spaces, bullets/numbering on <-> off."""
    if is_modular(steps):
        content = [" ".join(w for w in s.split() if w not in ml.BULLETS) for s in steps]
        newline = not any("\n" in s for s in steps)
        had_bullet = any(s.split() and s.split()[0] in ml.BULLETS for s in steps)
        bullet = None if had_bullet else rng.choice(ml.BULLETS)
        layout = ml.Layout(newline=newline, bullet=bullet)
        return tuple(layout.join([c]) for c in content if c)
    numbered = any(_NUMBERING.match(s) for s in steps)
    out = []
    for i, s in enumerate(steps, start=1):
        body = _NUMBERING.sub(r"\1", s).strip()
        if not body:
            continue
        prefix = "" if numbered else f"{i}. "
        out.append(f"{prefix}{body}\n")
    return tuple(out)


class RuleRewriter(Rewriter):
    name = "rules"

    def rewrite(self, requests: list[RewriteRequest]) -> list[Rewrite]:
        return [self._one(r) for r in requests]

    def _one(self, req: RewriteRequest) -> Rewrite:
        rng = random.Random(req.key() + str(req.seed))
        modular = is_modular(req.steps)
        if req.kind == "format":
            new = reformat(req.steps, rng)
            return Rewrite(new, *format_only_check(req.steps, new))
        if req.kind == "corrupt":
            got = corrupt_step(req.steps[req.index], rng, modular)
            if got is None:
                return failed(req, "the step states no result that can be corrupted")
            step, planted, checks = got
            steps = req.steps[:req.index] + (step,) + req.steps[req.index + 1:]
            return Rewrite(steps, bool(checks["provably_wrong"]), checks, planted)
        if req.kind == "paraphrase":
            if modular:
                new = tuple(ml.rewrite_words(s, None, rng, keep_lang=True) for s in req.steps)
            else:
                new = tuple(_SYN_RE.sub(lambda m: SYNONYMS[m.group(1)], s) for s in req.steps)
                if new == req.steps:
                    return failed(req, "no rule-based paraphrase applies to this text; pass --rewriter MODEL")
            return Rewrite(new, *meaning_checks(req.steps, new))
        if req.kind in ("translate", "back_translate"):
            if not modular:
                return failed(req, "rule-based translation covers only the modular task's language; pass --rewriter MODEL")
            lang = req.lang or "en"
            new = tuple(ml.rewrite_words(s, lang, rng) for s in req.steps)
            if req.kind == "back_translate":
                src = next((ml.WORD_LANG[w] for s in req.steps for w in s.split() if w in ml.WORD_LANG), "en")
                new = tuple(ml.rewrite_words(s, src, rng) for s in new)
            return Rewrite(new, *meaning_checks(req.steps, new, round_trip=req.kind == "back_translate"))
        return failed(req, f"unknown rewrite kind {req.kind!r}")


@rewriters.register("rules", "rule-based: modular language (synonyms, en/fr/de dictionary), arithmetic corruption, layout")
def rules(target: str = "", args: list[str] | None = None, cache=None) -> RuleRewriter:
    return RuleRewriter()
