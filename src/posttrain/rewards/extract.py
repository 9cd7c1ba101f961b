"""Find the final answer in a completion: answer tags, \\boxed{}, "the answer is", last number.

Strategies run in a configurable order and the first that finds something wins:

- ``answer_tag``: the last ``<answer>...</answer>`` (its content is searched again with the
  other strategies when it holds a whole sentence);
- ``boxed``: the last ``\\boxed{...}``/``\\fbox{...}``; boxes right next to it (``\\boxed{1},
  \\boxed{2}``) join into one list answer;
- ``phrase``: the text after the last "final answer is", "the answer is", "Answer:",
  "réponse", "答案", "####" (GSM8K);
- ``whole``: the whole completion, when it is a bare answer (no prose);
- ``last_number``: the later of the last math span (``$...$``, ``\\(...\\)``, ``\\[...\\]``)
  and the last number (``12``, ``-3.5``, ``13/28``, ``\\frac{2}{5}``).

With a ``<think>`` block only the text after ``</think>`` is searched, and a completion cut
off inside ``<think>`` has no answer: a number in unfinished reasoning earns nothing.

Only the tail of a very long completion is scanned (``MAX_SCAN`` characters), so the cost
is bounded whatever the model writes.
"""

from __future__ import annotations

import re

from posttrain.rewards._normalize import UNIT_WORDS

DEFAULT_ORDER = ("answer_tag", "boxed", "phrase", "whole", "last_number")
MAX_SCAN = 20_000
MAX_ANSWER = 1_000
_GLUE_MAX = 60
_MAX_GROUP = 20

_BOX = re.compile(r"\\(?:boxed|fbox)\s*\{")
_PHRASE = re.compile(
    r"(?:final\s+answer\s*(?:is|:|：)|the\s+answer\s*(?:is|:|：)|\banswer\s*(?:is|:|：)"
    r"|\banswer\b\s*(?=\$|\\\(|\\\[)|réponse\s*(?:est|:|：)|respuesta\s*(?:es|:)|答案\s*(?:是|为|:|：)"
    r"|####)\s*(?:is\b|:)?",
    re.I,
)
# Spans are capped at 1000 characters so an unclosed delimiter costs linear time, not quadratic.
_MATH_SPAN = re.compile(
    r"\$\$(.{1,1000}?)\$\$|(?<!\\)\$(.{1,1000}?)(?<!\\)\$|\\\((.{1,1000}?)\\\)|\\\[(.{1,1000}?)\\\]", re.S
)
# Letters may follow a number (units: 1,000.99m², 13只) but not precede it (AZYUK2A).
_NUMBER = re.compile(
    r"\\frac\{-?\d+\}\{\d+\}|(?<![A-Za-z0-9_.])-?\d+(?:,\d{3})*(?:\.\d+)?(?:\s*/\s*\d+(?:\.\d+)?)?"
    r"(?:,\d+)?(?:\s*%)?(?![\d])|(?<![A-Za-z0-9_.])-?\.\d+"
)
_SPECIAL_TOKEN = re.compile(r"<\|[^|<>]{0,40}\|>")
_SENTENCE_END = re.compile(r"(?<!\d)\.(?=\s|$)|\.(?=\s+[A-Z])|\n|I hope|。")
_PROSE = re.compile(
    r"(?<![\\a-zA-Z])(?:[a-zA-Z]{3,}|(?:so|is|it|be|we|to|of|on|at|as|an|by|if|my|me|do|am)(?![a-zA-Z]))", re.I
)
_KNOWN_WORDS = {
    "sin",
    "cos",
    "tan",
    "sec",
    "csc",
    "cot",
    "log",
    "exp",
    "sqrt",
    "and",
    "sinh",
    "cosh",
    "tanh",
    "arcsin",
    "arccos",
    "arctan",
    "infty",
    "pi",
    "or",
    "percent",
    "pct",
    *UNIT_WORDS,
}


