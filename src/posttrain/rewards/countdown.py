"""Countdown reward: the answer is an expression over the given numbers that reaches the target.

The expression is parsed by a tiny recursive-descent parser over digits, + - * / and brackets
with exact fractions — model output never reaches `eval`. Length and nesting are bounded, and
only the numbers given may appear, each at most as often as given, so values stay small.
"""

from __future__ import annotations

import re
from collections import Counter
from fractions import Fraction

from posttrain.rewards._common import completion_texts

MAX_EXPR_CHARS = 200
MAX_DEPTH = 20
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.S)
_TOKENS = re.compile(r"\s*(\d+|[-+*/()])", re.ASCII)


class _Invalid(Exception):
    pass


def _tokenize(expr: str) -> list[str]:
    tokens, pos = [], 0
    while pos < len(expr):
        match = _TOKENS.match(expr, pos)
        if not match:
            if expr[pos:].strip():
                raise _Invalid
            break
        tokens.append(match.group(1))
        pos = match.end()
    return tokens


class _Parser:
    """expr := term (('+'|'-') term)* ; term := factor (('*'|'/') factor)* ; factor := NUM | '(' expr ')'"""

    def __init__(self, tokens: list[str]) -> None:
        self.tokens, self.pos, self.numbers = tokens, 0, []

    def parse(self) -> Fraction:
        value = self.expr(0)
        if self.pos != len(self.tokens):
            raise _Invalid
        return value

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> str:
        token = self.peek()
        if token is None:
            raise _Invalid
        self.pos += 1
        return token

    def expr(self, depth: int) -> Fraction:
        value = self.term(depth)
        while self.peek() in ("+", "-"):
            value = value + self.term(depth) if self.take() == "+" else value - self.term(depth)
        return value

    def term(self, depth: int) -> Fraction:
        value = self.factor(depth)
        while self.peek() in ("*", "/"):
            op, rhs = self.take(), self.factor(depth)
            if op == "/" and rhs == 0:
                raise _Invalid
            value = value * rhs if op == "*" else value / rhs
        return value

    def factor(self, depth: int) -> Fraction:
        if depth > MAX_DEPTH:
            raise _Invalid
        token = self.take()
        if token == "(":
            value = self.expr(depth + 1)
            if self.take() != ")":
                raise _Invalid
            return value
        if not token.isdigit() or len(token) > 6:
            raise _Invalid
        self.numbers.append(int(token))
        return Fraction(int(token))


def check_expression(expr: str, numbers: list[int], target: int | str) -> bool:
    """True when `expr` uses only `numbers` (each at most once) and equals `target`.

    >>> check_expression("(3+5)*2", [2, 3, 5], 16)
    True
    >>> check_expression("3*5+5", [3, 5], 20)
    False
    """
    if len(expr) > MAX_EXPR_CHARS:
        return False
    try:
        parser = _Parser(_tokenize(expr))
        value = parser.parse()
    except (_Invalid, RecursionError):
        return False
    if Counter(parser.numbers) - Counter(int(n) for n in numbers):
        return False
    try:
        return value == Fraction(str(target).strip())
    except (ValueError, ZeroDivisionError):
        return False


def countdown(completions, answer=None, numbers=None, *, require_all: bool = True, **kwargs) -> list[float | None]:
    """1.0 when the <answer> expression reaches the target (`answer`) with the given `numbers`.

    `require_all` demands every number be used (the usual Countdown rule). None for rows
    without numbers or target.

    >>> countdown(["<think>2*3=6</think><answer>2*3+4</answer>"], answer=["10"], numbers=[[2, 3, 4]])
    [1.0]
    """
    texts = completion_texts(completions)
    answers = answer if isinstance(answer, list) else [answer] * len(texts)
    pools = numbers if numbers is not None else [None] * len(texts)
    out: list[float | None] = []
    for text, target, pool in zip(texts, answers, pools):
        if target is None or not pool:
            out.append(None)
            continue
        expr = answer_expression(text) or ""
        ok = check_expression(expr, list(pool), target)
        if ok and require_all:
            ok = sorted(int(t) for t in re.findall(r"[0-9]+", expr)) == sorted(int(n) for n in pool)
        out.append(1.0 if ok else 0.0)
    return out


def answer_expression(text: str) -> str | None:
    """The last <answer> expression of a completion, stripped; None without one.

    >>> answer_expression("<answer> (2+3)*4 </answer>")
    '(2+3)*4'
    """
    match = _ANSWER.findall(text[-5000:])
    return match[-1].strip() if match else None


def same_expression(a: str, b: str) -> bool:
    """maj@k's vote for countdown: the same expression, spaces aside (two routes to the target are two answers).

    >>> same_expression("2 * 3 + 4", "2*3+4"), same_expression("2*3+4", "4+2*3")
    (True, False)
    """
    return re.sub(r"\s+", "", a) == re.sub(r"\s+", "", b)
