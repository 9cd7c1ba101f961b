"""The warm-start's rounds: `until_greedy` adds rounds of `extra_steps` until the check reaches the target."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from posttrain.config.schema import WarmstartConfig
from posttrain.models import warmstart


@pytest.fixture
def rounds(monkeypatch):
    """Each SFT round as (max steps it would train, data seed), without training anything."""
    seen = []

    def fake(model, tokenizer, rows, prompts, cfg, out_dir, callbacks, precision, round_index=0, *tracking, **kwargs):
        steps = kwargs.get("steps") or (cfg.extra_steps if round_index else cfg.steps)
        seen.append((steps, cfg.seed + round_index))

    monkeypatch.setattr(warmstart, "run_warmstart", fake)
    return seen


def test_restart_trains_fresh_models_from_scratch_and_keeps_the_best(rounds):
    said, built, trained = [], [], []
    cfg = WarmstartConfig(steps=400, until_greedy=0.9, retry="restart", max_extra_rounds=2)
    scores = iter([0.55, 0.7, 0.6])

    def check(model):
        trained.append(model)
        return next(scores)

    def fresh(attempt):
        built.append(attempt)
        return f"model-{attempt}"

    kept, record = warmstart.warmstart_until(
        "model-0", None, [], [], cfg, None, check=check, say=said.append, fresh=fresh
    )
    assert built == [1, 2] and trained == ["model-0", "model-1", "model-2"]
    assert rounds == [(400, 1234), (400, 1235), (400, 1236)]  # every attempt all its steps, data in another order
    assert kept == "model-1" and record["kept"] == 1 and record["steps"] == 400
    assert [c["greedy"] for c in record["checks"]] == [0.55, 0.7, 0.6]
    assert said[-1] == "warm-start: keeping attempt 2 (greedy 0.700), the best check"


def test_restart_stops_at_the_first_attempt_that_reaches_the_target(rounds):
    cfg = WarmstartConfig(steps=50, until_greedy=0.9, retry="restart", max_extra_rounds=3)
    record = _run(cfg, [0.5, 0.95], [], fresh=lambda attempt: f"model-{attempt}")
    assert len(rounds) == 2 and record["kept"] == 1 and record["steps"] == 50
    with pytest.raises(ValueError, match="fresh model"):
        _run(cfg, [0.5], [])  # restart without a way to build a model


def _run(cfg, checks, said, fresh=None):
    scores = iter(checks)
    _, record = warmstart.warmstart_until(
        "model-0", None, [], [], cfg, None, check=lambda m: next(scores), say=said.append, fresh=fresh
    )
    return record


def test_rounds_stop_at_the_first_check_that_reaches_the_target(rounds):
    said = []
    cfg = WarmstartConfig(steps=400, until_greedy=0.85, extra_steps=100, max_extra_rounds=3)
    record = _run(cfg, [0.57, 0.8, 0.9, 1.0], said)
    assert rounds == [(400, 1234), (100, 1235), (100, 1236)]  # each round sees its data in another order
    assert record == {
        "steps": 600,
        "checks": [{"steps": 400, "greedy": 0.57}, {"steps": 500, "greedy": 0.8}, {"steps": 600, "greedy": 0.9}],
    }
    assert said[-1] == "warm-start: greedy 0.900 >= 0.85 after 600 steps"


def test_rounds_end_after_max_extra_rounds_even_below_the_target(rounds):
    said = []
    cfg = WarmstartConfig(steps=10, until_greedy=0.9, extra_steps=5, max_extra_rounds=2)
    record = _run(cfg, [0.1, 0.2, 0.3], said)
    assert [r[0] for r in rounds] == [10, 5, 5] and record["steps"] == 20
    assert "the last round: RL starts" in said[-1]


def test_without_a_target_one_round_and_no_check(rounds):
    record = _run(WarmstartConfig(steps=7), [], [])  # an empty iterator: calling the check would raise
    assert rounds == [(7, 1234)] and record == {"steps": 7, "checks": []}


def test_steps_0_switches_the_warm_start_off_target_and_all():
    # `--set model.warmstart.steps=0` on a recipe with a target must still work: no warm-start, no rounds.
    assert WarmstartConfig(steps=0, until_greedy=0.9).steps == 0
    with pytest.raises(ValidationError, match="less than or equal to 1"):
        WarmstartConfig(steps=10, until_greedy=90)  # a percentage where a fraction belongs


def test_a_target_needs_a_check(rounds):
    with pytest.raises(ValueError, match="needs a check"):
        warmstart.warmstart_until(None, None, [], [], WarmstartConfig(steps=1, until_greedy=0.5), None, None, print)


def test_a_retry_list_restarts_then_extends_the_best_attempt(rounds):
    said, built, trained = [], [], []
    cfg = WarmstartConfig(steps=400, until_greedy=0.9, retry=["restart", "extend"], extra_steps=200)
    scores = iter([0.59, 0.53, 0.99])

    def check(model):
        trained.append(model)
        return next(scores)

    def fresh(attempt):
        built.append(attempt)
        return f"model-{attempt}"

    kept, record = warmstart.warmstart_until(
        "model-0", None, [], [], cfg, None, check=check, say=said.append, fresh=fresh
    )
    # the extension continues attempt 1 (the better check), not the newer attempt 2
    assert built == [1] and trained == ["model-0", "model-1", "model-0"]
    assert rounds == [(400, 1234), (400, 1235), (200, 1236)]
    assert kept == "model-0" and record["kept"] == 0 and record["steps"] == 600
    assert record["checks"] == [
        {"steps": 400, "greedy": 0.59, "attempt": 0},
        {"steps": 400, "greedy": 0.53, "attempt": 1},
        {"steps": 600, "greedy": 0.99, "attempt": 0},
    ]
    assert (
        said[1]
        == "warm-start: greedy 0.530 < 0.9 after 400 steps: 200 more for attempt 1 (greedy 0.590), the best check"
    )


def test_an_extended_attempt_is_kept_even_when_its_check_fell(rounds):
    cfg = WarmstartConfig(steps=400, until_greedy=0.9, retry=["restart", "extend"], extra_steps=200)
    record = _run(cfg, [0.5, 0.7, 0.6], [], fresh=lambda attempt: f"model-{attempt}")
    assert record["kept"] == 1 and record["steps"] == 600  # its 400-step weights are gone


def test_a_retry_list_is_its_own_round_count():
    assert WarmstartConfig(until_greedy=0.9, retry=["restart", "extend"]).retry_plan() == ["restart", "extend"]
    assert WarmstartConfig(until_greedy=0.9, retry="restart", max_extra_rounds=2).retry_plan() == ["restart"] * 2
    assert WarmstartConfig(retry=["restart"]).retry_plan() == []  # no until_greedy, no check, no rounds
    with pytest.raises(ValidationError, match="retry names 2 rounds"):
        WarmstartConfig(until_greedy=0.9, retry=["restart", "extend"], max_extra_rounds=3)
    with pytest.raises(ValidationError, match="empty list"):
        WarmstartConfig(until_greedy=0.9, retry=[])
    with pytest.raises(ValidationError):
        WarmstartConfig(until_greedy=0.9, retry=["restart", "again"])
