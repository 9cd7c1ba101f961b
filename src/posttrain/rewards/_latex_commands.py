"""LaTeX vocabulary for the answer parser: names, subscripts, functions, \\frac, \\sum, matrices.

A mixin of ``_latex._Parser``: these methods parse one construct each and call back into
the grammar (``top``, ``power``, ``script_arg``...) for their arguments.
"""

from __future__ import annotations

from fractions import Fraction

from posttrain.rewards._lexer import FUNC_LETTERS, FUNCS, GREEK, MATRIX_ENVS, ParseError, number

_TEXT_COMMANDS = ("text", "mathrm", "textbf", "mbox", "textnormal", "mathit", "operatorname")
_SIZING = ("left", "right", "big", "Big", "bigl", "bigr", "Bigl", "Bigr")


class LatexCommands:
    def base_n(self, digits, base):
        """204_5 is 204 in base 5; any valid digits read as an exact integer."""
        if base[0] != "num" or not 2 <= base[1] <= 36 or not digits.isdigit():
            raise ParseError("bad base subscript")
        try:
            value = int(digits, int(base[1]))
        except ValueError as exc:
            raise ParseError("digit out of range for base") from exc
        return ("num", Fraction(value), str(value))

    def word(self, w):
        low = w.lower() if len(w) > 2 else w
        if low in ("pi",):
            return ("const", "pi")
        if low in ("inf", "infty", "infinity", "oo"):
            return ("const", "inf")
        if low in FUNCS:
            return self.function(low)
        if len(w) > 2:
            raise ParseError("prose, not math")
        if len(w) > 1:
            # Plain-text products such as "ab": one letter at a time.
            self.toks.insert(self.i, ("word", w[1:]))
            w = w[0]
        return self.symbol(w)

    def symbol(self, name):
        if self.accept("_"):
            label = self.word_subscript()
            if label:
                return ("sym", f"{name}_{label}")
            sub = self.script_arg()
            if sub[0] == "num" and name.isalpha() and self.peek()[1] != "(":
                return ("sym", f"{name}_{sub[2]}")
            return ("func", "idx:" + name, (sub,))
        if name in FUNC_LETTERS and self.peek()[1] == "(":
            self.take()
            args = self.top((")",))
            self.expect(")")
            items = args[2] if args[0] == "seq" else (args,)
            return ("func", "f:" + name, tuple(items))
        if name == "e":
            return ("const", "e")
        if name == "i":
            return ("const", "i")
        return ("sym", name)

    def word_subscript(self):
        """S_{MBCN}, a_{37}: a subscript made only of letters and digits is part of a name."""
        if self.peek()[1] != "{":
            return None
        parts, j = [], self.i + 1
        while j < len(self.toks) and self.toks[j][0] in ("word", "num") and len(parts) < 8:
            parts.append(self.toks[j][1])
            j += 1
        if not parts or j >= len(self.toks) or self.toks[j][1] != "}":
            return None
        if len(parts) == 1 and parts[0].isalpha() and len(parts[0]) == 1:
            return None  # F_{k}: an index that may be a summation variable
        self.i = j + 1
        return "".join(parts)

    def function(self, name):
        power = None
        base = None
        if name == "log" and self.accept("_"):
            base = self.script_arg()
        if self.accept("^"):
            power = self.script_arg(signed=True)
        if name == "sqrt":
            return self.sqrt()
        if self.peek()[1] == "(":
            arg = self.primary()
        else:
            arg = self.power()
        node = ("func", name, (arg,) if base is None else (arg, base))
        if power is not None:
            if power == ("neg", ("num", Fraction(1), "1")):
                node = ("func", "arc" + name, (arg,))
            else:
                node = ("pow", node, power)
        return node

    def sqrt(self):
        index = None
        if self.accept("["):
            index = self.top(("]",))
            self.expect("]")
        arg = self.script_arg()
        if index is None:
            return ("func", "sqrt", (arg,))
        return ("pow", arg, ("div", number("1"), index))

    def command(self, c):
        name = c[1:]
        if name in ("frac", "dfrac", "tfrac", "cfrac"):
            num = self.script_arg()
            return ("div", num, self.script_arg())
        if name == "binom" or name == "choose":
            a = self.script_arg()
            return ("func", "binom", (a, self.script_arg()))
        if name == "sqrt":
            return self.sqrt()
        if name in FUNCS:
            return self.function(name)
        if name in ("pi", "varpi"):
            return ("const", "pi")
        if name == "infty":
            return ("const", "inf")
        if name in GREEK:
            return self.symbol(name)
        if name in ("sum", "prod"):
            return self.big_operator(name)
        if name in _TEXT_COMMANDS:
            self.expect("{")
            words = []
            while self.peek()[1] != "}" and self.peek()[0] != "eof":
                words.append(self.take()[1])
            self.expect("}")
            return ("text", " ".join(words))
        if name in _SIZING:
            return self.primary()
        raise ParseError(f"unsupported command {c}")

    def big_operator(self, name):
        self.expect("_")
        self.expect("{")
        var = self.take()
        if var[0] != "word" or len(var[1]) != 1:
            raise ParseError("bad summation variable")
        self.expect("=")
        lo = self.top(("}",))
        self.expect("}")
        self.expect("^")
        hi = self.script_arg()
        body = self.product()
        return (name, var[1], lo, hi, body)

    def environment(self, env):
        if env not in MATRIX_ENVS:
            raise ParseError(f"unsupported environment {env}")
        rows, row = [], []
        while True:
            kind, v = self.peek()
            if kind == "end":
                self.take()
                break
            if kind == "eof":
                raise ParseError("unclosed environment")
            if v == "\\\\":
                self.take()
                if row:
                    rows.append(tuple(row))
                row = []
                continue
            if v == "&":
                self.take()
                continue
            row.append(self.relation(("&", "\\\\")))
        if row:
            rows.append(tuple(row))
        if not rows or len({len(r) for r in rows}) != 1:
            raise ParseError("ragged matrix")
        return ("mat", env, tuple(rows))
