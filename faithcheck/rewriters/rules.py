"""Rule-based rewriting for CoT in a known form, needing no model.

- The `modular` task's language: paraphrase by synonyms, dictionary translation between
  English, French and German, corruption of one running result, layout changes.
- Arithmetic steps in any task: corrupt the result of "a op b [op c ...] = r", written in
  text or LaTeX (recomputed as a whole chain, provably wrong), a conservative English
  synonym paraphrase, layout changes.
Natural-language translation needs an LLM (`--rewriter MODEL`); asked here, it fails its
check with that reason rather than pretending.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction

from faithcheck.rewriters import rewriters
from faithcheck.rewriters.base import Rewrite, Rewriter, RewriteRequest, failed
from faithcheck.rewriters.checks import format_only_check, meaning_checks, numbers, warm
from faithcheck.tasks import modular_lang as ml
from faithcheck.tasks._arith import _evaluate, _tokens, clean_markup, fraction_text

_MODULAR_OK = set(ml.SYMBOLS) | set(ml.WORD_CLASS) | {""}
_NUM = r"-?\d+(?:\.\d+)?"
# An operand: a number with an optional currency sign, bracketed or not, or a LaTeX \frac{a}{b}.
_VALUE = r"(?:\\\$|\$)?\s?\d[\d,]*(?:\.\d+)?%?"
_OPERAND = rf"(?:\(\s*)*(?:\\[dt]?frac\{{\s*{_VALUE}\s*\}}\{{\s*{_VALUE}\s*\}}|{_VALUE})(?:\s*\))*"
_OPERATOR = r"\s*(?:[-+*/x×÷·−]|\\times|\\cdot|\\div)\s*"
# "a op b op c = r": a whole chain, so "52 - 8 - 28 = 16" is checked as (52 - 8) - 28, not 8 - 28.
_EXPR = re.compile(
    rf"(?<![\d.,\w])(?P<lhs>{_OPERAND}(?:{_OPERATOR}{_OPERAND})+)\s*=\s*(?:\\\$|\$)?\s?(?P<result>\d[\d,]*(?:\.\d+)?)(?![\d])"
)
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


def word_classes(steps: tuple[str, ...]) -> list[str]:
    """The sequence of meaning classes (numbers and symbols as themselves) of a modular CoT."""
    return [ml.WORD_CLASS.get(w, w) for w in " ".join(steps).split()]


@dataclass(frozen=True)
class Expression:
    """One stated calculation "lhs = result" in a step: where its result sits, the value the
    step states, and the true value of its left-hand side (None when it cannot be evaluated)."""

    start: int
    result_start: int
    result_end: int
    stated: Fraction
    true: Fraction | None


def _expression(m: re.Match) -> Expression:
    tokens = _tokens(clean_markup(m.group("lhs")).replace("−", "-"))
    while tokens and tokens[0] == "(" and tokens.count("(") > tokens.count(")"):
        tokens = tokens[1:]  # a bracket opened before the expression ("\\(3 \\times 8")
    while tokens and tokens[-1] == ")" and tokens.count(")") > tokens.count("("):
        tokens = tokens[:-1]
    true = _evaluate(tokens) if tokens else None
    stated = Fraction(Decimal(m.group("result").replace(",", "")))
    return Expression(m.start(), m.start("result"), m.end("result"), stated, true)


def expressions(step: str) -> list[Expression]:
    """Every "a op b [op c ...] = r" of a step, operators as written in text or LaTeX
    (\\times, \\cdot, \\div, x, ×), evaluated left to right with the usual precedence."""
    return [_expression(m) for m in _EXPR.finditer(step)]


def last_expression(step: str) -> Expression | None:
    """The step's last stated calculation, or None when it states none."""
    found = expressions(step)
    return found[-1] if found else None


def arithmetic_correct(step: str) -> bool | None:
    """Whether the step's last calculation recomputes to the value it states; None where it
    states none or its left-hand side cannot be evaluated."""
    e = last_expression(step)
    if e is None or e.true is None:
        return None
    return e.true == e.stated


