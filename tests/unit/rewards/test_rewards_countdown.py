import time

from posttrain.data.tasks import TASKS
from posttrain.rewards.countdown import check_expression, countdown
from posttrain.rewards.registry import build


def test_generated_solutions_score_one():
    rows = TASKS["countdown"][0](40, seed=2)
    scores = countdown(
        [r["solution"] for r in rows], answer=[r["answer"] for r in rows], numbers=[r["numbers"] for r in rows]
    )
    assert scores == [1.0] * 40


def test_wrong_value_extra_or_missing_numbers():
    assert not check_expression("2+3", [2, 3], 6)
    assert not check_expression("2+2", [2, 3], 4)  # 2 used twice
    assert countdown(["<answer>2*3</answer>"], answer=["6"], numbers=[[2, 3, 4]]) == [0.0]  # 4 unused
    assert countdown(["<answer>2*3</answer>"], answer=["6"], numbers=[[2, 3, 4]], require_all=False) == [1.0]
    assert countdown(["no answer"], answer=["6"], numbers=[[2, 3]]) == [0.0]
    assert countdown(["<answer>1</answer>"], answer=[None], numbers=[[1]]) == [None]


def test_hostile_expressions_are_bounded():
    hostile = [
        "__import__('os').system('echo hi')",
        "9**9**9**9",
        "(" * 10000 + "1" + ")" * 10000,
        "1/0",
        "1" * 1_000_000,
        "2\x00+2",
        "２+２",
    ]
    start = time.perf_counter()
    for expr in hostile:
        assert countdown([f"<answer>{expr}</answer>"], answer=["4"], numbers=[[2, 2]]) == [0.0]
    assert time.perf_counter() - start < 1.0


def test_registered():
    (fn,), _ = build([{"name": "countdown"}])
    assert fn.__name__ == "countdown"
