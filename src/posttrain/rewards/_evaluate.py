"""Bounded numeric evaluation of parsed answers, and equality of two expressions.

Values are exact ``Fraction`` while the arithmetic stays rational, ``complex`` once an
irrational (sqrt, pi, trig) enters, or a tuple of row tuples for a matrix.  Expressions
with free symbols are compared by evaluating both sides at a few fixed pseudo-random
points (the Schwartz-Zippel idea): ``2(x+1)`` and ``2x+2`` agree everywhere, ``x+1`` and
``x+2`` nowhere.  This replaces sympy's ``simplify`` -- it is ~100x faster, needs no
timeout, and a step budget plus size limits on every power and factorial bound it.
"""

from __future__ import annotations

import cmath
import math
import zlib
from fractions import Fraction

MAX_BITS = 8192  # largest exact rational kept (numerator or denominator bits)
MAX_EXPONENT = 10_000
MAX_FACTORIAL = 300
MAX_TERMS = 1000  # terms of one \sum or \prod
STEP_BUDGET = 20_000  # node evaluations per comparison
REL_TOL = 1e-9
INF = complex(math.inf, 0)


class EvalError(ValueError):
    """The expression has no finite value here (domain error, too big, not numeric)."""


class FreeSymbol(EvalError):
    """The expression mentions a symbol with no value in the environment."""


class Budget:
    def __init__(self, steps=STEP_BUDGET):
        self.steps = steps

    def spend(self):
        self.steps -= 1
        if self.steps < 0:
            raise EvalError("step budget exhausted")


def evaluate(node, env=None, budget=None):
    """Value of *node* with symbols bound by *env*; raises EvalError/FreeSymbol."""
    try:
        return _eval(node, env or {}, budget or Budget())
    except EvalError:
        raise
    except (ArithmeticError, ValueError, TypeError, RecursionError) as exc:
        # float overflow, math domain errors: this expression has no value here
        raise EvalError(f"{type(exc).__name__}: {exc}") from exc


def _eval(node, env, budget):
    budget.spend()
    tag = node[0]
    if tag == "num":
        return node[1]
    if tag == "sym":
        if node[1] in env:
            return env[node[1]]
        raise FreeSymbol(node[1])
    if tag == "const":
        return {"pi": complex(math.pi), "e": complex(math.e), "i": 1j, "inf": INF}[node[1]]
    if tag == "add":
        total = Fraction(0)
        for term in node[1]:
            total = _add(total, _eval(term, env, budget))
        return total
    if tag == "mul":
        total = Fraction(1)
        for factor in node[1]:
            total = _mul(total, _eval(factor, env, budget))
        return total
    if tag == "neg":
        return _mul(Fraction(-1), _eval(node[1], env, budget))
    if tag in ("div", "ratio"):
        return _div(_eval(node[1], env, budget), _eval(node[2], env, budget))
    if tag == "pow":
        return _pow(_eval(node[1], env, budget), _eval(node[2], env, budget))
    if tag == "pct":
        return _div(_eval(node[1], env, budget), Fraction(100))
    if tag == "fact":
        n = _eval(node[1], env, budget)
        if not _is_int(n) or not 0 <= n <= MAX_FACTORIAL:
            raise EvalError("factorial out of range")
        return Fraction(math.factorial(int(n)))
    if tag == "abs":
        v = _eval(node[1], env, budget)
        return abs(v) if isinstance(v, Fraction) else complex(abs(_num(v)))
    if tag == "mod":
        a, b = _eval(node[1], env, budget), _eval(node[2], env, budget)
        if not (_is_int(a) and _is_int(b)) or b == 0:
            raise EvalError("mod needs integers")
        return a % b
    if tag == "func":
        return _func(node[1], [_eval(a, env, budget) for a in node[2]])
    if tag in ("sum", "prod"):
        return _big_operator(node, env, budget)
    if tag == "mat" and node[1] not in ("vmatrix", "Vmatrix"):
        return tuple(tuple(_scalar(_eval(x, env, budget)) for x in row) for row in node[2])
    raise EvalError(f"not a number: {tag}")


