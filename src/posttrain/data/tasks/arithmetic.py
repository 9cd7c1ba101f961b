"""Multi-step arithmetic (a+b+c...) with worked reasoning the step-checking reward can verify.

A problem `12+34+5` has the worked solution
`<think>12+34=46 46+5=51</think><answer>51</answer>`: one `x op y = z` step per operator,
left to right, so both the final answer and every intermediate step are checkable.
"""

from __future__ import annotations

import random


def _solve(terms: list[int], ops: list[str]) -> tuple[list[str], int]:
    total, steps = terms[0], []
    for op, term in zip(ops, terms[1:]):
        new = total + term if op == "+" else total - term
        steps.append(f"{total}{op}{term}={new}")
        total = new
    return steps, total


def make_problem(rng: random.Random, num_terms: int, low: int, high: int, ops: str) -> dict:
    terms = [rng.randint(low, high) for _ in range(num_terms)]
    chosen = [rng.choice(ops) for _ in range(num_terms - 1)]
    steps, total = _solve(terms, chosen)
    question = terms[0].__str__() + "".join(f"{op}{t}" for op, t in zip(chosen, terms[1:]))
    solution = f"<think>{' '.join(steps)}</think><answer>{total}</answer>"
    return {"question": question, "answer": str(total), "solution": solution}


def generate(
    n: int, seed: int, num_terms: int = 3, low: int = 1, high: int = 99, ops: str = "+"
) -> list[dict]:
    """`n` problems of `num_terms` integers in [low, high] joined by operators drawn from `ops`.

    >>> generate(1, seed=0, num_terms=2, low=1, high=9)[0]["solution"]
    '<think>7+7=14</think><answer>14</answer>'
    """
    if num_terms < 2:
        raise ValueError("num_terms must be at least 2")
    if not ops or set(ops) - {"+", "-"}:
        raise ValueError("ops must be a non-empty string of '+' and '-'")
    rng = random.Random(seed)
    return [make_problem(rng, num_terms, low, high, ops) for _ in range(n)]
