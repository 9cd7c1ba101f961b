"""Shaping rewards: Kimi length, cosine-scaled correctness, repetition, DAPO over-long."""

import pytest

from posttrain.rewards import shaping


def test_kimi_length_per_prompt_group():
    completions = ["\\boxed{4}", "long thinking then \\boxed{4}", "\\boxed{5}", "\\boxed{9}", "\\boxed{9}"]
    scores = shaping.kimi_length(
        completions, answer=["4", "4", "4", "9", "9"], prompts=["p", "p", "p", "q", "q"], unit="chars"
    )
    assert scores == [0.5, -0.5, 0.0, 0.0, 0.0]
    # lengths from TRL's completion_ids when present
    scores = shaping.kimi_length(["\\boxed{4}", "\\boxed{4}"], answer=["4", "4"], completion_ids=[[1] * 10, [1] * 20])
    assert scores == [0.5, -0.5]
    assert shaping.kimi_length(["1"], answer=[""]) == [None]


def test_cosine_scaled():
    right = shaping.cosine_scaled(
        ["\\boxed{4}", "\\boxed{4}" + "x" * 991], answer=["4", "4"], max_len=1000, unit="chars"
    )
    wrong = shaping.cosine_scaled(
        ["\\boxed{5}", "\\boxed{5}" + "x" * 991], answer=["4", "4"], max_len=1000, unit="chars"
    )
    assert right[0] > right[1] == pytest.approx(0.5)
    assert wrong[0] < wrong[1] == pytest.approx(-0.5)
    assert right[0] == pytest.approx(1.0, abs=1e-3) and wrong[0] == pytest.approx(-1.0, abs=1e-3)


def test_repetition_penalty():
    assert shaping.repetition_penalty(["the cat sat on the mat", "go go go go go go", "hi", ""]) == pytest.approx(
        [0.0, -0.75, 0.0, 0.0]
    )


def test_soft_overlong_counts_tokens_then_chars():
    ids = [[0] * 50, [0] * 90, [0] * 120]
    assert shaping.soft_overlong(["a", "b", "c"], completion_ids=ids, max_length=100, buffer=20) == [0.0, -0.5, -1.0]
    # without completion_ids tokens are estimated as ceil(chars / 4)
    assert shaping.soft_overlong(["x" * 300, "x" * 360], max_length=100, buffer=20) == [0.0, -0.5]
    assert shaping.soft_overlong(["x" * 400], max_length=100, unit="chars") == [-1.0]
    with pytest.raises(ValueError, match="unit"):
        shaping.soft_overlong(["x"], max_length=10, unit="words")