def extract_answer(completion: str, extract_order=DEFAULT_ORDER) -> str | None:
    """The final answer text of *completion*, or None when no strategy finds one.

    >>> extract_answer("so 3+4=7. The answer is $\\\\boxed{7}$.")
    '7'
    >>> extract_answer("<think>12+34=46</think><answer>46</answer>")
    '46'
    """
    if not isinstance(completion, str) or not completion.strip():
        return None
    text = _SPECIAL_TOKEN.sub("", completion[-MAX_SCAN:].replace("\x00", ""))
    if "</think>" in text:
        # The answer follows the reasoning; a number inside the reasoning is not an answer.
        text = text.rsplit("</think>", 1)[1]
    elif "<think>" in text:
        return None  # cut off while still thinking: no final answer yet
    for name in check_order(extract_order):
        found = STRATEGIES[name](text, extract_order)
        if found is not None and found.strip():
            return found.strip()[:MAX_ANSWER]
    return None


def _answer_tag(text, order):
    # rfind, not a lazy regex: an unclosed "<answer>" repeated 10^5 times stays linear.
    end = text.rfind("</answer>")
    start = text.rfind("<answer>", 0, end) if end >= 0 else -1
    if start < 0:
        return None
    content = text[start + len("<answer>") : end].strip()
    if _is_bare(content) and not _BOX.search(content):
        return content
    rest = tuple(s for s in order if s != "answer_tag")
    return extract_answer(content, rest) or content


_BRACE = re.compile(r"[{}]")


def boxed_spans(text):
    """(start, end, content) of every \\boxed{...} with balanced braces, in one linear pass."""
    opens = {m.end() - 1: m.start() for m in _BOX.finditer(text)}
    if not opens:
        return []
    spans, stack = [], []
    for m in _BRACE.finditer(text):
        if m.group() == "{":
            stack.append(m.start())
        elif stack:
            left = stack.pop()
            if left in opens:
                spans.append((opens[left], m.end(), text[left + 1 : m.start()]))
    spans.sort()
    return spans


_FINAL_PHRASE = re.compile(r"final\s+answer\s*(?:is|:)", re.I)


def _boxed(text, order):
    spans = boxed_spans(text)
    if not spans:
        return None
    if "phrase" in order and _FINAL_PHRASE.search(text, spans[-1][1]):
        return None  # "... \boxed{255} ... Final Answer: The final answer is $10,455$"
    group = [spans[-1]]  # the last box and the boxes right before it, newest first
    for span in reversed(spans[:-1]):
        if span[1] > group[-1][0]:
            continue  # a box around the last box: \\boxed{\\boxed{5}}
        glue = text[span[1] : group[-1][0]]
        if len(group) >= _MAX_GROUP or len(glue) > _GLUE_MAX or "\n\n" in glue or re.search(r"\.\s", glue):
            break
        group.append(span)
    contents = list(dict.fromkeys(content.strip() for _, _, content in reversed(group)))
    return ", ".join(contents) if len(contents) > 1 else contents[0]


def _phrase(text, order):
    matches = list(_PHRASE.finditer(text[-4000:]))
    if not matches:
        return None
    tail = text[-4000:][matches[-1].end() :]
    math = _MATH_SPAN.match(tail.lstrip())
    if math:
        return next(g for g in math.groups() if g is not None)
    end = _SENTENCE_END.search(tail)
    span = (tail[: end.start()] if end else tail).strip()
    if not span:
        return None
    box = _boxed(span, order)
    if box is not None:
        return box
    if _is_bare(span):
        return span
    for m in _MATH_SPAN.finditer(span):
        inner = next(g for g in m.groups() if g is not None)
        if any(ch.isdigit() for ch in inner):
            return inner
    number = _NUMBER.search(span)
    return number.group(0) if number else None


def _strip_math(text):
    return re.sub(r"\\(?:begin|end)\{[a-zA-Z*]*\}|\\[a-zA-Z]+", " ", text)


