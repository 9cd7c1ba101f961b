"""Answer structures and their equality: labels, lists, sets, tuples, intervals, relations.

``canon`` turns a parsed answer into a small structure that says what kind of answer it
is (a value, an ordered tuple, an unordered list of solutions, an interval, an equation,
...) and ``same`` compares two structures, delegating numbers and expressions to
``_evaluate``.  The conventions are documented in ``posttrain.rewards.math``.
"""

from __future__ import annotations

import math
from fractions import Fraction

from posttrain.rewards._evaluate import (
    EvalError,
    evaluate,
    expressions_equal,
    free_symbols,
    numbers_close,
    proportional,
)

_NEG_INF = ("neg", ("const", "inf"))
_INF = ("const", "inf")
_LESS = ("<", "<=")
_MORE = (">", ">=")


def canon(node):
    """Structure of one parsed answer (see module docstring)."""
    tag = node[0]
    if tag == "rel":
        return _canon_relation(node[1], node[2])
    if tag == "seq":
        return _canon_seq(node[1], node[2])
    if tag in ("cup",):
        return ("union", tuple(_flatten_union(node)))
    if tag == "pm":
        a, b = node[1], node[2]
        if a is None:
            return ("list", (("val", b), ("val", ("neg", b))))
        return ("list", (("val", ("add", (a, b))), ("val", ("add", (a, ("neg", b))))))
    if tag == "pct":
        return ("pct", node[1])
    if tag == "mat":
        return ("mat", node)
    if tag == "text":
        return ("text", " ".join(node[1].lower().split()))
    return ("val", node)


def _flatten_union(node):
    if node[0] == "cup":
        return _flatten_union(node[1]) + _flatten_union(node[2])
    return [canon(node)]


def _canon_seq(kind, items):
    if kind in ("[]", "(]", "[)") and len(items) == 2:
        return ("interval", items[0], items[1], kind[0] == "[", kind[1] == "]")
    if kind in ("[]", "()") and len(items) == 1:
        return canon(items[0])
    if kind in ("()", "[]"):
        return ("tuple", tuple(canon(i) for i in items))
    if kind == "{}":
        return ("set", _canon_list(items)[1] if items else ())
    if kind == "semi":
        return ("list", tuple(_group(i) for i in items))
    return _canon_list(items)


def _group(node):
    if node[0] == "seq" and node[1] == "list":
        inner = _canon_list(node[2])
        if inner[0] == "assigns":
            return ("tuple", tuple(v for _, v in inner[1]))
        return ("tuple", inner[1])
    return canon(node)


def _canon_list(items):
    parts = [canon(i) for i in items]
    flat = []
    for p in parts:  # a list of solutions can hold a +- pair: flatten it
        if p[0] == "list" and len(items) > 1:
            flat.extend(p[1])
        else:
            flat.append(p)
    labels = [p[1] for p in flat if p[0] == "assign"]
    if flat and len(labels) == len(flat):
        if len(set(labels)) == len(labels):
            return ("assigns", tuple((p[1], p[2]) for p in flat))
        period = labels.index(labels[0], 1) if labels.count(labels[0]) > 1 else len(labels)
        if len(labels) % period == 0 and all(labels[i] == labels[i % period] for i in range(len(labels))):
            values = [p[2] for p in flat]
            if period == 1:
                return ("list", tuple(values))
            return ("list", tuple(("tuple", tuple(values[i : i + period])) for i in range(0, len(values), period)))
    return ("list", tuple(p[2] if p[0] == "assign" else p for p in flat))


def is_label(node) -> bool:
    """x, a_3, f(x), |AB|, AB, (p, q), S:T -- a name for the answer, not part of it."""
    tag = node[0]
    if tag == "sym":
        return True
    if tag == "func":
        return node[1].startswith(("f:", "idx:"))
    if tag == "mul":
        return all(is_label(f) for f in node[1])
    if tag in ("div", "ratio"):
        return is_label(node[1]) and is_label(node[2])
    if tag == "abs":
        return is_label(node[1])
    if tag == "seq" and node[1] == "()":
        return all(is_label(i) for i in node[2])
    return False


def _is_constant(node) -> bool:
    return not free_symbols(node)


def _label_key(node) -> str:
    return repr(node)


