"""Math answer equivalence: is the final answer of a completion the gold answer?

``verify(prediction, gold)`` extracts the final answer of a whole completion (see
``posttrain.rewards.extract``), parses both sides with a safe bounded parser (never
``eval``/``sympify``), and compares them: first the cleaned text, then exact rational
arithmetic, then numeric evaluation at fixed sample points for symbolic answers.  No
sympy call is made at all, so there is nothing that can hang; every parse is bounded by
length, token count, nesting depth, exponent and factorial size and a step budget.

Conventions (the dev set holds convention-dependent pairs that contradict each other;
these are the choices, applied the same way to gold and prediction):

- Numbers: ``1,000`` and ``1 000`` are thousands separators; a lone ``1,5`` is read both as
  the pair (1, 5) and as the decimal 1.5 (either matching is accepted); ``32, 349`` with a
  space is a list.  Trailing zeros do not matter (``5.0`` = ``5``).
- Decimals against exact values: a decimal with at least 2 places matches a value that
  has no finite decimal expansion (1/3, sqrt 2, pi) when it is that value rounded or
  truncated to its places (``0.33`` = 1/3, ``2.6667`` = 8/3, ``3.14`` = pi).  A value with
  a finite expansion must be written exactly (``3.22`` != 3.21, ``0.12`` != 1/8), and one
  decimal place is never enough (``0.3`` != 1/3).
- Percent: ``28\\%`` = ``28 percent`` = ``28``; a percent on one side only also matches
  the value divided by 100 (``33.5%`` = ``0.335``).  Bare numbers are never rescaled.
- Units, currency and degrees are dropped: ``90^\\circ`` = ``90``, ``\\$16.50`` = ``16.5``,
  ``15 \\text{cm}^2`` = ``15``.
- Labels: ``x = 5`` = ``5``, ``(p, q) = (3, 2)`` = ``(3, 2)``, ``f(x) = 1`` = ``1``; a chain
  ``x = 2 + 3 = 5`` is its last value; ``a \\approx b`` keeps the exact part.  An equation
  whose left side is not a name (``7 = 11a + c``) stays an equation.
- Equations and inequalities are equal up to a constant factor (positive for
  inequalities): ``2x + 4y - 3 = 0`` = ``y = -x/2 + 3/4``; ``x > 5`` = ``(5, \\infty)``.
- Collections: ``(a, b)`` is ordered (and equals the open interval); a bare list
  ``1, -2`` or ``\\{...\\}`` set is unordered; intervals keep their brackets.
- Multiple choice: a gold of one letter A-E compares only the letter the completion
  settles on (``\\boxed{C}``, "the answer is C", a leading "C.", else the last letter standing
  alone). A letter inside an expression is not a choice: ``\\boxed{2B}``, ``B^2``, ``f(B)``, ``B+C``
  are wrong for gold B, and a boxed answer that is no letter is not searched past.
- Free text: the same words match whatever their case (``monday`` = ``Monday``), except single
  letters and 1-3 capitals, where case is meaning (``x`` != ``X``, segment ``AB`` != ``ab``).
- Words after a number that only describe it are dropped (``4\\text{ red marbles}`` = ``4``,
  ``15\\text{ km/h}`` = ``15``, ``6\\text{th}`` = ``6``), unless they join numbers (``5 \\text{ or } 6``).
- Malformed LaTeX is repaired first: a stray trailing backslash, one before a digit (``\\5``), a
  doubled one fused to a command (``\\\\frac``).
- ``\\pm`` expands to both values: ``\\pm 2`` = ``{-2, 2}``.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict
from functools import lru_cache

from posttrain.rewards._common import column, completion_texts
from posttrain.rewards._compare import canon, same
from posttrain.rewards._latex import ParseError, parse
from posttrain.rewards._normalize import clean, variants
from posttrain.rewards.extract import (
    DEFAULT_ORDER,
    boxed_spans,
    check_order,
    choice_letter,
    extract_answer,
    extract_choice,
)

__all__ = ["verify", "extract_answer", "answers_equivalent", "accuracy", "parse_answer", "clear_caches"]

_WORDS = re.compile(r"[^\W\d_][^\\{}$^_]{0,200}")
CACHE_SIZE = 16_384
MAX_ANSWER_CHARS = 3_000
_GOLD_LONG = 200


class Parsed:
    """One answer parsed every way it can be read: text key plus structures."""

    __slots__ = ("key", "structs")

    def __init__(self, key: str, structs: tuple):
        self.key = key
        self.structs = structs

    def usable_as_gold(self) -> bool:
        """Parsed as math, or a plain-words answer ("Evelyn", "odd") compared as text."""
        return bool(self.structs) or bool(_WORDS.fullmatch(self.key))


@lru_cache(maxsize=CACHE_SIZE)
def parse_answer(text: str) -> Parsed:
    """Parse an extracted answer (cached: gold answers are parsed once per prompt)."""
    if len(text) > MAX_ANSWER_CHARS:  # no answer is this long: compare it as plain text
        return Parsed(text.strip(), ())
    cleaned = clean(text)
    structs = []
    for variant in variants(cleaned):
        node = _parse_or_none(variant)
        if node is None and "=" in variant:
            node = _parse_or_none(variant.rsplit("=", 1)[1])
        if node is not None:
            try:
                structs.append(canon(node))
            except (RecursionError, ValueError):
                pass
    return Parsed(_text_key(cleaned), tuple(structs))


def _parse_or_none(text):
    try:
        return parse(text)
    except (ParseError, RecursionError, ValueError, ZeroDivisionError):
        return None


def _text_key(cleaned: str) -> str:
    key = re.sub(r"\\(?:text|mathrm|textbf|mbox)\s*", "", cleaned)
    return re.sub(r"[\s{}$]", "", key)


def _same_parsed(a: Parsed, b: Parsed) -> bool:
    if a.key and a.key == b.key:
        return True
    if _same_words(a.key, b.key):
        return True
    return any(same(x, y) for x in a.structs for y in b.structs)


_LABEL = re.compile(r"[A-Z]{1,3}")  # AB, ABC: points and segments, where case is meaning


def _same_words(a: str, b: str) -> bool:
    """Free-text answers ("Monday", "monday"): the same words, whatever their case. Not labels such as
    segment AB (vs ab, a product), and not single letters (x vs X are two variables)."""
    if len(a) < 2 or not a.isalpha() or not b.isalpha() or _LABEL.fullmatch(a) or _LABEL.fullmatch(b):
        return False
    return a.casefold() == b.casefold()


def answers_equivalent(a: str, b: str) -> bool:
    """Equality of two already extracted answers (for clustering answers in maj@k).

    >>> answers_equivalent("\\\\frac{1}{2}", "0.5")
    True
    >>> answers_equivalent("(1, 2)", "(2, 1)")
    False
    """
    if a is None or b is None:
        return False
    try:
        letter = choice_letter(a)
        if letter is not None:
            return choice_letter(b) == letter
        return _same_parsed(parse_answer(a), parse_answer(b))
    except Exception:
        return False


def gold_answer(gold: str) -> str | None:
    """The answer part of a gold label: GSM8K ``#### 42``, a boxed solution, or the label."""
    if not isinstance(gold, str) or not gold.strip():
        return None
    if "####" in gold:
        return gold.rsplit("####", 1)[1].strip() or None
    if boxed_spans(gold[-20_000:]):
        return extract_answer(gold, ("boxed",))
    if len(gold) > _GOLD_LONG:
        return extract_answer(gold, ("phrase", "last_number"))
    return gold.strip()


