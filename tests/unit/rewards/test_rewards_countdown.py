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


def test_evaluation_reads_countdown_answers_as_expressions():
    # Held-out evaluation and `posttrain eval` read and vote on answers by the correctness reward's
    # rule, not the math checker's: for countdown two routes to the target are two answers.
    from posttrain.evaluate.metrics import summarize
    from posttrain.evaluate.sampling import Sample
    from posttrain.evaluate.scoring import answers_of, score_rows

    (fn,), _ = build([{"name": "countdown"}])
    rule = answers_of(fn)
    assert rule.extract("<think>6+4=10</think><answer> 2*3 + 4 </answer>") == "2*3 + 4"
    assert rule.equivalent("2*3 + 4", "2*3+4") and not rule.equivalent("2*3+4", "4+2*3")
    assert answers_of(build([{"name": "accuracy"}])[0][0]).equivalent("10", "10.0")  # math answers for accuracy

    texts = ["<answer>2*3+4</answer>", "<answer>4+2*3</answer>", "<answer>2+3+4</answer>"]
    samples = [[Sample(text=t, num_tokens=5, truncated=False) for t in texts]]
    rows = [{"id": "p", "question": "reach 10", "answer": "10", "numbers": [2, 3, 4]}]
    records = score_rows(rows, samples, [fn], fn, rule.extract)
    assert [s["extracted"] for s in records[0]["samples"]] == ["2*3+4", "4+2*3", "2+3+4"]
    assert [s["correct"] for s in records[0]["samples"]] == [True, True, False]
    assert summarize(records, [1, 3], rule.equivalent)["pass@1"] == 2 / 3