def _scalar(v):
    if isinstance(v, tuple):
        raise EvalError("nested matrix")
    return v


def _num(v):
    if isinstance(v, tuple):
        raise EvalError("matrix where a number was expected")
    return v


def _is_int(v):
    return isinstance(v, Fraction) and v.denominator == 1


def _check(v):
    if isinstance(v, Fraction):
        if v.numerator.bit_length() > MAX_BITS or v.denominator.bit_length() > MAX_BITS:
            raise EvalError("number too large")
        return v
    if isinstance(v, complex) and (math.isnan(v.real) or math.isnan(v.imag)):
        raise EvalError("nan")
    return v


def _add(a, b):
    if isinstance(a, tuple) or isinstance(b, tuple):
        if not (isinstance(a, tuple) and isinstance(b, tuple)):
            if a == 0:
                return b
            raise EvalError("matrix plus scalar")
        if len(a) != len(b) or len(a[0]) != len(b[0]):
            raise EvalError("shape mismatch")
        return tuple(tuple(_add(x, y) for x, y in zip(ra, rb)) for ra, rb in zip(a, b))
    if isinstance(a, Fraction) and isinstance(b, Fraction):
        return _check(a + b)
    return _check(complex(a) + complex(b))


def _mul(a, b):
    if isinstance(a, tuple) or isinstance(b, tuple):
        if not isinstance(a, tuple):
            return tuple(tuple(_mul(a, x) for x in row) for row in b)
        if not isinstance(b, tuple):
            return tuple(tuple(_mul(x, b) for x in row) for row in a)
        if len(a[0]) != len(b):
            raise EvalError("shape mismatch")
        cols = list(zip(*b))
        out = []
        for row in a:
            cells = []
            for col in cols:
                acc = Fraction(0)
                for x, y in zip(row, col):
                    acc = _add(acc, _mul(x, y))
                cells.append(acc)
            out.append(tuple(cells))
        return tuple(out)
    if isinstance(a, Fraction) and isinstance(b, Fraction):
        return _check(a * b)
    if a == 0 or b == 0:
        return Fraction(0)
    return _check(complex(a) * complex(b))


def _div(a, b):
    b = _num(b)
    if b == 0:
        raise EvalError("division by zero")
    if isinstance(a, tuple):
        return _mul(a, _div(Fraction(1), b))
    if isinstance(a, Fraction) and isinstance(b, Fraction):
        return _check(a / b)
    if _is_inf(b):
        raise EvalError("division by infinity")
    return _check(complex(a) / complex(b))


def _is_inf(v):
    return isinstance(v, complex) and (math.isinf(v.real) or math.isinf(v.imag))


def _pow(base, exp):
    base, exp = _num(base), _num(exp)
    if isinstance(exp, Fraction) and isinstance(base, Fraction):
        if exp.denominator == 1:
            e = exp.numerator
            if abs(e) > MAX_EXPONENT:
                raise EvalError("exponent too large")
            size = max(base.numerator.bit_length(), base.denominator.bit_length())
            if size * abs(e) > MAX_BITS:
                raise EvalError("power too large")
            if base == 0 and e < 0:
                raise EvalError("division by zero")
            return base**e
        root = _exact_root(base, exp)
        if root is not None:
            return root
    b, e = complex(base), complex(exp)
    if _is_inf(b) or _is_inf(e) or abs(e) > MAX_EXPONENT:
        raise EvalError("power too large")
    if b == 0:
        if e.real > 0:
            return Fraction(0)
        raise EvalError("zero to a non-positive power")
    if abs(e) * abs(math.log(abs(b))) > 700:
        raise EvalError("power too large")
    if b.imag == 0 and b.real > 0 and e.imag == 0:
        return complex(b.real**e.real)
    return _check(cmath.exp(e * cmath.log(b)))


