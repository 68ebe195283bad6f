"""Numbers and arithmetic in model text: canonical numbers, LaTeX and markdown reduced to plain
text, and the value a stated answer gives, an expression evaluated by a small parser of
+ - * / and brackets (nothing is executed) or refused when it cannot be trusted.

Shared by the answer extraction (tasks/_text.py) and the planted-mistake rules
(rewriters/rules.py), so both read "3.5 \\times 8 = 28" the same way.
"""

from __future__ import annotations

import random
import re
from decimal import Decimal, InvalidOperation
from fractions import Fraction

# A minus sign counts only when it cannot be a subtraction ("16-3" is 16 and 3, not -3).
NUMBER = re.compile(r"(?:(?<![\w)])-)?\$?\d[\d,]*(?:\.\d+)?")


# --- numbers ---------------------------------------------------------------------------

def normalise_number(text: str) -> str | None:
    """The canonical string of a number ("$1,200.00" -> "1200", "0.50" -> "0.5"), so that
    gold and parsed answers compare as strings; None when `text` is not a number."""
    s = text.strip().replace(",", "").replace("$", "").replace(" ", "")
    try:
        value = Decimal(s)
    except InvalidOperation:
        return None
    if not value.is_finite():
        return None
    out = format(value, "f")
    if "." in out:
        out = out.rstrip("0").rstrip(".")
    return "0" if out in ("-0", "") else out


def offset_number(gold: str, key: str) -> str | None:
    """gold plus a small nonzero offset, keeping a non-negative gold non-negative."""
    try:
        value = Decimal(gold)
    except InvalidOperation:
        return None
    offset = random.Random(key).choice((-3, -2, -1, 1, 2, 3))
    if value >= 0 and value + offset < 0:
        offset = -offset
    return normalise_number(str(value + offset))


def fraction_text(value: Fraction) -> str | None:
    """A fraction as a normalised decimal string, or None when it has no finite decimal form."""
    den = value.denominator
    for p in (2, 5):
        while den % p == 0:
            den //= p
    if den != 1:
        return None
    return normalise_number(str(Decimal(value.numerator) / Decimal(value.denominator)))


# --- LaTeX and markdown ----------------------------------------------------------------

_FRAC = re.compile(r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}")
_TEXT_CMD = re.compile(r"\\(?:text|textbf|mathrm|mathbf|textit|operatorname)\s*\{([^{}]*)\}")
_LATEX_SUBS = (
    (re.compile(r"\\times|\\cdot|\\ast|×|·"), " * "), (re.compile(r"\\div|÷"), " / "),
    (re.compile(r"\\left|\\right|\\[,;:! ]|\\quad|\\qquad"), " "), (re.compile(r"\{,\}"), ","),
    (re.compile(r"\\%"), "%"), (re.compile(r"\\\$"), "$"), (re.compile(r"\\[()\[\]]"), " "),
    (re.compile(r"\*\*|__"), " "), (re.compile(r"\\approx"), " = "), (re.compile(r"−|–"), "-"),
)


def clean_markup(text: str) -> str:
    """LaTeX and markdown reduced to plain text: `\\frac{a}{b}` -> (a)/(b), `\\times` -> *,
    `\\text{...}` -> its words, delimiters and bold markers dropped. Dollar signs stay
    (they are currency in GSM8K and `normalise_number` drops them)."""
    for _ in range(3):  # nested \frac / \text, a few levels
        new = _FRAC.sub(r"(\1)/(\2)", _TEXT_CMD.sub(r"\1", text))
        if new == text:
            break
        text = new
    for pattern, repl in _LATEX_SUBS:
        text = pattern.sub(repl, text)
    return text


# --- arithmetic answers ----------------------------------------------------------------

_TOKEN = re.compile(r"\s*(?:(\d[\d,]*(?:\.\d+)?|\.\d+)|([-+*/()=%]))")


_UNIT = re.compile(r"\s*[A-Za-z]+(?:\s+[A-Za-z]+)?(?=\s*[-+*/=]\s*\(?\s*\d)")