def _canon_relation(ops, exprs):
    if "~" in ops:  # x = 1/3 \approx 0.33: the exact part counts
        k = ops.index("~")
        if k == 0 and is_label(exprs[0]):
            return canon(exprs[1]) if len(exprs) == 2 else _canon_relation(ops[1:], exprs[1:])
        if k == 0:
            return canon(exprs[0])
        return _canon_relation(ops[:k], exprs[: k + 1])
    if ops[-1] == "in":
        return canon(exprs[-1])
    if all(op == "=" for op in ops):
        first, last = exprs[0], exprs[-1]
        if is_label(first) and not _is_constant(first):
            return ("assign", _label_key(first), canon(last), ("add", (first, ("neg", last))))
        if len(exprs) > 2 or (_is_constant(first) and _is_constant(last)):
            return canon(last)  # a worked calculation: sqrt(4) = 2
        if is_label(last) and _is_constant(first):
            return ("assign", _label_key(last), canon(first), ("add", (last, ("neg", first))))
        return ("eq", ("add", (first, ("neg", last))))
    if all(op in _LESS for op in ops) or all(op in _MORE for op in ops):
        return _canon_inequality(ops, exprs)
    if ops == ("!=",):
        return ("ineq", "!=", ("add", (exprs[0], ("neg", exprs[1]))))
    return ("other", (ops, exprs))


def _canon_inequality(ops, exprs):
    if ops[0] in _MORE:  # write every chain with < and <=
        ops = tuple("<" if op == ">" else "<=" for op in reversed(ops))
        exprs = tuple(reversed(exprs))
    if len(exprs) == 2:
        a, b = exprs
        flipped = tuple(">" if op == "<" else ">=" for op in ops)
        if a[0] == "neg" and is_label(a[1]) and _is_constant(b):  # -x < 1 is x > -1
            return _canon_inequality(flipped, (a[1], ("neg", b)))
        if b[0] == "neg" and is_label(b[1]) and _is_constant(a):
            return _canon_inequality(flipped, (("neg", a), b[1]))
        if is_label(a) and _is_constant(b):
            return ("interval", _NEG_INF, b, False, ops[0] == "<=")
        if is_label(b) and _is_constant(a):
            return ("interval", a, _INF, ops[0] == "<=", False)
        return ("ineq", ops[0], ("add", (b, ("neg", a))))
    if len(exprs) == 3 and is_label(exprs[1]) and _is_constant(exprs[0]) and _is_constant(exprs[2]):
        return ("interval", exprs[0], exprs[2], ops[0] == "<=", ops[1] == "<=")
    return ("other", (ops, exprs))


# -- equality -----------------------------------------------------------------


def same(a, b) -> bool:
    """True when two answer structures denote the same answer."""
    ka, kb = a[0], b[0]
    if ka == "assign" and kb == "eq" or ka == "eq" and kb == "assign":
        # y = -x/2 + 3/4 against 2x + 4y - 3 = 0: compare as equations
        return proportional(a[-1] if ka == "assign" else a[1], b[-1] if kb == "assign" else b[1])
    if ka == "assign" or kb == "assign":
        va = a[2] if ka == "assign" else a
        vb = b[2] if kb == "assign" else b
        return same(va, vb)
    if ka == "pct" or kb == "pct":
        return _same_percent(a, b)
    if ka == "val" and kb == "val":
        return values_equal(a[1], b[1])
    if ka in ("mat", "val") and kb in ("mat", "val"):
        return _same_matrix(a[1], b[1])
    if ka == "interval" or kb == "interval":
        return _same_interval(a, b)
    if ka in ("list", "set", "tuple", "assigns") and kb in ("list", "set", "tuple", "assigns"):
        return _same_collection(a, b)
    # {4} = 4, and "\boxed{15\frac{39}{40}} or \boxed{\frac{639}{40}}" = 639/40: every
    # element must match, so hedging with different answers never passes.
    if ka in ("list", "set") and a[1]:
        return all(same(x, b) for x in a[1])
    if kb in ("list", "set") and b[1]:
        return all(same(a, y) for y in b[1])
    if ka == "union" and kb == "union":
        return _same_unordered(a[1], b[1])
    if ka == "eq" and kb == "eq":
        return proportional(a[1], b[1])
    if ka == "ineq" and kb == "ineq":
        return a[1] == b[1] and proportional(a[2], b[2], sign=0 if a[1] == "!=" else 1)
    if ka == "text" and kb == "text":
        return a[1] == b[1]
    return False


