"""Tokens of an answer: one regular expression splits text into numbers, words, commands, symbols.

Kept apart from the parser so the token vocabulary (functions, relations, Greek letters)
reads in one place.  Bounded: at most MAX_CHARS characters and MAX_TOKENS tokens.
"""

from __future__ import annotations

import re
from fractions import Fraction

MAX_CHARS = 3000
MAX_TOKENS = 800
MAX_DEPTH = 60
MAX_NUMBER_DIGITS = 400


class ParseError(ValueError):
    """The text is not an answer this parser understands (or exceeds a bound)."""


_TOKEN = re.compile(
    r"(?P<num>(?:\d+(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d{1,4}(?![A-Za-z]))?)"
    r"|(?P<begin>\\begin\{(?P<env>[a-zA-Z]+\*?)\}(?:\{[^{}]{0,30}\})?)"
    r"|(?P<end>\\end\{[a-zA-Z]+\*?\})"
    r"|(?P<cmd>\\[a-zA-Z]+|\\[{}|%$,;!: ]|\\\\)"
    r"|(?P<word>[A-Za-z]+)"
    r"|(?P<op><=|>=|!=|==|\*\*|[^\s])"
)

FUNCS = {
    "sin",
    "cos",
    "tan",
    "sec",
    "csc",
    "cot",
    "arcsin",
    "arccos",
    "arctan",
    "sinh",
    "cosh",
    "tanh",
    "ln",
    "log",
    "exp",
    "sqrt",
    "lg",
}
GREEK = {
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "varepsilon",
    "zeta",
    "eta",
    "theta",
    "vartheta",
    "iota",
    "kappa",
    "lambda",
    "mu",
    "nu",
    "xi",
    "rho",
    "sigma",
    "tau",
    "upsilon",
    "phi",
    "varphi",
    "chi",
    "psi",
    "omega",
    "Gamma",
    "Delta",
    "Theta",
    "Lambda",
    "Xi",
    "Sigma",
    "Phi",
    "Psi",
    "Omega",
}
RELATIONS = {
    "=": "=",
    "==": "=",
    "<": "<",
    ">": ">",
    "<=": "<=",
    ">=": ">=",
    "!=": "!=",
    "≤": "<=",
    "≥": ">=",
    "≠": "!=",
    "\\le": "<=",
    "\\leq": "<=",
    "\\leqslant": "<=",
    "\\ge": ">=",
    "\\geq": ">=",
    "\\geqslant": ">=",
    "\\lt": "<",
    "\\gt": ">",
    "\\ne": "!=",
    "\\neq": "!=",
    "\\approx": "~",
    "\\in": "in",
    "\\equiv": "=",
}
# Letters that read as function application before "(" -- f(x) -- rather than a product.
FUNC_LETTERS = set("fghFGHW")
MATRIX_ENVS = {"matrix", "pmatrix", "bmatrix", "Bmatrix", "vmatrix", "Vmatrix", "array", "smallmatrix"}


def tokenize(text: str) -> list[tuple[str, str]]:
    """Split *text* into (kind, value) tokens; raises ParseError past the size bounds."""
    if len(text) > MAX_CHARS:
        raise ParseError("answer too long")
    tokens = []
    for m in _TOKEN.finditer(text):
        kind = m.lastgroup if m.lastgroup != "env" else "begin"
        if kind == "begin":
            tokens.append(("begin", m.group("env").rstrip("*")))
        else:
            tokens.append((kind, m.group(kind)))
        if len(tokens) > MAX_TOKENS:
            raise ParseError("too many tokens")
    return tokens


def number(text: str):
    """A ("num", value, text) node; the text keeps the written decimal places."""
    if len(text) > MAX_NUMBER_DIGITS:
        raise ParseError("number too long")
    return ("num", Fraction(text), text)
