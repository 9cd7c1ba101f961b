"""Countdown: combine the given numbers with + - * to reach a target, each number used once.

The worked solution states each step (`8*3=24 24+5=29`) and the answer is one expression
(`8*3+5`); the `countdown` reward checks the expression's value and the numbers it uses.
"""

from __future__ import annotations

import random

_OPS = "+-*"


def _combine(a: int, b: int, op: str) -> int:
    return a + b if op == "+" else a - b if op == "-" else a * b


def make_problem(rng: random.Random, count: int, low: int, high: int, max_target: int) -> dict:
    while True:
        numbers = [rng.randint(low, high) for _ in range(count)]
        order = numbers[:]
        rng.shuffle(order)
        value, expr, steps = order[0], str(order[0]), []
        for num in order[1:]:
            op = rng.choice(_OPS)
            new = _combine(value, num, op)
            steps.append(f"{value}{op}{num}={new}")
            # Left-to-right evaluation needs brackets when a product follows a sum.
            expr = f"({expr}){op}{num}" if op == "*" and ("+" in expr or "-" in expr) else f"{expr}{op}{num}"
            value = new
        if 0 < value <= max_target:
            break
    question = f"Use {' '.join(map(str, numbers))} to make {value}"
    solution = f"<think>{' '.join(steps)}</think><answer>{expr}</answer>"
    return {
        "question": question,
        "answer": str(value),
        "numbers": numbers,
        "solution": solution,
    }


def generate(n: int, seed: int, count: int = 3, low: int = 1, high: int = 20, max_target: int = 200) -> list[dict]:
    """`n` Countdown problems with `count` numbers in [low, high] and a reachable target.

    >>> row = generate(1, seed=0)[0]
    >>> sorted(row) == ['answer', 'numbers', 'question', 'solution']
    True
    """
    if count < 2:
        raise ValueError("count must be at least 2")
    rng = random.Random(seed)
    return [make_problem(rng, count, low, high, max_target) for _ in range(n)]