def _items(struct):
    if struct[0] == "assigns":
        return tuple(v for _, v in struct[1])
    return struct[1]


def _same_collection(a, b):
    ka, kb = a[0], b[0]
    if ka == "assigns" and kb == "assigns":
        la, lb = dict(a[1]), dict(b[1])
        if set(la) == set(lb):
            return all(same(la[k], lb[k]) for k in la)
    ia, ib = _items(a), _items(b)
    ordered = "tuple" in (ka, kb) or "assigns" in (ka, kb)
    if ordered and "set" not in (ka, kb):
        return len(ia) == len(ib) and all(same(x, y) for x, y in zip(ia, ib))
    if "tuple" in (ka, kb):
        return False
    return _same_unordered(ia, ib)


def _same_unordered(ia, ib):
    if len(ia) * len(ib) > 400:
        return False
    return all(any(same(x, y) for y in ib) for x in ia) and all(any(same(x, y) for x in ia) for y in ib)


def _same_interval(a, b):
    if a[0] == "tuple" and len(a[1]) == 2:
        a = ("interval", a[1][0][1], a[1][1][1], False, False) if _all_vals(a) else a
    if b[0] == "tuple" and len(b[1]) == 2:
        b = ("interval", b[1][0][1], b[1][1][1], False, False) if _all_vals(b) else b
    if a[0] == "union" and len(a[1]) == 1:
        a = a[1][0]
    if b[0] == "union" and len(b[1]) == 1:
        b = b[1][0]
    if a[0] != "interval" or b[0] != "interval":
        return False
    return a[3:] == b[3:] and values_equal(a[1], b[1]) and values_equal(a[2], b[2])


def _all_vals(struct):
    return all(x[0] == "val" for x in struct[1])


def _same_percent(a, b):
    va = a[1] if a[0] == "pct" else None
    vb = b[1] if b[0] == "pct" else None
    if va is not None and vb is not None:
        return values_equal(va, vb)
    # 28% may be written 28 or 0.28: accept either reading of the bare number.
    pct, other = (va, b) if va is not None else (vb, a)
    if other[0] != "val":
        return False
    return values_equal(pct, other[1]) or values_equal(("div", pct, ("num", Fraction(100), "100")), other[1])


def _same_matrix(x, y):
    try:
        vx, vy = evaluate(x), evaluate(y)
    except EvalError:
        if x[0] == "mat" and y[0] == "mat":
            rx, ry = x[2], y[2]
            return (
                len(rx) == len(ry)
                and all(len(r) == len(s) for r, s in zip(rx, ry))
                and all(values_equal(p, q) for r, s in zip(rx, ry) for p, q in zip(r, s))
            )
        return False
    if x[0] == "mat" and y[0] == "mat":
        rx, ry = x[2], y[2]
        if len(rx) == len(ry) and all(len(r) == len(s) for r, s in zip(rx, ry)):
            return all(values_equal(p, q) for r, s in zip(rx, ry) for p, q in zip(r, s))
    return numbers_close(vx, vy)


def values_equal(x, y) -> bool:
    """Two expressions are equal, or one is a decimal that rounds the other (>= 2 places)."""
    if x == y or expressions_equal(x, y):
        return True
    return _rounds_to(x, y) or _rounds_to(y, x)


def _decimal_literal(node):
    sign = 1
    if node[0] == "neg":
        sign, node = -1, node[1]
    if node[0] == "num" and "." in node[2]:
        places = len(node[2].split(".")[1])
        return sign * node[1], places
    return None, 0


def _rounds_to(literal, other):
    value, places = _decimal_literal(literal)
    if value is None or places < 2:
        return False
    try:
        exact = evaluate(other)
    except EvalError:
        return False
    if isinstance(exact, tuple):
        return False
    if isinstance(exact, Fraction):
        den = exact.denominator
        while den % 2 == 0:
            den //= 2
        while den % 5 == 0:
            den //= 5
        if den == 1:  # a terminating decimal must be written exactly
            return False
        target = exact
    else:
        if abs(exact.imag) > 1e-12 or not math.isfinite(exact.real):
            return False
        target = Fraction(exact.real)
    step = Fraction(1, 10**places)
    return abs(target - value) <= step / 2 or (abs(target) > abs(value) and abs(target - value) < step)
