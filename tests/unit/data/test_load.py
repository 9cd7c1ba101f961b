import json

import pytest

from posttrain.config.schema import DataConfig, EvalConfig, WarmstartConfig
from posttrain.data.load import gsm8k_answer, load_rows, source_kind, to_prompt
from posttrain.data.splits import make_splits
from posttrain.data.tasks import TASKS
from posttrain.errors import DataError


def test_tasks_are_deterministic_and_worked():
    for generate, _ in TASKS.values():
        a, b = generate(20, seed=3), generate(20, seed=3)
        assert a == b and a != generate(20, seed=4)
        for row in a:
            assert row["solution"].startswith("<think>") and row["solution"].endswith("</answer>")


def test_arithmetic_steps_are_correct():
    for row in TASKS["arithmetic"][0](50, seed=0, num_terms=4, ops="+-"):
        think = row["solution"][len("<think>") : row["solution"].index("</think>")]
        for step in think.split():
            lhs, rhs = step.split("=")
            left, op, right = lhs.partition("+") if "+" in lhs[1:] else lhs.rpartition("-")
            assert (int(left) + int(right) if op == "+" else int(left) - int(right)) == int(rhs)
        assert row["solution"].endswith(f"<answer>{row['answer']}</answer>")


def test_countdown_answer_reaches_target():
    for row in TASKS["countdown"][0](50, seed=1):
        expr = row["solution"].split("<answer>")[1].split("</answer>")[0]
        # Only digits, operators and brackets: safe to check with a tiny evaluator of our own.
        assert set(expr) <= set("0123456789+-*()")
        assert sorted(
            int(t)
            for t in expr.replace("(", " ")
            .replace(")", " ")
            .replace("+", " ")
            .replace("-", " ")
            .replace("*", " ")
            .split()
        ) == sorted(row["numbers"])
        assert eval(expr, {"__builtins__": {}}) == int(row["answer"])  # test-only, on our own generated text


def test_source_kinds(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text("")
    assert source_kind("arithmetic") == "task"
    assert source_kind(str(f)) == "file"
    assert source_kind("openai/gsm8k") == "hub"


def test_jsonl_with_presets_and_columns(tmp_path):
    f = tmp_path / "gsm.jsonl"
    f.write_text(json.dumps({"question": "2+2?", "answer": "so...\n#### 1,004"}) + "\n")
    rows = load_rows(str(f))
    assert rows[0]["question"] == "2+2?" and rows[0]["answer"] == "1004"
    assert gsm8k_answer("x #### 42") == "42"


def test_missing_column_names_file_and_columns(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text(json.dumps({"q": "1+1", "a": "2"}) + "\n")
    with pytest.raises(DataError, match=r"no column 'prompt'; columns are: q, a"):
        load_rows(str(f))
    rows = load_rows(str(f), prompt_column="q", answer_column="a")
    assert rows[0]["answer"] == "2"


def test_malformed_jsonl_line_number_and_skip(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text('{"prompt": "a", "answer": "1"}\n{oops\n{"prompt": "b", "answer": "2"}\n')
    with pytest.raises(DataError, match=r"d.jsonl:2: malformed JSON"):
        load_rows(str(f))
    assert [r["question"] for r in load_rows(str(f), skip_bad_rows=True)] == ["a", "b"]


def test_skipped_rows_are_counted_and_reported(tmp_path, caplog):
    f = tmp_path / "d.jsonl"
    f.write_text('{"prompt": "a", "answer": "1"}\n{oops\n[1]\n{"prompt": "b"}\n{"prompt": "c", "answer": "3"}\n')
    with caplog.at_level("WARNING", logger="posttrain.data.load"):
        rows = load_rows(str(f), skip_bad_rows=True)
    assert [r["question"] for r in rows] == ["a", "c"]
    assert (
        "skipped 3 bad rows" in caplog.text and "2 malformed, 1 without" in caplog.text and "d.jsonl:2" in caplog.text
    )


def test_heldout_never_in_training_or_warmstart():
    data = DataConfig(source="arithmetic", task_args={"num_terms": 2, "low": 1, "high": 9}, num_train=300)
    splits = make_splits(data, EvalConfig(num_problems=40), WarmstartConfig(steps=1, num_examples=300))
    held = {r["question"] for r in splits.heldout}
    assert len(splits.heldout) == 40
    assert held.isdisjoint(r["question"] for r in splits.train)
    assert held.isdisjoint(r["question"] for r in splits.warmstart)
    assert splits.warmstart and all(r["solution"] for r in splits.warmstart)
    # With the run's own eval off, `posttrain eval --recipe` still scores these problems later:
    # training and the warm-start must not have seen them.
    quiet = make_splits(data, EvalConfig(num_problems=40, enabled=False), WarmstartConfig(steps=1, num_examples=300))
    assert quiet.heldout == []
    assert held.isdisjoint(r["question"] for r in quiet.train) and held.isdisjoint(
        r["question"] for r in quiet.warmstart
    )
    assert [r["question"] for r in quiet.train] == [r["question"] for r in splits.train]


def test_file_source_sets_aside_heldout(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text("".join(json.dumps({"prompt": f"p{i}", "answer": str(i)}) + "\n" for i in range(50)))
    splits = make_splits(DataConfig(source=str(f)), EvalConfig(num_problems=5))
    assert len(splits.heldout) == 5 and len(splits.train) == 45


def test_prompt_forms():
    assert to_prompt("1+1", None, chat=True) == [{"role": "user", "content": "1+1"}]
    assert to_prompt("1+1", "sys", chat=True)[0] == {"role": "system", "content": "sys"}
    assert to_prompt("1+1", None, chat=False) == "1+1"