def _exact_root(base, exp):
    """Exact rational value of base**(p/q) for perfect powers (8^(2/3) = 4), else None."""
    p, q = exp.numerator, exp.denominator
    if base < 0 or q > 12 or abs(p) > MAX_EXPONENT:
        return None
    roots = []
    for part in (base.numerator, base.denominator):
        if part.bit_length() > 256:
            return None
        r = round(part ** (1.0 / q))
        r = next((c for c in (r - 1, r, r + 1) if c >= 0 and c**q == part), None)
        if r is None:
            return None
        roots.append(r)
    return _pow(Fraction(roots[0], roots[1]), Fraction(p))


_FUNCS = {
    "sin": cmath.sin,
    "cos": cmath.cos,
    "tan": cmath.tan,
    "sinh": cmath.sinh,
    "cosh": cmath.cosh,
    "tanh": cmath.tanh,
    "arcsin": cmath.asin,
    "arccos": cmath.acos,
    "arctan": cmath.atan,
    "exp": cmath.exp,
    "sec": lambda z: 1 / cmath.cos(z),
    "csc": lambda z: 1 / cmath.sin(z),
    "cot": lambda z: 1 / cmath.tan(z),
}


def _func(name, args):
    args = [_num(a) for a in args]
    if name == "sqrt":
        return _pow(args[0], Fraction(1, 2))
    if name in ("ln", "log", "lg"):
        if any(a == 0 or _is_inf(a) for a in args):
            raise EvalError("log of zero")
        value = cmath.log(complex(args[0]))
        if len(args) == 2:
            value /= cmath.log(complex(args[1]))
        elif name == "lg":
            value /= math.log(10)
        return _check(value)
    if name == "binom":
        n, k = args
        if not (_is_int(n) and _is_int(k)) or not 0 <= n <= 1000:
            raise EvalError("binomial out of range")
        return Fraction(math.comb(int(n), int(k))) if k >= 0 else Fraction(0)
    if name in _FUNCS:
        z = complex(args[0])
        if _is_inf(z) or abs(z) > 1e6:
            raise EvalError("argument too large")
        try:
            return _check(complex(_FUNCS[name](z)))
        except (ValueError, ZeroDivisionError, OverflowError) as exc:
            raise EvalError(str(exc)) from exc
    # An unknown function f(x) or indexed symbol a_{n+1}: a fixed pseudo-random value of
    # its name and arguments, so f(x) == f(x) and F_{n-1} != F_{n-2}.
    key = name + repr([(round(complex(a).real, 9), round(complex(a).imag, 9)) for a in args])
    return complex(1 + zlib.crc32(key.encode()) / 2**32)


def _big_operator(node, env, budget):
    tag, var, lo, hi, body = node
    lo, hi = _eval(lo, env, budget), _eval(hi, env, budget)
    if not (_is_int(lo) and _is_int(hi)) or hi - lo > MAX_TERMS:
        raise EvalError("bad summation bounds")
    acc = Fraction(0) if tag == "sum" else Fraction(1)
    for k in range(int(lo), int(hi) + 1):
        value = _eval(body, {**env, var: Fraction(k)}, budget)
        acc = _add(acc, value) if tag == "sum" else _mul(acc, value)
    return acc


# -- comparison ---------------------------------------------------------------


def numbers_close(a, b, tol=REL_TOL):
    """Exact equality for rationals, relative tolerance once either side is inexact."""
    if isinstance(a, tuple) or isinstance(b, tuple):
        if not (isinstance(a, tuple) and isinstance(b, tuple)) or len(a) != len(b):
            return False
        return all(len(ra) == len(rb) and all(numbers_close(x, y, tol) for x, y in zip(ra, rb)) for ra, rb in zip(a, b))
    if isinstance(a, Fraction) and isinstance(b, Fraction):
        return a == b
    a, b = complex(a), complex(b)
    if _is_inf(a) or _is_inf(b):
        return a == b
    return abs(a - b) <= tol * max(1.0, abs(a), abs(b))


