"""Eval metrics against numbers worked out by hand (the arithmetic is in the comments)."""

from __future__ import annotations

import math

import pytest

from posttrain.errors import PosttrainError
from posttrain.evaluate.metrics import (
    cluster_answers,
    maj_correct,
    majority_answer,
    mean_ci95,
    pass_at_k,
    summarize,
)

_HALF = {"0.5", "1/2", "\\frac12"}


def equivalent(a: str, b: str) -> bool:
    """Toy checker: the spellings of one half are equal, everything else by exact text."""
    return a == b or (a in _HALF and b in _HALF)


def sample(extracted, correct, acc=None, fmt=1.0, tokens=10, truncated=False):
    return {
        "text": f"... {extracted}",
        "extracted": extracted,
        "correct": correct,
        "rewards": {"accuracy": acc, "format": fmt},
        "num_tokens": tokens,
        "truncated": truncated,
    }


# A: 2 of 4 correct; "0.5" and "1/2" vote together.  B: 3 of 4 correct, "7" leads at k=2.
# C: gold unparseable (correct None everywhere) -> excluded from accuracy, kept elsewhere.
RECORDS = [
    {
        "id": "a",
        "prompt": "p",
        "answer": "1/2",
        "samples": [
            sample("0.5", True, 1.0, 1.0, 10),
            sample("1/2", True, 1.0, 0.0, 20),
            sample("3", False, 0.0, 1.0, 30),
            sample(None, False, 0.0, None, 100, truncated=True),
        ],
    },
    {
        "id": "b",
        "prompt": "p",
        "answer": "8",
        "samples": [
            sample("7", False, 0.0, 1.0, 12),
            sample("8", True, 1.0, 1.0, 14),
            sample("8", True, 1.0, 1.0, 16),
            sample("8", True, 1.0, 1.0, 18),
        ],
    },
    {"id": "c", "prompt": "p", "answer": "???", "samples": [sample("x", None, None, 1.0, 5)] * 4},
]


def test_pass_at_k_hand_values():
    assert pass_at_k(5, 2, 2) == pytest.approx(0.7)  # 1 - C(3,2)/C(5,2) = 1 - 3/10
    assert pass_at_k(4, 2, 2) == pytest.approx(5 / 6)  # 1 - C(2,2)/C(4,2) = 1 - 1/6
    assert pass_at_k(8, 3, 1) == pytest.approx(3 / 8)  # pass@1 is c/n
    assert pass_at_k(4, 3, 2) == 1.0  # only 1 wrong sample: every pair holds a correct one
    assert pass_at_k(10, 0, 5) == 0.0


def test_pass_at_k_is_stable_where_binomials_overflow_floats():
    exact = 1 - math.comb(1990, 100) / math.comb(2000, 100)  # Python ints: exact, then one rounding
    assert pass_at_k(2000, 10, 100) == pytest.approx(exact, rel=1e-12)


