"""Trace filtering is a pure function of scored samples: accept, de-duplicate, keep, count."""

import json

import pytest

from posttrain.config.distill_schema import TracesConfig
from posttrain.distill.traces import TraceFilter, _check_resumable, make_filter, rejection_reasons, select
from posttrain.errors import ConfigError, PosttrainError


def sample(text, acc=1.0, fmt=1.0, tokens=None, truncated=False):
    return {
        "text": text,
        "rewards": {"accuracy": acc, "format": fmt},
        "num_tokens": tokens or len(text),
        "truncated": truncated,
    }


def record(rid, *samples):
    return {"id": rid, "prompt": [{"role": "user", "content": rid}], "answer": "3", "samples": list(samples)}


FLT = TraceFilter({"accuracy": 1.0, "format": 1.0}, strict="accuracy")


def test_rejection_names_every_failing_reward():
    assert rejection_reasons(sample("x"), FLT) == []
    assert rejection_reasons(sample("x", acc=0.0, fmt=0.0), FLT) == ["accuracy", "format"]
    assert rejection_reasons(sample("x", truncated=True), FLT) == ["truncated"]
    assert rejection_reasons(sample("x", truncated=True), TraceFilter({"accuracy": 1.0}, drop_truncated=False)) == []


def test_none_vetoes_only_the_correctness_reward():
    assert rejection_reasons(sample("x", acc=None), FLT) == ["accuracy"]  # unverified is not good
    assert rejection_reasons(sample("x", fmt=None), FLT) == []  # "does not apply"


def test_select_dedupes_per_prompt_and_counts():
    records = [
        record(
            "a",
            sample("<think>1+2=3</think><answer>3</answer>"),
            sample(" <think>1+2=3</think>  <answer>3</answer>"),
            sample("wrong", acc=0.0),
        ),
        record("b", sample("<think>1+2=3</think><answer>3</answer>"), sample("bad format", fmt=0.0)),
        record("c", sample("no", acc=0.0)),
    ]
    kept, stats = select(records, FLT)
    assert [k["id"] for k in kept] == ["a", "b"]  # the same text under another prompt is not a duplicate
    assert stats["samples"] == 6 and stats["accepted"] == 3 and stats["duplicates"] == 1
    assert stats["kept"] == 2 and stats["prompts_with_trace"] == 2 and stats["prompts"] == 3
    assert stats["acceptance_rate"] == pytest.approx(0.5)
    assert stats["rejected_by"] == {"accuracy": 2, "format": 1}
    assert stats["tokens_kept"] == sum(k["num_tokens"] for k in kept)
    assert kept[0]["rewards"] == {"accuracy": 1.0, "format": 1.0}  # the scores that accepted it
    json.dumps(kept)  # rows are JSON


def test_keep_shortest_and_cap_per_prompt():
    rec = record("a", sample("long trace here", tokens=9), sample("short", tokens=3), sample("mid one", tokens=5))
    kept, _ = select([rec], TraceFilter({"accuracy": 1.0}, keep="shortest", keep_per_prompt=2))
    assert [k["completion"] for k in kept] == ["short", "mid one"]
    kept, _ = select([rec], TraceFilter({"accuracy": 1.0}, keep="all", keep_per_prompt=1))
    assert [k["completion"] for k in kept] == ["long trace here"]


def test_filter_defaults_to_every_reward_and_rejects_unknown_names():
    flt = make_filter(TracesConfig(), ["accuracy", "format"], "accuracy")
    assert flt.require == {"accuracy": 1.0, "format": 1.0} and flt.strict == "accuracy"
    with pytest.raises(ConfigError, match="accurcy not among the recipe's rewards"):
        make_filter(TracesConfig(require={"accurcy": 1.0}), ["accuracy", "format"], "accuracy")


def test_raw_traces_of_other_prompts_refuse_to_resume(tmp_path):
    rows = [{"id": "a"}, {"id": "b"}]
    _check_resumable([{"id": "a"}], rows, tmp_path / "raw.jsonl")
    with pytest.raises(PosttrainError, match="other prompts"):
        _check_resumable([{"id": "z"}], rows, tmp_path / "raw.jsonl")