_TAGS = {
    "num",
    "sym",
    "const",
    "add",
    "mul",
    "div",
    "pow",
    "neg",
    "pm",
    "fact",
    "pct",
    "abs",
    "mod",
    "ratio",
    "func",
    "sum",
    "prod",
    "seq",
    "rel",
    "cup",
    "cap",
    "mat",
    "text",
}


def free_symbols(node, out=None):
    """Names of the symbols in *node* (bound summation variables excluded)."""
    out = set() if out is None else out
    if not isinstance(node, tuple) or not node:
        return out
    if not (isinstance(node[0], str) and node[0] in _TAGS):
        for child in node:
            free_symbols(child, out)
        return out
    if node[0] == "sym":
        out.add(node[1])
    elif node[0] in ("sum", "prod"):
        inner = free_symbols(node[4])
        inner.discard(node[1])
        out |= inner
        free_symbols(node[2:4], out)
    else:
        for child in node[1:]:
            free_symbols(child, out)
    return out


NEGATIVE_POINT = 2


def _points(names):
    """Fixed sample points: two real ones in (0.3, 2.9), one in (-2.9, -0.3) so that |x|
    and x differ, and two of small integers (sums need integer bounds)."""
    names = sorted(names)
    points = []
    for k in range(3):
        sign = -1 if k == NEGATIVE_POINT else 1
        points.append({n: complex(sign * (0.3 + (zlib.crc32(f"{n}:{k}".encode()) % 2600) / 1000)) for n in names})
    points.append({n: Fraction(2 + i % 7 + (i // 7) * 3) for i, n in enumerate(names)})
    points.append({n: Fraction(9 - i % 5 + (i // 5) * 4) for i, n in enumerate(names)})
    return points


def sample(node, names, budget=None):
    """Values of *node* at the fixed points for *names*; None where undefined."""
    budget = budget or Budget()
    values = []
    for env in _points(names):
        try:
            values.append(evaluate(node, env, budget))
        except FreeSymbol:
            raise
        except EvalError:
            values.append(None)
    return values


def expressions_equal(a, b, tol=REL_TOL):
    """True when two expression ASTs agree as numbers (exactly, or at every sample point)."""
    names = free_symbols(a) | free_symbols(b)
    budget = Budget()
    if not names:
        try:
            return numbers_close(evaluate(a, {}, budget), evaluate(b, {}, budget), tol)
        except EvalError:
            return False
    try:
        va, vb = sample(a, names, budget), sample(b, names, budget)
    except EvalError:
        return False
    agree = 0
    for k, (x, y) in enumerate(zip(va, vb)):
        if k == NEGATIVE_POINT and (_not_real(x) or _not_real(y)):
            continue  # log x, sqrt x leave the reals there: 2 log x = log x^2 for x > 0
        if x is None and y is None:
            continue
        if x is None or y is None or not numbers_close(x, y, 1e-7):
            return False
        agree += 1
    return agree >= 2


def _not_real(v):
    return v is None or (isinstance(v, complex) and abs(v.imag) > 1e-9 * max(1.0, abs(v.real)))


def proportional(a, b, sign=0):
    """True when a = c*b for one constant c (c > 0 if sign > 0): same equation/inequality."""
    names = free_symbols(a) | free_symbols(b)
    try:
        va, vb = sample(a, names), sample(b, names)
    except EvalError:
        return False
    ratio, agree = None, 0
    for x, y in zip(va, vb):
        if x is None or y is None or isinstance(x, tuple) or isinstance(y, tuple):
            if (x is None) != (y is None):
                return False
            continue
        x, y = complex(x), complex(y)
        if abs(y) < 1e-12 or abs(x) < 1e-12:
            if abs(y) < 1e-12 and abs(x) < 1e-12:
                continue
            return False
        r = x / y
        if ratio is None:
            ratio = r
        elif abs(r - ratio) > 1e-7 * max(1.0, abs(ratio)):
            return False
        agree += 1
    if ratio is None or agree < 2 or abs(ratio.imag) > 1e-9:
        return False
    return sign <= 0 or ratio.real > 0
