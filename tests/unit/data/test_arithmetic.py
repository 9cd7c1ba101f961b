"""The arithmetic task's imperfect-teacher slips: what changes, what does not."""

import re

import pytest

from posttrain.data.tasks.arithmetic import generate
from posttrain.rewards.cot import step_arithmetic
from posttrain.rewards.math import accuracy

ARGS = {"num_terms": 4, "low": 1, "high": 9}


def test_slips_change_only_the_worked_solutions_of_about_that_fraction():
    clean = generate(2000, seed=3, **ARGS)
    for kind in ("step", "answer"):
        slipped = generate(2000, seed=3, slip_rate=0.3, slip=kind, **ARGS)
        assert [(r["question"], r["answer"]) for r in slipped] == [(r["question"], r["answer"]) for r in clean]
        wrong = [r for r in slipped if accuracy([r["solution"]], answer=[r["answer"]]) == [0.0]]
        assert 0.27 < len(wrong) / len(slipped) < 0.33  # every slip changes the written answer
        changed = [r for r, c in zip(slipped, clean) if r["solution"] != c["solution"]]
        assert len(changed) == len(wrong)
        off = [abs(int(re.search(r"<answer>(-?\d+)</answer>", r["solution"])[1]) - int(r["answer"])) for r in wrong]
        assert set(off) <= set(range(1, 10))
        steps = step_arithmetic([r["solution"] for r in wrong])
        if kind == "answer":  # the chain is right, the answer miscopied
            assert all(s == 1.0 for s in steps)
        else:  # exactly one step is wrong, and the chain carries it to the answer
            assert all(s < 1.0 for s in steps)


def test_slip_settings_are_checked():
    with pytest.raises(ValueError, match="slip_rate"):
        generate(1, seed=0, slip_rate=1.0)
    with pytest.raises(ValueError, match="slip must be"):
        generate(1, seed=0, slip_rate=0.1, slip="typo")
