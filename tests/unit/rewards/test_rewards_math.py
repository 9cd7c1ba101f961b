"""Math answer equivalence: extraction, conventions, hostile input, the accuracy reward."""

import json
import os
import time
from pathlib import Path

import pytest

from posttrain.rewards.math import accuracy, answers_equivalent, extract_answer, verify

REPO = Path(__file__).resolve().parents[3]

EQUIVALENT = [
    ("The answer is 7,425,000.", "7425000"),  # thousands separators
    ("\\boxed{0.5}", "\\frac{1}{2}"),  # decimal vs fraction
    ("\\boxed{\\dfrac{3}{4}}", "\\tfrac34"),
    ("\\boxed{\\frac{10}{9}}", "10/9"),
    ("\\boxed{2\\sqrt{5}}", "\\sqrt{20}"),  # radicals
    ("\\boxed{\\frac{\\pi}{2}}", "\\pi/2"),
    ("\\boxed{28\\%}", "28"),  # percent
    ("\\boxed{33.5\\%}", "0.335"),
    ("It is \\boxed{15\\text{ cm}^2}.", "15"),  # units and \text
    ("\\boxed{90^\\circ}", "90"),  # degrees
    ("The total is \\$16.50.", "16.5"),  # dollars
    ("\\boxed{1.5 \\times 10^{3}}", "1500"),  # scientific notation
    ("\\boxed{1.5e3}", "1500"),
    ("\\boxed{x = 5}", "5"),  # labels
    ("\\boxed{(p, q) = (3, 2)}", "(3,2)"),
    ("\\boxed{\\{2, 1\\}}", "\\{1, 2\\}"),  # sets are unordered
    ("\\boxed{[0, 1)}", "[0,1)"),  # intervals
    ("\\boxed{x > 5}", "(5, \\infty)"),
    ("\\boxed{\\begin{bmatrix}1 & 2\\\\3 & 4\\end{bmatrix}}", "\\begin{pmatrix}1 & 2\\\\3 & 4\\end{pmatrix}"),
    ("\\boxed{1 \\pm \\sqrt{2}}", "1+\\sqrt2, 1-\\sqrt2"),  # plus-minus
    ("\\boxed{(-\\infty, 3]}", "x \\le 3"),  # infinity
    ("\\boxed{2(x+1)}", "2x+2"),  # symbolic
    ("\\boxed{\\sin^2 x + \\cos^2 x}", "1"),
    ("The answer is (C).", "C"),  # multiple choice
    ("Natalia sold 48+24 = 72 clips.\n#### 72", "#### 72"),  # GSM8K gold
    ("<think>12+34=46</think><answer>46</answer>", "46"),
    ("1000,99", "1000.99"),  # locale decimal comma
    ("\\boxed{204_5}", "54"),  # base subscript
    ("\\boxed{\\frac13}", "0.33"),  # rounding (>= 2 places)
    ("\\boxed{15\\frac{39}{40}}", "\\frac{639}{40}"),  # mixed number
    ("\\boxed{\\tan^2 y + 1}", "\\sec^2 y"),
    ("\\boxed{\\frac{x^2-1}{x-1}}", "x+1"),
    ("\\boxed{y = -\\frac{1}{2}x + \\frac34}", "2x + 4y - 3 = 0"),  # same line
    ("\\boxed{-x > -1}", "x < 1"),
    ("\\boxed{\\sum_{k=0}^{n-1} F_{n-k-1} F_k}", "\\sum_{k=0}^{n-1} F_k F_{n-k-1}"),
]

DIFFERENT = [
    ("\\boxed{32, 349}", "32349"),
    ("\\boxed{3.22}", "3.21"),
    ("\\boxed{0.3}", "\\frac13"),  # one place is not enough
    ("\\boxed{0.12}", "\\frac18"),  # 1/8 terminates: exact only
    ("\\boxed{(2, 1)}", "(1,2)"),  # tuples are ordered
    ("\\boxed{(0, 1)}", "[0,1)"),
    ("\\boxed{x < 5}", "x > 5"),
    ("\\boxed{x+1}", "x+2"),
    ("\\boxed{11a+c}", "7 = 11a + c"),
    ("\\boxed{2021}", "\\pm 2021"),
    ("The answer is B.", "C"),
    ("\\boxed{\\begin{pmatrix}1 & 2\\\\3 & 5\\end{pmatrix}}", "\\begin{pmatrix}1 & 2\\\\3 & 4\\end{pmatrix}"),
    ("AZYUK2A", "2"),
    ("", "4"),
    ("The answer is !!!invalid!!!", "4"),
    ("\\boxed{x}", "|x|"),  # checked at a negative point too
    ("\\boxed{x}", "y"),
    ("\\boxed{f(y)}", "f(x)"),
    ("\\boxed{3} or \\boxed{5}", "3"),  # hedging never passes
    ("\\boxed{\\sum_{k=0}^{n-2} F_k F_{n-k-2}}", "\\sum_{k=0}^{n-1} F_k F_{n-k-1}"),
]


