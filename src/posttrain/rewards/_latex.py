"""Safe, bounded parser: answer text (LaTeX or plain math) -> a small AST of tuples.

Model output is untrusted, so nothing here evaluates code: the text is split by one
regular expression into tokens and a recursive-descent parser builds tuples from a fixed
whitelist of constructs.  Every parse is bounded by input length, token count and
nesting depth, so a hostile string costs at most a few milliseconds in any thread.
(sympy's ``parse_latex``/``sympify`` would evaluate Python and are much slower.)

Nodes (first item is the tag):
  ("num", Fraction, text)        ("sym", name)          ("const", "pi"|"e"|"i"|"inf")
  ("add", (a, b, ...))           ("mul", (a, b, ...))   ("div", a, b)   ("pow", a, b)
  ("neg", a)  ("pm", a|None, b)  ("fact", a)  ("pct", a)  ("abs", a)  ("mod", a, b)
  ("func", name, (args...))      ("sum"|"prod", var, lo, hi, body)
  ("seq", kind, (items...))      kind: "()", "[]", "(]", "[)", "{}" (set), "list", "semi"
  ("ratio", a, b)                ("rel", (ops...), (exprs...))  ("cup"|"cap", a, b)
  ("mat", env, ((row...), ...))  ("text", words)
"""

from __future__ import annotations

from posttrain.rewards._latex_commands import LatexCommands
from posttrain.rewards._lexer import MAX_DEPTH, RELATIONS, ParseError, number, tokenize

__all__ = ["ParseError", "parse", "tokenize"]


def parse(text: str):
    """Parse one answer into an AST (see module docstring)."""
    parser = _Parser(tokenize(text))
    node = parser.top(())
    if parser.i != len(parser.toks):
        raise ParseError(f"unexpected {parser.toks[parser.i][1]!r}")
    return node