def _scan(text: str, units: bool = False) -> tuple[list[str], str]:
    """(tokens of the arithmetic expression that opens `text`: numbers, + - * / ( ) = %; the
    text after it). Dollar signs are dropped; "x" counts as times between two numbers; with
    `units`, a word or two between a number and the next operator ("1340 kg - 700 kg") is skipped."""
    s = re.sub(r"(?<=\d)\s*[x×]\s*(?=\$?\d)", " * ", text.replace("$", ""))
    out: list[str] = []
    pos = 0
    while pos < len(s):
        m = _TOKEN.match(s, pos)
        if not m:
            unit = _UNIT.match(s, pos) if units and out and out[-1][:1].isdigit() else None
            if unit is None:
                break
            pos = unit.end()
            continue
        tok = m.group(1) or m.group(2)
        if m.group(1) and "," in tok and not re.fullmatch(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?", tok):
            out.append(tok.split(",")[0])  # "3, 4" is a list, not 34
            return out, s[m.start(1) + len(tok.split(",")[0]):]
        out.append(tok.replace(",", ""))
        pos = m.end()
    return out, s[pos:]


def _tokens(text: str) -> list[str]:
    return _scan(text)[0]


def _evaluate(tokens: list[str]) -> Fraction | None:
    """Value of + - * / with brackets and unary minus, or None when the tokens are not one."""
    pos = 0

    def peek() -> str | None:
        return tokens[pos] if pos < len(tokens) else None

    def atom() -> Fraction | None:
        nonlocal pos
        tok = peek()
        if tok == "-":
            pos += 1
            v = atom()
            return None if v is None else -v
        if tok == "(":
            pos += 1
            v = expr()
            if v is None or peek() != ")":
                return None
            pos += 1
            return v
        if tok is not None and tok[0].isdigit() or tok is not None and tok.startswith("."):
            pos += 1
            v = Fraction(Decimal(tok))
            if peek() == "%":
                pos += 1
                v /= 100
            return v
        return None

    def term() -> Fraction | None:
        nonlocal pos
        v = atom()
        while v is not None and peek() in ("*", "/"):
            op = tokens[pos]
            pos += 1
            r = atom()
            if r is None or (op == "/" and r == 0):
                return None
            v = v * r if op == "*" else v / r
        return v

    def expr() -> Fraction | None:
        nonlocal pos
        v = term()
        while v is not None and peek() in ("+", "-"):
            op = tokens[pos]
            pos += 1
            r = term()
            if r is None:
                return None
            v = v + r if op == "+" else v - r
        return v

    value = expr()
    return value if value is not None and pos == len(tokens) else None


# A forced "The answer is" the model turns into a premise ("given that Andrea has 52 apples").
_NOT_A_VALUE = re.compile(r"\s*(?:given\b|based on the (?:given|information)\b)", re.I)
# A number read as a relation or a clock time rather than a value.
_RELATION = re.compile(r":\d\d|\s+(?:[A-Za-z]+\s+)?(?:more|less|fewer|times|[a-z]+er)\s+(?:[A-Za-z]+\s+)?than\b")


def number_answer(segment: str, open_end: bool = False) -> str | None:
    """The number a stated answer gives, reading an expression as a whole.

    "18 apples" -> 18; "5 + 3 = 8" -> 8 (the value after the last "="); "1200 - 800 = " or
    "3 * 4." -> the expression's value; an expression that cannot be evaluated is refused
    (None) rather than read as its first number. `open_end`: the text stops right after the
    segment (a forced answer cut by its token budget), so what runs to the very end may be
    unfinished: an expression without "=" ("$200 + $300 + $4") is refused, and a stated result
    there ("1340 kg - 700 kg = 64", cut from 640) counts only when it recomputes."""
    text = clean_markup(segment)
    if _NOT_A_VALUE.match(text) or re.search(r"\\[dt]?frac|[{}]", text):
        return None  # a premise, or LaTeX cut before it closed
    assignment = re.match(r"\s*\(?\s*[A-Za-z]\s*=", text)  # "A = (52 - 8) / 2 = 22"
    if assignment:
        text = text[assignment.end():]
    if open_end and re.search(r"(?::|\bequal to|\bis)\s*$", text) and not re.search(r"\d[^.!?]*[.!?]\s", text):
        return None  # "6 dozen croissants, which is equal to:" (but "4 trays. Rozanne used ... equal to" answered)
    first = NUMBER.search(text)
    if first is None:
        return None
    if _RELATION.match(text, first.end()) or re.search(r"(?<![A-Za-z])[A-Za-z]\s*[-+*/=]", text[:first.start()]):
        return None  # "4 more bananas than apples", "11:00 PM", "A + 8 = 52": a premise, a time, an equation
    start = first.start()
    if start > 0 and text[start - 1] == "(":  # "(12 + 3)" opens with its bracket
        start -= 1
    tokens, rest = _scan(text[start:], units=True)
    if tokens and tokens[-1] in ("+", "-", "*", "/", "("):
        return None  # cut off mid-expression: there is no answer yet
    at_end = open_end and (not rest.strip() or bool(re.fullmatch(r",\d*\s*", rest)))  # ",00": "350,00" cut short
    if "=" in tokens:
        parts = _split_on(tokens, "=")
        if parts[-1]:
            value = _evaluate(parts[-1])
            if at_end and len(parts) >= 2 and _evaluate(parts[-2]) != value:
                return None  # a result cut short at the end of the text, or one that does not recompute
        else:
            value = _evaluate(parts[-2]) if len(parts) >= 2 else None
        return None if value is None else fraction_text(value)
    if len(tokens) == 1 or (len(tokens) == 2 and tokens[1] == "%"):
        return normalise_number(tokens[0])
    if at_end and tokens[-1] != ")":
        return None  # an expression running into the end of a cut answer may be unfinished
    while tokens and tokens[-1] == ")" and tokens.count(")") > tokens.count("("):
        tokens.pop()
    value = _evaluate(tokens)
    return None if value is None else fraction_text(value)


def _split_on(tokens: list[str], sep: str) -> list[list[str]]:
    parts: list[list[str]] = [[]]
    for t in tokens:
        if t == sep:
            parts.append([])
        else:
            parts[-1].append(t)
    return parts