def _is_bare(text):
    """No prose: no English word (3+ letters, not a function name) and no CJK/Arabic/... text."""
    if len(text) > 300:
        return False
    stripped = _strip_math(text)
    if any(ch.isalpha() and ord(ch) > 0x24F and ch not in "πα" for ch in stripped):
        return False
    return not any(w.lower() not in _KNOWN_WORDS for w in _PROSE.findall(stripped))


def _whole(text, order):
    candidate = text.strip()
    if _is_bare(candidate) and not _BOX.search(candidate):
        return candidate
    return None


def _last_number(text, order):
    tail = text[-4000:]
    best, best_end = None, -1
    for m in _MATH_SPAN.finditer(tail):
        inner = next(g for g in m.groups() if g is not None)
        if m.end() > best_end and inner.strip() and _is_bare(inner):
            best, best_end = inner, m.end()
    numbers = list(_NUMBER.finditer(tail))
    if numbers and numbers[-1].end() > best_end:
        best = numbers[-1].group(0)
    short = text.strip()
    if best is None and len(short) <= 100 and (len(short.split()) <= 3 or _MATH_SPAN.fullmatch(short)):
        best = short  # a short text answer: "odd", "$\\text{Even}$"
    return best


def check_order(extract_order) -> tuple[str, ...]:
    """*extract_order* as a tuple; ValueError naming the choices for an unknown strategy."""
    order = (extract_order,) if isinstance(extract_order, str) else tuple(extract_order)
    unknown = [name for name in order if name not in STRATEGIES]
    if unknown or not order:
        raise ValueError(
            f"unknown extraction strategy {unknown[0] if unknown else '(none)'!r}; choose from {', '.join(STRATEGIES)}"
        )
    return order


STRATEGIES = {
    "answer_tag": _answer_tag,
    "boxed": _boxed,
    "phrase": _phrase,
    "whole": _whole,
    "last_number": _last_number,
}

_CHOICE_PHRASE = re.compile(
    r"(?:answer|réponse|respuesta|答案|option|choice)[^A-Za-z]{0,6}(?:is|est|es|是)?\s*[:：]?"
    r"\s*(?:(?:for sure|definitely|probably|option|choice)\s+)?\(?([A-E])\b(?!')",
)
_CHOICE_LEAD = re.compile(r"^\s*\(?([A-E])(?:\)|\.|。|:|\s|$|(?=[^\x00-\x7f]))")
# A letter standing alone (after a space, colon, bold mark, $, { or the start; before a space, punctuation,
# $, } or the end): never one inside an expression such as 2B, B^2, f(B) or B+C.
_CHOICE_ANY = re.compile(r"(?:^|(?<=[\s:*>${]))\(?([A-E])\)?(?=[\s.,;:!?*<$}]|$)")
_CHOICE_GOLD = re.compile(r"^\s*(?:\\text\{\s*)?\(?([A-E])\)?\s*\}?(?:[\s.:]+[^\d=+\-*/^]*)?$")


def choice_letter(gold: str) -> str | None:
    """The letter when *gold* is a multiple-choice answer ("C", "(D) Alina", "\\text{(B)}")."""
    text = gold.strip().strip("$").strip()
    if len(text) > 200:
        return None
    box = _boxed(text, ())
    if box is not None:
        text = box
    m = _CHOICE_GOLD.match(text)
    return m.group(1) if m else None


def extract_choice(completion: str) -> str | None:
    """The multiple-choice letter a completion settles on, or None."""
    if not isinstance(completion, str):
        return None
    text = _SPECIAL_TOKEN.sub("", completion[-MAX_SCAN:])
    for strategy in (_answer_tag, _boxed):
        found = strategy(text, ("boxed", "phrase"))
        if found is not None:
            letter = choice_letter(found)
            if letter:
                return letter
            text = found  # the model settled on this: look for a letter in it, not in the reasoning
            break
    matches = list(_CHOICE_PHRASE.finditer(text))
    if matches:
        return matches[-1].group(1)
    lead = _CHOICE_LEAD.match(text)
    if lead:
        return lead.group(1)
    anywhere = list(_CHOICE_ANY.finditer(text[-500:]))
    return anywhere[-1].group(1) if anywhere else None
