"""Scoring in a process pool gives the same scores as inline, and stays inline for small batches."""

import pytest

from posttrain.rewards import pool, registry


@pytest.fixture(scope="module")
def rewards():
    funcs, _ = registry.build([{"name": "accuracy"}, {"name": "length"}], processes=2, min_batch=16)
    yield funcs
    pool.shutdown()


def test_pool_matches_inline(rewards):
    completions = [f"\\boxed{{{i % 5}}}" + " pad" * (i % 7) for i in range(40)]
    answers = [str(i % 3) for i in range(40)]
    inline, _ = registry.build([{"name": "accuracy"}])
    assert rewards[0](completions=completions, answer=answers) == inline[0](completions=completions, answer=answers)
    assert rewards[0].__name__ == "accuracy" and rewards[1].__name__ == "length"
    # the group-wise length reward is never split across workers
    assert len(rewards[1](completions=completions, answer=answers, prompts=["p"] * 40)) == 40


def test_small_batches_run_inline(rewards, monkeypatch):
    monkeypatch.setattr(pool, "_get_executor", lambda n: pytest.fail("pool used for a small batch"))
    assert rewards[0](completions=["\\boxed{1}"], answer=["1"]) == [1.0]