@pytest.mark.parametrize("pred, gold", EQUIVALENT)
def test_equivalent(pred, gold):
    assert verify(pred, gold) is True


@pytest.mark.parametrize("pred, gold", DIFFERENT)
def test_different(pred, gold):
    assert verify(pred, gold) is False


@pytest.mark.parametrize("gold", ["", "   ", None, "#### ", "\\frac{", "???"])
def test_unusable_gold_gives_none(gold):
    assert verify("\\boxed{4}", gold) is None
    assert accuracy(["\\boxed{4}"], answer=[gold]) == [None]


def test_extract_answer_strategies_and_order():
    text = "<answer>12</answer> so \\boxed{13}. The answer is 14"
    assert extract_answer(text) == "12"
    assert extract_answer(text, extract_order=("boxed", "phrase")) == "13"
    assert extract_answer(text, extract_order=("phrase",)) == "14"
    assert extract_answer("\\boxed{1} and \\boxed{2}") == "1, 2"
    assert extract_answer("First try 30, then 45 apples") == "45"
    assert extract_answer("no answer here at all, just prose about things") is None
    assert verify("<answer>12</answer> \\boxed{13}", "13", extract_order=("boxed",)) is True


def test_think_blocks_bound_the_search():
    assert extract_answer("<think>maybe \\boxed{50}</think> so 51") == "51"
    assert extract_answer("<think>12+34=46 46+5=51") is None  # truncated mid-thought
    assert extract_answer("46+5=51</think><answer>51</answer>") == "51"  # template pre-filled <think>
    assert verify("<think>12+34=46 46+5=51", "51") is False
    assert verify("<answer>The answer is 51.</answer>", "51") is True


def test_unknown_extraction_strategy_fails_loudly():
    with pytest.raises(ValueError, match="choose from"):
        verify("1", "1", extract_order=("boxed", "lastnum"))


def test_text_answers_compare_as_text():
    assert verify("\\boxed{\\text{Evelyn}}", "Evelyn") is True
    assert verify("$odd$", "\\text{odd}") is True
    assert verify("\\boxed{even}", "odd") is False


def test_answers_equivalent_for_clustering():
    assert answers_equivalent("\\frac{1}{2}", "0.5")
    assert answers_equivalent("x=3", "3")
    assert not answers_equivalent("(1, 2)", "(2, 1)")
    assert not answers_equivalent(None, "1")


def test_accuracy_reward_contract():
    completions = ["\\boxed{51}", [{"role": "assistant", "content": "<answer>51</answer>"}], "50"]
    assert accuracy(completions, answer=["51", "51", "51"], prompts=["p"] * 3, extra=[1, 2, 3]) == [1.0, 1.0, 0.0]
    assert accuracy(["\\boxed{5}"], answer=[5]) == [1.0]  # non-string gold
    assert accuracy([], answer=[]) == []


HOSTILE = [
    "__import__('os').system('touch /tmp/posttrain_pwned')",
    "\\boxed{__import__('os').system('touch /tmp/posttrain_pwned')}",
    "\\boxed{9**9**9**9}",
    "\\boxed{10^{10^{10^{10}}}}",
    "\\boxed{1000000!}",
    "\\boxed{" + "(" * 10_000 + "1" + ")" * 10_000 + "}",
    "[" * 10_000 + "]" * 10_000,
    "\\boxed{" + "\\sqrt{" * 5_000 + "2" + "}" * 5_000 + "}",
    "\\boxed{" + "\\frac{1}{" * 3_000 + "2" + "}" * 3_000 + "}",
    "x" * 1_000_000,
    "1" * 1_000_000,
    "\\boxed{1}" * 100_000,
    "\x00\\boxed{4}\x00" * 100,
    "\\boxed{４２} \u202e 𝟒𝟐 \ufffd" + "ﷺ" * 1000,
    "\\boxed{\\sum_{k=1}^{10^{9}} k}",
    "\\boxed{e^{e^{e^{e^{10}}}}}",
    "\\boxed{\\binom{10^{6}}{500000}}",
    "\\boxed{x^{10^{10}}}",
    "<answer>" * 50_000 + "1" + "</answer>" * 50_000,
    "\\boxed{1" + "\\text{ a}" * 20_000 + "}",  # the trailing-words rule, at every digit and brace
    "\\boxed{" + "1\\" * 50_000 + "}",  # stray backslashes before digits and at the end
    "\\boxed{" + "\\\\frac" * 20_000 + "}",
    "B " * 200_000,  # a standalone choice letter, everywhere
]


