"""A reward that fails scores None on its failing rows, is counted and shown once; strict makes it fatal."""

import doctest
import logging
import math
import pickle
from types import SimpleNamespace

import pytest

from posttrain.errors import PosttrainError, RewardError
from posttrain.rewards import guard, registry
from posttrain.rewards.guard import GuardedReward, error_counts
from posttrain.rewards.registry import BoundReward


def picky(completions, answer=None, **kwargs):
    """1.0 per completion; raises on the completion "boom" (module level, so it pickles)."""
    if "boom" in completions:
        raise ValueError("cannot parse 'boom'")
    return [1.0 if a is None or c == a else 0.0 for c, a in zip(completions, answer or [None] * len(completions))]


def returns(value):
    return lambda completions, **kwargs: value


def guarded(func, **kwargs):
    return GuardedReward(BoundReward(func, {}, getattr(func, "__name__", "plugin")), **kwargs)


def test_raising_row_scores_none_and_the_rest_are_scored(caplog):
    reward = guarded(picky)
    with caplog.at_level(logging.WARNING, logger="posttrain.rewards"):
        out = reward(completions=["4", "boom", "5"], answer=["4", "4", "4"], trainer_state=None)
        assert out == [1.0, None, 0.0]
        assert reward.errors == 1
        assert reward(completions=["boom", "4"], answer=["4", "4"]) == [None, 1.0]
    assert reward.errors == 2 and error_counts([reward]) == {"picky": 2}
    warnings = [r for r in caplog.records if r.name == "posttrain.rewards"]
    assert len(warnings) == 1  # shown once per reward, however often it fails
    message = warnings[0].getMessage()
    assert "reward 'picky' raised ValueError: cannot parse 'boom'" in message
    assert "1 of 3 completions" in message and "rewards.strict: true" in message


def test_strict_raises_a_project_error_naming_reward_and_step():
    reward = guarded(picky, strict=True)
    with pytest.raises(RewardError) as err:
        reward(completions=["4", "boom"], answer=["4", "4"], trainer_state=SimpleNamespace(global_step=7))
    message = str(err.value)
    assert isinstance(err.value, PosttrainError)
    assert "reward 'picky' raised ValueError: cannot parse 'boom' at step 7" in message
    assert "rewards.strict" in message
    assert reward(completions=["4"], answer=["4"]) == [1.0]  # a batch that does not fail is scored as usual


@pytest.mark.parametrize("bad", [math.nan, math.inf, "1.0", [1.0]])
def test_non_finite_or_non_numeric_score_is_an_error_of_its_row(bad):
    reward = guarded(returns([1.0, bad, None, 0]), name="shaky")
    assert reward(completions=["a", "b", "c", "d"]) == [1.0, None, None, 0]
    assert error_counts([reward]) == {"shaky": 1}  # None (does not apply) is not an error
    with pytest.raises(RewardError, match=r"reward 'shaky' returned .* \(expected a finite number or None\)"):
        guarded(returns([bad]), strict=True, name="shaky")(completions=["a"])


@pytest.mark.parametrize(
    "result, problem",
    [
        ([1.0], "returned 1 scores for 3 completions"),
        ("1.0", "returned a str, not a list of scores"),
        (None, "returned a NoneType, not a list of scores"),
    ],
)
def test_wrong_length_or_type_fails_the_whole_batch(result, problem, caplog):
    reward = guarded(returns(result), name="sloppy")
    with caplog.at_level(logging.WARNING, logger="posttrain.rewards"):
        assert reward(completions=["a", "b", "c"]) == [None, None, None]
    assert reward.errors == 3
    assert f"reward 'sloppy' {problem}" in caplog.text
    with pytest.raises(RewardError, match=problem):
        guarded(returns(result), strict=True)(completions=["a", "b", "c"])