class _Parser(LatexCommands):
    """Recursive descent over the token list; LaTeX commands are handled by the mixin."""

    def __init__(self, toks):
        self.toks = toks
        self.i = 0
        self.depth = 0
        self.abs_depth = 0

    # -- token helpers -------------------------------------------------------
    def peek(self, k=0):
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else ("eof", "")

    def take(self):
        tok = self.peek()
        self.i += 1
        return tok

    def accept(self, value):
        if self.peek()[1] == value and self.peek()[0] != "eof":
            self.i += 1
            return True
        return False

    def expect(self, value):
        if not self.accept(value):
            raise ParseError(f"expected {value!r}, got {self.peek()[1]!r}")

    def enter(self):
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ParseError("nesting too deep")

    # -- grammar -------------------------------------------------------------
    def top(self, stops):
        """Comma/semicolon separated list up to one of *stops* (not consumed)."""
        self.enter()
        groups, items = [], []
        while True:
            if self.peek()[1] in stops or self.peek()[0] == "eof":
                break
            items.append(self.relation(stops))
            if self.accept(","):
                continue
            if self.accept(";"):
                groups.append(items)
                items = []
                continue
            break
        self.depth -= 1
        if groups:
            groups.append(items)
            parts = [g[0] if len(g) == 1 else ("seq", "list", tuple(g)) for g in groups if g]
            return ("seq", "semi", tuple(parts))
        if not items:
            raise ParseError("empty")
        return items[0] if len(items) == 1 else ("seq", "list", tuple(items))

    def relation(self, stops):
        exprs, ops = [self.union()], []
        while True:
            tok = self.peek()
            op = RELATIONS.get(tok[1]) if tok[0] in ("op", "cmd") else None
            if op is None or tok[1] in stops:
                break
            self.take()
            ops.append(op)
            exprs.append(self.union())
        return exprs[0] if not ops else ("rel", tuple(ops), tuple(exprs))

    def union(self):
        node = self.additive()
        while self.peek()[1] in ("\\cup", "\\cap"):
            op = self.take()[1][1:]
            node = (op, node, self.additive())
        return node

    def additive(self):
        terms = [self.unary()]
        while True:
            v = self.peek()[1]
            if v == "+":
                self.take()
                terms.append(self.unary())
            elif v == "-":
                self.take()
                terms.append(("neg", self.unary()))
            elif v in ("\\pm", "\\mp"):
                self.take()
                rest = self.unary()
                terms = [("pm", _sum(terms), rest)]
            else:
                break
        return _sum(terms)

    def unary(self):
        v = self.peek()[1]
        if v == "-":
            self.take()
            self.enter()
            node = ("neg", self.unary())
            self.depth -= 1
            return node
        if v == "+":
            self.take()
            return self.unary()
        if v in ("\\pm", "\\mp"):
            self.take()
            return ("pm", None, self.unary())
        return self.product()

    def product(self):
        self.enter()
        factors = [self.power()]
        while True:
            v = self.peek()[1]
            if v in ("*", "\\cdot", "\\times", "\\ast"):
                self.take()
                factors.append(self.power_or_unary())
            elif v in ("/", "\\div"):
                self.take()
                factors = [("div", _prod(factors), self.power_or_unary())]
            elif v == ":":
                self.take()
                factors = [("ratio", _prod(factors), self.power_or_unary())]
            elif v in ("\\bmod", "\\mod"):
                self.take()
                factors = [("mod", _prod(factors), self.power_or_unary())]
            elif self.starts_primary():
                factor = self.power()
                if _is_mixed_number(factors, factor):  # 15\frac{39}{40} is 15 + 39/40
                    factors[-1] = ("add", (factors[-1], factor))
                else:
                    factors.append(factor)
            else:
                break
        self.depth -= 1
        return _prod(factors)

    def power_or_unary(self):
        if self.peek()[1] in ("-", "+"):
            return self.unary()
        return self.power()

    def starts_primary(self):
        kind, v = self.peek()
        if kind in ("num", "word", "begin"):
            return True
        if kind == "cmd":
            return v not in RELATIONS and v not in (
                "\\pm",
                "\\mp",
                "\\cdot",
                "\\times",
                "\\div",
                "\\cup",
                "\\cap",
                "\\bmod",
                "\\mod",
                "\\ast",
                "\\}",
                "\\\\",
                "\\%",
                "\\right",
            )
        if v == "|":
            return self.abs_depth == 0
        return v in ("(", "{", "\\{")

    def power(self):
        base = self.postfix(self.primary())
        op = self.peek()[1]
        if op in ("^", "**"):
            base = self.postfix(("pow", base, self.exponent()))
        return base

    def exponent(self):
        """Right-associative exponent after ^ (one TeX token) or ** (a whole primary)."""
        self.enter()
        tex = self.take()[1] == "^"
        if tex:
            node = self.script_arg(signed=True)
        elif self.peek()[1] in ("-", "+"):
            sign = self.take()[1]
            node = self.primary() if sign == "+" else ("neg", self.primary())
        else:
            node = self.primary()
        if self.peek()[1] in ("^", "**"):
            node = ("pow", node, self.exponent())
        self.depth -= 1
        return node

    def postfix(self, node):
        while True:
            v = self.peek()[1]
            if v == "!":
                self.take()
                node = ("fact", node)
            elif v in ("%", "\\%"):
                self.take()
                node = ("pct", node)
            else:
                return node

    def script_arg(self, signed=False):
        """Argument of ^, _ or a bare \\frac12: a brace group or one token."""
        kind, v = self.peek()
        if v == "{":
            self.take()
            node = self.top(("}",))
            self.expect("}")
            return node
        if signed and v in ("-", "+"):
            self.take()
            arg = self.script_arg()
            return ("neg", arg) if v == "-" else arg
        if kind == "num" and len(v) > 1 and "." not in v:
            # \frac12 and x^23 read one digit at a time, as TeX does.
            self.toks[self.i] = ("num", v[1:])
            return number(v[0])
        if kind == "word" and len(v) > 1:
            self.toks[self.i] = ("word", v[1:])
            return ("sym", v[0])
        return self.primary()

    def primary(self):
        self.enter()
        try:
            return self._primary()
        finally:
            self.depth -= 1

    def _primary(self):
        kind, v = self.take()
        if kind == "num":
            if self.accept("_"):
                return self.base_n(v, self.script_arg())
            return number(v)
        if kind == "word":
            return self.word(v)
        if kind == "begin":
            return self.environment(v)
        if kind == "cmd" and v not in ("\\{", "\\|"):
            return self.command(v)
        if v in ("(", "["):
            return self.bracket(v)
        if v == "{":
            node = self.top(("}",))
            self.expect("}")
            return node
        if v == "\\{":
            node = self.top(("\\}",))
            self.expect("\\}")
            items = node[2] if node[0] == "seq" and node[1] == "list" else (node,)
            return ("seq", "{}", items)
        if v in ("|", "\\|"):
            self.abs_depth += 1
            node = self.additive()
            self.abs_depth -= 1
            if not (self.accept("|") or self.accept("\\|")):
                raise ParseError("unclosed |")
            return ("abs", node)
        raise ParseError(f"unexpected {v!r}")

    def bracket(self, opener):
        if self.peek()[1] in (")", "]"):
            raise ParseError("empty brackets")
        node = self.top((")", "]"))
        closer = self.take()[1]
        if closer not in (")", "]"):
            raise ParseError("unclosed bracket")
        kind = opener + closer
        if node[0] == "seq" and node[1] in ("list", "semi"):  # (0;0;6) is a triple
            return ("seq", kind, node[2])
        if kind == "()":
            return node
        return ("seq", kind, (node,))


def _is_mixed_number(factors, factor):
    def integer(node):
        return node[0] == "num" and node[1].denominator == 1 and "." not in node[2]

    return (
        len(factors) == 1
        and integer(factors[0])
        and factor[0] == "div"
        and integer(factor[1])
        and integer(factor[2])
        and factor[1][1] < factor[2][1]
    )


def _sum(terms):
    return terms[0] if len(terms) == 1 else ("add", tuple(terms))


def _prod(factors):
    return factors[0] if len(factors) == 1 else ("mul", tuple(factors))
