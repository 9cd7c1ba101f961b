"""Multi-step arithmetic (a+b+c...) with worked reasoning the step-checking reward can verify.

A problem `12+34+5` has the worked solution
`<think>12+34=46 46+5=51</think><answer>51</answer>`: one `x op y = z` step per operator,
left to right, so both the final answer and every intermediate step are checkable.

`slip_rate` makes the worked solutions those of an imperfect teacher, as real traces are: that
fraction of them holds one slip, like a person's or a model's. `slip="step"`: one step's result is
off by 1-9 and the rest of the chain carries the error to the answer; `slip="answer"`: the chain is
right and the answer is miscopied, off by 1-9. Only `solution` changes: `answer` stays the true
result (what rewards and evaluation check), and the problems are the same with or without slips.
"""

from __future__ import annotations

import random


def _solve(terms: list[int], ops: list[str], slip_at: int | None = None, slip_by: int = 0) -> tuple[list[str], int]:
    """The chain's steps and its result; step `slip_at` (if any) is off by `slip_by`, carried on."""
    total, steps = terms[0], []
    for i, (op, term) in enumerate(zip(ops, terms[1:])):
        new = total + term if op == "+" else total - term
        if i == slip_at:
            new += slip_by
        steps.append(f"{total}{op}{term}={new}")
        total = new
    return steps, total


def make_problem(rng: random.Random, num_terms: int, low: int, high: int, ops: str) -> dict:
    terms = [rng.randint(low, high) for _ in range(num_terms)]
    chosen = [rng.choice(ops) for _ in range(num_terms - 1)]
    steps, total = _solve(terms, chosen)
    question = terms[0].__str__() + "".join(f"{op}{t}" for op, t in zip(chosen, terms[1:]))
    solution = f"<think>{' '.join(steps)}</think><answer>{total}</answer>"
    return {"question": question, "answer": str(total), "solution": solution, "terms": terms, "ops": chosen}


def with_slip(row: dict, rng: random.Random, slip: str) -> dict:
    """`row` whose worked solution makes one slip of kind `slip` (the gold answer is unchanged)."""
    by = rng.choice([d for d in range(-9, 10) if d])
    if slip == "step":
        steps, total = _solve(row["terms"], row["ops"], slip_at=rng.randrange(len(row["ops"])), slip_by=by)
        answer = total
    else:
        steps, total = _solve(row["terms"], row["ops"])
        answer = total + by
    return {**row, "solution": f"<think>{' '.join(steps)}</think><answer>{answer}</answer>"}


def generate(
    n: int,
    seed: int,
    num_terms: int = 3,
    low: int = 1,
    high: int = 99,
    ops: str = "+",
    slip_rate: float = 0.0,
    slip: str = "step",
) -> list[dict]:
    """`n` problems of `num_terms` integers in [low, high] joined by operators drawn from `ops`.

    >>> generate(1, seed=0, num_terms=2, low=1, high=9)[0]["solution"]
    '<think>7+7=14</think><answer>14</answer>'
    >>> generate(1, seed=0, num_terms=2, low=1, high=9, slip_rate=0.999)[0]["solution"]
    '<think>7+7=13</think><answer>13</answer>'
    """
    if num_terms < 2:
        raise ValueError("num_terms must be at least 2")
    if not ops or set(ops) - {"+", "-"}:
        raise ValueError("ops must be a non-empty string of '+' and '-'")
    if not 0 <= slip_rate < 1:
        raise ValueError(f"slip_rate must be in [0, 1), got {slip_rate}")
    if slip not in ("step", "answer"):
        raise ValueError(f"slip must be 'step' or 'answer', got {slip!r}")
    rng = random.Random(seed)
    rows = [make_problem(rng, num_terms, low, high, ops) for _ in range(n)]
    slips = random.Random(f"slips-{seed}")  # its own stream: the problems do not depend on slip_rate
    rows = [with_slip(row, slips, slip) if slips.random() < slip_rate else row for row in rows]
    return [{k: v for k, v in row.items() if k not in ("terms", "ops")} for row in rows]