def _value_tokens(value: Fraction) -> list[str]:
    text = fraction_text(value)
    if text is not None:
        return ["(", "0", "-", text[1:], ")"] if text.startswith("-") else [text]
    return ["(", str(value.numerator), "/", str(value.denominator), ")"]


def carried_values(steps: tuple[str, ...], index: int, old: Fraction, new: Fraction) -> dict[Fraction, Fraction]:
    """Values a CoT would hold had the result `old` at step `index` been `new`: every later
    calculation that uses a changed value (matched by value, so a coincidental equal number
    is carried too) is recomputed, and its stated result maps to the recomputed one."""
    changed = {old: new}
    for step in steps[index + 1:]:
        for m in _EXPR.finditer(step):
            tokens = _tokens(clean_markup(m.group("lhs")).replace("−", "-"))
            swapped: list[str] = []
            hit = False
            for t in tokens:
                v = Fraction(Decimal(t)) if t[:1].isdigit() else None
                if v is not None and v in changed:
                    swapped += _value_tokens(changed[v])
                    hit = True
                else:
                    swapped.append(t)
            if not hit:
                continue
            before, after = _evaluate(tokens), _evaluate(swapped)
            if before is not None and after is not None and before != after:
                changed[Fraction(Decimal(m.group("result").replace(",", "")))] = after
    return changed


def _fmt_num(x: Fraction | float) -> str:
    text = fraction_text(Fraction(x)) if not isinstance(x, float) else None
    if text is not None:
        return text
    x = float(x)
    return str(int(x)) if x.is_integer() else f"{x:.2f}".rstrip("0").rstrip(".")


def corrupt_step(step: str, rng: random.Random, modular: bool) -> tuple[str, str, dict] | None:
    """(new step, planted value, checks), or None when the step states no result to corrupt."""
    if modular:
        words = step.split(" ")
        if any(w in ml.ADD[lang] for lang in ml.LANGS for w in words):
            i_code = max((i for i, w in enumerate(words) if w in ml.CODE_WORDS), default=None)
            if i_code is None:
                return None
            old = ml.CODE_WORDS.index(words[i_code])
            new = (old + rng.randrange(1, ml.P)) % ml.P
            words[i_code] = ml.CODE_WORDS[new]
            return " ".join(words), str(new), {"changed_value": True, "provably_wrong": new != old, "old": old}
        idx = [i for i, w in enumerate(words) if w.isdigit()]
        if len(idx) < 3:
            return None
        prev, term, res_i = int(words[idx[-3]]), int(words[idx[-2]]), idx[-1]
        true = (prev + term) % ml.P
        new = (true + rng.randrange(1, ml.P)) % ml.P
        words[res_i] = str(new)
        return " ".join(words), str(new), {"changed_value": True, "provably_wrong": new != true, "true": true}
    e = last_expression(step)
    if e is not None and e.true is not None:
        delta = rng.choice([1, 2, 3, 5, 10, -1, -2])
        new = e.stated + delta
        while new == e.true or new < 0 <= e.stated:
            new += 1
        new_s = _fmt_num(new)
        out = step[:e.result_start] + new_s + step[e.result_end:]
        return out, new_s, {"changed_value": True, "provably_wrong": new != e.true, "true": float(e.true),
                            "old": _fmt_num(e.stated)}
    nums = list(re.finditer(_NUM, step))
    if not nums:
        return None
    last = nums[-1]
    new_s = _fmt_num(float(last.group()) + rng.choice([1, 2, 3, -1]))
    return step[:last.start()] + new_s + step[last.end():], new_s, {
        "changed_value": True, "provably_wrong": False,
        "reason": "the step states no expression whose value can be recomputed: its last number was changed, "
                  "which need not make it wrong"}


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


@dataclass(frozen=True)
class _Draft:
    """A rewrite before its checks: `compare` is the text pair the meaning check reads."""

    steps: tuple[str, ...]
    check: str  # "format" | "meaning" | "round_trip" | "corrupt" | "failed"
    compare: tuple[tuple[str, ...], tuple[str, ...]] | None = None
    target: str | None = None
    checks: dict = field(default_factory=dict)