@pytest.mark.parametrize("n,c,k", [(4, 1, 5), (4, 5, 1), (4, 1, 0), (4, -1, 1)])
def test_pass_at_k_rejects_impossible_arguments(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def test_mean_ci95_normal_approximation():
    # mean 0.5; sample sd = sqrt(0.5/3) = 0.408248; se = 0.204124; half = 1.959964 * se = 0.400076
    mean, lo, hi = mean_ci95([1.0, 0.5, 0.5, 0.0])
    assert (mean, lo, hi) == pytest.approx((0.5, 0.099924, 0.900076), abs=1e-6)


def test_mean_ci95_clips_to_unit_interval_and_degenerates_for_one_problem():
    # mean 0.75; sd = 0.5; se = 0.25; half = 0.489991 -> hi 1.24 clipped to 1
    assert mean_ci95([1.0, 1.0, 1.0, 0.0]) == pytest.approx((0.75, 0.260009, 1.0), abs=1e-6)
    assert mean_ci95([0.3]) == (0.3, 0.3, 0.3)


def test_clusters_use_the_injected_checker_and_skip_missing_answers():
    answers = ["0.5", None, "3", "\\frac12", "", "1/2"]
    assert cluster_answers(answers, equivalent) == [[0, 3, 5], [2]]


def test_majority_answer():
    assert majority_answer(["3", "0.5", "1/2"], equivalent) == "0.5"  # 2 halves beat one 3
    assert majority_answer(["3", "0.5", "1/2", "3"], equivalent) == "3"  # 2-2 tie: first seen
    assert majority_answer([None, None, None, "4"], equivalent) == "4"  # None never wins
    assert majority_answer([None, " "], equivalent) is None


def test_maj_correct_scores_the_first_k_by_the_representative():
    samples = [sample("7", False), sample("8", True), sample("8", True)]
    assert maj_correct(samples, 2, equivalent) is False  # "7" vs "8" tie -> "7"
    assert maj_correct(samples, 3, equivalent) is True
    assert maj_correct([sample(None, False)], 1, equivalent) is False


def test_summarize_hand_computed():
    m = summarize(RECORDS, [1, 2, 4], equivalent)
    assert (m["n_problems"], m["n_excluded"], m["n_samples"]) == (3, 1, 12)
    # per-problem pass@1: A 2/4, B 3/4 -> 0.625; sd 0.176777, se 0.125, half 0.244995
    assert m["pass@1"] == pytest.approx(0.625)
    assert m["pass@1_ci95"] == pytest.approx([0.380005, 0.869995], abs=1e-6)
    assert m["pass@2"] == pytest.approx((5 / 6 + 1.0) / 2)  # A 1 - 1/6; B only one wrong -> 1
    assert m["pass@4"] == pytest.approx(1.0)
    assert m["maj@2"] == pytest.approx(0.5)  # A: "0.5"~"1/2" right; B: "7"/"8" tie -> "7" wrong
    assert m["maj@4"] == pytest.approx(1.0)  # B: three "8"
    assert "maj@1" not in m
    # format over all 12 samples, one None: A 1,0,1 + B 4 ones + C 4 ones = 10 / 11
    assert m["format_rate"] == pytest.approx(10 / 11)
    assert m["rewards"]["format"] == {"mean": pytest.approx(10 / 11), "n": 11, "n_none": 1}
    assert m["rewards"]["accuracy"] == {"mean": pytest.approx(5 / 8), "n": 8, "n_none": 4}
    # lengths 10,20,30,100 | 12,14,16,18 | 5,5,5,5: sum 240 / 12; sorted middle pair 12, 14
    assert m["length"] == {"mean": pytest.approx(20.0), "median": 13.0, "max": 100}
    assert m["truncation_rate"] == pytest.approx(1 / 12)


def test_summarize_reports_pass1_even_when_k_omits_it_and_honours_format_name():
    m = summarize(RECORDS, [4], equivalent, format_reward="accuracy")
    assert m["pass@1"] == pytest.approx(0.625)
    assert m["format_rate"] == pytest.approx(5 / 8)
    assert summarize(RECORDS, [1], equivalent, format_reward="boxed")["format_rate"] is None


def test_summarize_counts_a_stray_none_as_wrong():
    record = {"id": "d", "samples": [sample("1", True), sample("1", None)]}
    assert summarize([record], [1], equivalent)["pass@1"] == pytest.approx(0.5)


def test_summarize_with_every_gold_unparseable_has_no_accuracy():
    m = summarize(RECORDS[2:], [1, 4], equivalent)
    assert m["n_excluded"] == 1
    assert m["pass@1"] is None and m["pass@1_ci95"] is None and m["maj@4"] is None


def test_summarize_k_above_samples_names_the_problem_and_the_fix():
    with pytest.raises(PosttrainError, match=r"pass@8 needs at least 8 .*a has 4.*--n"):
        summarize(RECORDS, [1, 8], equivalent)


@pytest.mark.parametrize("ks", [[], [0], [1, -2], [1.5]])
def test_summarize_rejects_bad_k(ks):
    with pytest.raises(PosttrainError, match="--k"):
        summarize(RECORDS, ks, equivalent)