def verify(prediction: str, gold: str, extract_order=DEFAULT_ORDER) -> bool | None:
    """True when the final answer of *prediction* equals *gold*; None if gold is unusable.

    >>> verify("so the total is $\\\\boxed{\\\\frac{1}{2}}$", "0.5")
    True
    >>> verify("The answer is 7", "#### 8")
    False
    >>> verify("anything", "") is None
    True
    """
    order = check_order(extract_order)  # a recipe typo must fail loudly, not score 0
    try:
        return _verify_cached(prediction if isinstance(prediction, str) else "", gold, order)
    except Exception:
        # Model output is untrusted and a training run must not die on one completion;
        # the fuzz and hostile-input tests keep this path for bugs only.
        return False


def _verify(prediction: str, gold: str, extract_order) -> bool | None:
    gold_text = gold_answer(gold)
    if gold_text is None:
        return None
    letter = choice_letter(gold_text)
    if letter is not None:
        return extract_choice(prediction) == letter
    parsed_gold = parse_answer(gold_text)
    if not parsed_gold.usable_as_gold():
        return None
    answer = extract_answer(prediction, extract_order)
    if answer is None:
        return False
    return _same_parsed(parse_answer(answer), parsed_gold)


class _LRU:
    """Bounded, thread-safe (prediction digest, gold) -> result cache."""

    def __init__(self, size):
        self.size = size
        self.data = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key):
        with self.lock:
            if key in self.data:
                self.data.move_to_end(key)
                return True, self.data[key]
        return False, None

    def put(self, key, value):
        with self.lock:
            self.data[key] = value
            if len(self.data) > self.size:
                self.data.popitem(last=False)


_RESULTS = _LRU(CACHE_SIZE)


def clear_caches() -> None:
    """Forget every cached parse and result (benchmarks time a cold checker this way)."""
    parse_answer.cache_clear()
    with _RESULTS.lock:
        _RESULTS.data.clear()


def _verify_cached(prediction, gold, extract_order):
    # Completions can be long: key the cache on a digest, not the text itself.
    key = (hashlib.blake2b(prediction.encode("utf-8", "replace"), digest_size=16).digest(), gold, extract_order)
    hit, value = _RESULTS.get(key)
    if hit:
        return value
    value = _verify(prediction, gold, extract_order)
    _RESULTS.put(key, value)
    return value


def accuracy(completions, answer=None, *, extract_order=DEFAULT_ORDER, **kwargs) -> list[float | None]:
    """1.0 when the completion's final answer equals the ``answer`` column, else 0.0.

    None where the gold answer is missing or cannot be parsed.

    >>> accuracy(["<answer>51</answer>", "The answer is 50."], answer=["51", "51"])
    [1.0, 0.0]
    """
    texts = completion_texts(completions)
    golds = column(answer, len(texts))
    scores = []
    for text, gold in zip(texts, golds):
        result = verify(text, gold if isinstance(gold, str) else _gold_str(gold), extract_order)
        scores.append(None if result is None else float(result))
    return scores


def _gold_str(gold):
    if gold is None:
        return ""
    return str(gold)