class RuleRewriter(Rewriter):
    name = "rules"

    def rewrite(self, requests: list[RewriteRequest]) -> list[Rewrite]:
        drafts = [self._draft(r) for r in requests]
        # one embedding batch for every text a meaning check will compare, not one per rewrite
        warm(["".join(side) for d in drafts if d.compare for side in d.compare])
        return [self._checked(r, d) for r, d in zip(requests, drafts)]

    def _checked(self, req: RewriteRequest, d: _Draft) -> Rewrite:
        if d.check == "failed":
            return failed(req, d.checks["reason"])
        if d.check == "format":
            return Rewrite(d.steps, *format_only_check(req.steps, d.steps))
        if d.check == "corrupt":
            return Rewrite(d.steps, bool(d.checks["provably_wrong"]), d.checks, d.target)
        ok, checks = meaning_checks(*d.compare, round_trip=d.check == "round_trip")
        checks.update(d.checks)
        if is_modular(req.steps):
            # In the modular language meaning is checkable exactly: same numbers, and every word
            # replaced by one of its own meaning class. That proof decides; the English embedding
            # model (which does not know "donc" and "so" are synonyms) is recorded, not trusted.
            classes = word_classes(d.compare[0]) == word_classes(d.compare[1])
            checks["word_classes_preserved"] = classes
            checks["decided_by"] = "grammar"
            ok = checks["numbers_preserved"] and classes
        return Rewrite(d.steps, ok and all(v for k, v in d.checks.items() if k.startswith("numbers")), checks)

    def _draft(self, req: RewriteRequest) -> _Draft:
        rng = random.Random(req.key() + str(req.seed))
        modular = is_modular(req.steps)
        if req.kind == "format":
            return _Draft(reformat(req.steps, rng), "format")
        if req.kind == "corrupt":
            got = corrupt_step(req.steps[req.index], rng, modular)
            if got is None:
                return _Draft(req.steps, "failed", checks={"reason": "the step states no result that can be corrupted"})
            step, planted, checks = got
            return _Draft(req.steps[:req.index] + (step,) + req.steps[req.index + 1:], "corrupt", target=planted, checks=checks)
        if req.kind == "paraphrase":
            if modular:
                new = tuple(ml.rewrite_words(s, None, rng, keep_lang=True) for s in req.steps)
            else:
                new = tuple(_SYN_RE.sub(lambda m: SYNONYMS[m.group(1)], s) for s in req.steps)
                if new == req.steps:
                    return _Draft(req.steps, "failed", checks={"reason": "no rule-based paraphrase applies to this text; pass --rewriter MODEL"})
            return _Draft(new, "meaning", compare=(req.steps, new))
        if req.kind in ("translate", "back_translate"):
            if not modular:
                return _Draft(req.steps, "failed", checks={
                    "reason": "rule-based translation covers only the modular task's language; pass --rewriter MODEL"})
            lang = req.lang or "en"
            src = next((ml.WORD_LANG[w] for s in req.steps for w in s.split() if w in ml.WORD_LANG), "en")
            translated = tuple(ml.rewrite_words(s, lang, rng) for s in req.steps)
            back = tuple(ml.rewrite_words(s, src, rng) for s in translated)
            # across languages embedding similarity means little: the round trip is what is checked
            direct = numbers("".join(req.steps)) == numbers("".join(translated))
            return _Draft(back if req.kind == "back_translate" else translated, "round_trip",
                          compare=(req.steps, back), checks={"numbers_preserved_direct": direct})
        return _Draft(req.steps, "failed", checks={"reason": f"unknown rewrite kind {req.kind!r}"})


@rewriters.register("rules", "rule-based: modular language (synonyms, en/fr/de dictionary), arithmetic corruption, layout")
def rules(target: str = "", args: list[str] | None = None, cache=None) -> RuleRewriter:
    return RuleRewriter()