def test_rows_are_rescored_with_their_own_columns():
    calls = []

    def spy(completions, answer, trainer_state=None, **kwargs):
        calls.append((list(completions), list(answer), trainer_state))
        if len(completions) > 1:
            raise RuntimeError("batch")
        return [float(answer[0] == completions[0])]

    state = SimpleNamespace(global_step=3)
    reward = GuardedReward(spy)
    assert reward(completions=["1", "2"], answer=["1", "3"], trainer_state=state, level=5) == [1.0, 0.0]
    assert calls[1:] == [(["1"], ["1"], state), (["2"], ["3"], state)]
    assert reward.errors == 0  # every row succeeds on its own: nothing scores None


def test_groupwise_reward_is_not_rescored_row_by_row():
    def grouped(completions, **kwargs):
        raise ZeroDivisionError("empty group")

    grouped.groupwise = True
    reward = guarded(grouped)
    assert reward.groupwise is True
    assert reward(completions=["a", "b"], prompts=["p", "p"]) == [None, None]
    assert reward.errors == 2


def test_guard_keeps_name_attributes_and_pickles():
    bound = BoundReward(picky, {}, "picky_2")
    reward = GuardedReward(bound)
    assert reward.__name__ == "picky_2" and reward.kwargs == {} and reward.groupwise is False
    reward(completions=["boom", "x"])
    copy = pickle.loads(pickle.dumps(reward))
    assert copy.__name__ == "picky_2" and copy.errors == 1
    assert copy(completions=["x", "boom"]) == [1.0, None] and copy.errors == 2
    with pytest.raises(AttributeError):
        reward.no_such_attribute  # noqa: B018


def test_registry_guards_the_outermost_callable(tmp_path):
    (tmp_path / "x.py").write_text("def fn(completions, **kwargs):\n    return [1.0 / len(c) for c in completions]\n")
    (funcs, weights) = registry.build(
        [{"name": "x.py:fn"}, {"name": "accuracy"}], base_dir=tmp_path, processes=2, min_batch=1000
    )  # the pool wrapper stays inline here
    assert all(isinstance(f, GuardedReward) for f in funcs) and weights == [1.0, 1.0]
    assert not isinstance(funcs[0].wrapped, BoundReward)  # the guard sits over the pool wrapper
    assert funcs[0](completions=["ab", "", "abcd"]) == [0.5, None, 0.25]
    assert error_counts(funcs) == {"fn": 1, "accuracy": 0}
    strict, _ = registry.build([{"name": "x.py:fn"}], base_dir=tmp_path, strict=True)
    with pytest.raises(RewardError, match="reward 'fn' raised ZeroDivisionError"):
        strict[0](completions=[""])


def test_grpo_recipe_with_raising_file_plugin_scores_none_for_the_failing_row(tmp_path):
    from posttrain.config import GRPORecipe, load_recipe
    from posttrain.evaluate.scoring import build_rewards, reward_errors

    (tmp_path / "rewards").mkdir()
    (tmp_path / "rewards" / "x.py").write_text(
        "def fn(completions, answer, **kwargs):\n"
        "    return [float(int(c) == int(a)) for c, a in zip(completions, answer)]\n"
    )
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "model: {name_or_path: build:tiny-moe}\ndata: {source: arithmetic}\n"
        "rewards:\n  - {name: rewards/x.py:fn, weight: 1.0}\n"
    )
    cfg = load_recipe(recipe, GRPORecipe)
    rewards, correctness = build_rewards(
        cfg.rewards.functions, "accuracy", base_dir=tmp_path, strict=cfg.rewards.strict
    )
    assert [r.__name__ for r in rewards] == ["fn"]
    assert rewards[0](completions=["4", "four", "5"], answer=["4", "4", "4"]) == [1.0, None, 0.0]
    assert reward_errors(rewards, correctness) == {"fn": 1, "accuracy": 0}

    strict_cfg = load_recipe(recipe, GRPORecipe, ["rewards.strict=true"])
    rewards, _ = build_rewards(
        strict_cfg.rewards.functions, "accuracy", base_dir=tmp_path, strict=strict_cfg.rewards.strict
    )
    with pytest.raises(RewardError, match="reward 'fn' raised ValueError"):
        rewards[0](completions=["four"], answer=["4"])


def test_doctests():
    assert doctest.testmod(guard).failed == 0