@pytest.mark.parametrize("text", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_input_is_fast_and_harmless(text):
    start = time.perf_counter()
    for gold in ("42", "x^2+1", "C", "(1,2)"):
        assert verify(text, gold) in (True, False)
        assert verify(gold, text) in (True, False, None)
    assert answers_equivalent(text, "42") in (True, False)
    extract_answer(text)
    assert time.perf_counter() - start < 0.5
    assert not os.path.exists("/tmp/posttrain_pwned")


def test_results_are_cached():
    pred = "so the answer is \\boxed{\\frac{123}{456}}" + " filler" * 10
    verify(pred, "123/456")
    start = time.perf_counter()
    for _ in range(1000):
        assert verify(pred, "123/456") is True
    assert time.perf_counter() - start < 0.2


ATOMS = [
    "1",
    "2",
    "0",
    "-",
    "+",
    "*",
    "/",
    "^",
    "_",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    "\\{",
    "\\}",
    "|",
    ",",
    ";",
    "=",
    "<",
    "\\le",
    "x",
    "y",
    "e",
    "\\pi",
    "\\infty",
    "\\frac",
    "\\sqrt",
    "\\sin",
    "\\log",
    "!",
    "%",
    "\\cdot",
    "\\pm",
    ".",
    "3.5",
    "1,000",
    " ",
    "\\text{and}",
    "\\boxed{",
    "$",
    "\\begin{pmatrix}",
    "\\end{pmatrix}",
    "&",
    "\\\\",
    "\\sum_{k=1}^{n}",
    "\\cup",
    "\\in",
    "f",
    "a_1",
    "\\approx",
    ":",
    "°",
    "A",
    "10^{",
    "9**9",
    "\x00",
    "中",
]


def test_fuzzed_answers_never_raise_inside_the_checker():
    import random

    from posttrain.rewards import math as checker

    rng = random.Random(7)
    for _ in range(400):
        a = "".join(rng.choice(ATOMS) for _ in range(rng.randint(1, 12)))
        b = "".join(rng.choice(ATOMS) for _ in range(rng.randint(1, 6)))
        for pred, gold in ((a, b), (b, a), (a, a)):
            checker._verify(pred, gold, checker.DEFAULT_ORDER)  # the unguarded path: bugs surface here


# Classes real models write that the checker misjudged (issue 15): each row (completion, gold, correct).
REAL_MODEL_CLASSES = {
    "free text, same words": [
        ("\\boxed{monday}", "Monday", True),
        ("\\boxed{The Pacific}", "the pacific", True),
        ("\\boxed{Tuesday}", "Monday", False),
        ("\\boxed{x}", "X", False),  # single letters are variables: case is meaning
        ("\\boxed{ab}", "AB", False),  # a segment, not the product ab
    ],
    "malformed LaTeX": [
        ("\\boxed{\\frac{1}{2}\\}", "\\frac{1}{2}", True),
        ("\\boxed{\\\\frac{1}{2}}", "\\frac{1}{2}", True),
        ("\\boxed{\\\\sqrt{2}}", "\\sqrt2", True),
        ("\\boxed{5\\}", "5", True),
        ("\\boxed{\\5}", "5", True),
        ("\\boxed{\\5}", "6", False),
    ],
    "words in \\text after a number": [
        ("\\boxed{4\\text{ red marbles}}", "4", True),
        ("\\boxed{12 \\text{ pencils each}}", "12", True),
        ("\\boxed{15\\text{ km/h}}", "15", True),
        ("\\boxed{7\\text{ m}^2}", "7", True),
        ("\\boxed{6\\text{th}}", "6", True),
        ("\\boxed{\\$18 \\text{ per day}}", "18", True),
        ("\\boxed{1/2 \\text{ cup}}", "\\frac12", True),
        ("\\boxed{\\text{The answer is }5}", "5", True),
        ("\\boxed{4\\text{ red marbles}}", "5", False),
        ("\\boxed{5 \\text{ or } 6}", "5", False),
        ("\\boxed{2 \\text{ times } 3}", "2", False),
        ("\\boxed{3\\text{ boys and } 2 \\text{ girls}}", "3", False),
    ],
    "choice letter inside an expression": [
        ("\\boxed{2B}", "B", False),
        ("\\boxed{B^2}", "B", False),
        ("\\boxed{f(B)}", "B", False),
        ("\\boxed{B+C}", "B", False),
        ("so it is 2B", "B", False),
        ("we get f(B) = 3", "B", False),
        ("\\boxed{(B)}", "B", True),
        ("**B**", "B", True),
        ("Option B is right", "B", True),
        ("$E$", "\\text{E}", True),
    ],
}


@pytest.mark.parametrize(
    ("completion", "gold", "correct"),
    [row for rows in REAL_MODEL_CLASSES.values() for row in rows],
    ids=[f"{name}-{i}" for name, rows in REAL_MODEL_CLASSES.items() for i in range(len(rows))],
)
def test_real_model_answer_classes(completion, gold, correct):
    assert verify(completion, gold) is correct


def test_no_false_positive_on_the_development_set():
    """The dev set's non-equivalent pairs stay non-equivalent (bench_rewards.py reports the full figure)."""
    rows = [json.loads(line) for line in (REPO / "data" / "verifier_dev.jsonl").read_text().splitlines()]
    different = [r for r in rows if not r["equivalent"]]
    assert len(different) > 100
    wrong = [r["id"] for r in different if verify(r["pred"], r["gold"])]
    assert not wrong
