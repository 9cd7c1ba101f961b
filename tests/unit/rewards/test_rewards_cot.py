"""Chain-of-thought rewards: reasoning present, steps, step arithmetic, answer consistency."""

import time

import pytest

from posttrain.rewards import cot

TINY = "<think>12+34=46 46+5=51</think><answer>51</answer>"


@pytest.mark.parametrize(
    "text, expected",
    [
        (TINY, 1.0),
        ("<think>12+34=46 46+5=52</think><answer>52</answer>", 0.5),
        ("<think>3*4=12, 46 - 5 = 41 and 12+34+5=51</think>", 1.0),
        ("<think>12 + 34 + 5 = 52</think>", 0.0),
        ("<think>10/4 = 2.5 and 10/3 = 3.33 and 2*3+4 = 10</think>", 1.0),
        ("<think>2*3+4 = 14</think>", 0.0),
        ("So he makes 25*30=$750 a month, 750-500=$250 and $10,200 + $255 = $10,455", 1.0),
        ("<think>x+2=5 so x=3</think><answer>3</answer>", None),
        ("<think>no numbers here</think>", None),
        ("<think>1/0 = 5</think>", None),
        ("2023-01-05 is a date", None),
    ],
)
def test_step_arithmetic(text, expected):
    assert cot.step_arithmetic([text]) == [expected]


def test_step_arithmetic_hostile_is_bounded():
    start = time.perf_counter()
    out = cot.step_arithmetic(["1+" * 200_000 + "1=200001", "9" * 10**6 + "*9=1", "1+1=2 " * 100_000])
    assert out[2] == 1.0 and time.perf_counter() - start < 2.0


def test_reasoning_present_and_steps():
    texts = [
        TINY,
        "<think>51</think><answer>51</answer>",
        "51",
        "<think>Step 1: add. Step 2: add again. Step 3: done.</think><answer>1</answer>",
    ]
    assert cot.reasoning_present(texts, min_words=2) == [1.0, 0.0, 0.0, 1.0]
    assert cot.reasoning_steps(texts, target=3) == pytest.approx([2 / 3, 0.0, 0.0, 1.0])


def test_answer_consistency():
    texts = [
        TINY,
        "<think>so it is 51</think><answer>50</answer>",
        "51",
        "<think>thinking with no conclusion</think><answer>5</answer>",
        [{"role": "assistant", "content": "<think>x = \\frac{1}{2}</think> \\boxed{0.5}"}],
    ]
    assert cot.answer_consistency(texts) == [1.0, 0.0, None, None, 1.0]
