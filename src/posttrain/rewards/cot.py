"""Chain-of-thought rewards: reasoning present, step count, step arithmetic, answer consistency.

The reasoning is the text inside ``<think>...</think>`` when the completion has it, else
the whole completion (for step counting and arithmetic) -- so these rewards also work on
models that reason without tags.
"""

from __future__ import annotations

import re
from fractions import Fraction

from posttrain.rewards._common import completion_texts
from posttrain.rewards.extract import DEFAULT_ORDER, extract_answer
from posttrain.rewards.math import answers_equivalent

MAX_CHARS = 200_000
MAX_STEPS = 500
_THINK = re.compile(r"(?:<think>)?(.*?)</think>(.*)", re.S)
_STEP = re.compile(
    r"(?i)\bstep\s*\d+\s*[:.)]|(?im:^\s*(?:\d+[.)]\s|[-*•]\s|(?:first|second|third|next|then|"
    r"finally|therefore|so)\b))"
)
# a op b (op c ...) = d, with numbers only: 12+34=46, 3*4 = 12, 12+34+5=51, 100 - 30 = 70
_NUM = r"\d+(?:\.\d+)?"
_OP = r"(?:\+|-|−|\*|×|·|/|÷|\\times|\\cdot|\\div)"
_ARITH = re.compile(rf"(?<![\w.^/*+\-=])(-?{_NUM}(?:\s*{_OP}\s*{_NUM}){{1,12}})\s*=\s*(-?{_NUM})(?![\d.]*\w|\.\d)")
_TOKEN = re.compile(rf"{_NUM}|{_OP}|-")
_MONEY = re.compile(r"(?<=\d),(?=\d{3}\b)|\$")


def split_reasoning(text: str) -> tuple[str | None, str]:
    """(reasoning inside the think block or None, the text after it)."""
    m = _THINK.fullmatch(text[:MAX_CHARS]) if "</think>" in text else None
    if m:
        return m.group(1), m.group(2)
    return None, text


def reasoning_present(completions, *, min_words: int = 5, **kwargs) -> list[float]:
    """1.0 when a ``<think>`` block holds at least *min_words* words of non-trivial reasoning.

    >>> reasoning_present(["<think>12+34=46 and 46+5=51 so 51</think><answer>51</answer>",
    ...                    "<think>51</think><answer>51</answer>"], min_words=3)
    [1.0, 0.0]
    """
    scores = []
    for text in completion_texts(completions):
        reasoning, answer = split_reasoning(text)
        words = (reasoning or "").split()
        trivial = reasoning is not None and reasoning.strip() == _strip_tags(answer).strip()
        scores.append(float(len(words) >= min_words and not trivial))
    return scores


def _strip_tags(text: str) -> str:
    return re.sub(r"</?answer>", "", text)


def count_steps(reasoning: str) -> int:
    """Step markers ("Step 1:", "1.", "- ", "First,", "Then") plus stated calculations."""
    text = reasoning[:MAX_CHARS]
    markers = len(_STEP.findall(text))
    calculations = len(_ARITH.findall(_MONEY.sub("", text)[:MAX_CHARS]))
    return max(markers, calculations)


def reasoning_steps(completions, *, target: int = 3, **kwargs) -> list[float]:
    """min(1, steps / target): rewards laying the reasoning out in *target* or more steps.

    >>> reasoning_steps(["<think>12+34=46 46+5=51</think><answer>51</answer>"], target=2)
    [1.0]
    """
    target = max(1, int(target))
    scores = []
    for text in completion_texts(completions):
        reasoning, _ = split_reasoning(text)
        scores.append(min(1.0, count_steps(reasoning if reasoning is not None else text) / target))
    return scores


def arithmetic_steps(text: str) -> list[bool]:
    """Whether each ``a op b = c`` calculation stated in *text* holds (at most MAX_STEPS)."""
    results = []
    for m in _ARITH.finditer(_MONEY.sub("", text[:MAX_CHARS])):
        value = _evaluate(m.group(1))
        if value is None:
            continue
        results.append(_matches(value, m.group(2)))
        if len(results) >= MAX_STEPS:
            break
    return results


def _evaluate(expr: str) -> Fraction | None:
    tokens = _TOKEN.findall(expr.replace(" ", ""))
    if any(len(t) > 30 for t in tokens):
        return None
    # Left to right with * and / first: the tokens are numbers and binary operators only.
    terms, sign, product, op = [], 1, None, None
    i = 0
    if tokens and tokens[0] == "-":
        sign, i = -1, 1
    try:
        while i < len(tokens):
            value = Fraction(tokens[i])
            product = value if op is None else (product * value if op == "*" else product / value)
            i += 1
            if i >= len(tokens):
                break
            t = tokens[i]
            i += 1
            if t in ("+", "-", "−"):
                terms.append(sign * product)
                sign, op, product = (1 if t == "+" else -1), None, None
            else:
                op = "/" if t in ("/", "÷", "\\div") else "*"
        terms.append(sign * product)
    except (ZeroDivisionError, ValueError, TypeError, IndexError):
        return None
    return sum(terms)


def _matches(value: Fraction, stated: str) -> bool:
    claimed = Fraction(stated)
    if value == claimed:
        return True
    places = len(stated.split(".")[1]) if "." in stated else 0
    # 10/3 = 3.33 holds to the precision it is stated with; integers must be exact.
    return places > 0 and abs(value - claimed) <= Fraction(1, 2 * 10**places)


def step_arithmetic(completions, **kwargs) -> list[float | None]:
    """Fraction of the stated calculations (``12+34=46``) that are right; None when there are none.

    >>> step_arithmetic(["<think>12+34=46 46+5=51</think>", "<think>3*4=13 2+2=4</think>", "hi"])
    [1.0, 0.5, None]
    """
    scores = []
    for text in completion_texts(completions):
        reasoning, _ = split_reasoning(text)
        checks = arithmetic_steps(reasoning if reasoning is not None else text)
        scores.append(sum(checks) / len(checks) if checks else None)
    return scores


def answer_consistency(completions, *, extract_order=DEFAULT_ORDER, **kwargs) -> list[float | None]:
    """1.0 when the final answer equals the conclusion the reasoning reached, else 0.0.

    None when there is no ``<think>`` block or either side has no answer.

    >>> answer_consistency(["<think>12+34=46 46+5=51</think><answer>51</answer>",
    ...                     "<think>so it is 51</think><answer>50</answer>", "51"])
    [1.0, 0.0, None]
    """
    scores = []
    for text in completion_texts(completions):
        reasoning, after = split_reasoning(text)
        if reasoning is None:
            scores.append(None)
            continue
        concluded = extract_answer(reasoning, ("boxed", "phrase", "last_number"))
        final = extract_answer(after, extract_order)
        if concluded is None or final is None:
            scores.append(None)
        else:
            scores.append(float(answers_equivalent(concluded, final)))
    return scores
