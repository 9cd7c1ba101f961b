"""Report files, terminal table and --min gates."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from posttrain.errors import PosttrainError
from posttrain.evaluate.metrics import summarize
from posttrain.evaluate.report import (
    SCHEMA_VERSION,
    Report,
    check_gates,
    gate_names,
    gate_values,
    parse_gates,
    read_report,
    render_table,
    write_report,
    write_samples,
)
from posttrain.telemetry.routing_stats import routing_summary

METRICS = {
    "n_problems": 3,
    "n_excluded": 1,
    "n_samples": 12,
    "pass@1": 0.625,
    "pass@1_ci95": [0.38, 0.87],
    "pass@4": 1.0,
    "maj@4": 0.5,
    "format_rate": 0.9,
    "rewards": {"format": {"mean": 0.9, "n": 11, "n_none": 1}},
    "length": {"mean": 20.0, "median": 13.0, "max": 100},
    "truncation_rate": 0.25,
}


def make_report(routing=None) -> Report:
    return Report(
        model="tiny-moe",
        data="gsm8k",
        sampling={"n": 4, "temperature": 0.7, "seed": 0},
        metrics=METRICS,
        routing=routing,
        wall_seconds=12.5,
    )


def test_report_files_round_trip(tmp_path):
    report = make_report(routing_summary({"layers.0.mlp": [10, 10, 10, 30]}))
    json_path, md_path = write_report(report, tmp_path / "out")
    data = json.loads(json_path.read_text())
    assert data["schema_version"] == SCHEMA_VERSION == 1
    assert data["sampling"] == {"n": 4, "temperature": 0.7, "top_p": None, "max_new_tokens": None, "seed": 0}
    assert read_report(json_path) == report
    md = md_path.read_text()
    assert "| pass@1 | 0.625 (95% CI 0.380–0.870) |" in md
    assert "| reward/format | 0.900 (n=11, None=1) |" in md
    assert "| length mean / median / max | 20.0 / 13.0 / 100 tokens |" in md
    assert "| layers.0.mlp | 4 | 1.000 | 2.000 |" in md


def test_report_without_routing_has_no_routing_table(tmp_path):
    _, md_path = write_report(make_report().model_dump(), tmp_path)  # a plain dict works too
    assert "routing" not in md_path.read_text()


def test_newer_schema_is_refused_with_the_file_named(tmp_path):
    path = tmp_path / "report.json"
    path.write_text(json.dumps({**make_report().model_dump(), "schema_version": 2}))
    with pytest.raises(PosttrainError, match="report.json.*schema_version 2"):
        read_report(path)


def test_write_samples_one_row_per_problem(tmp_path):
    records = [
        {
            "id": "a",
            "prompt": "2+2?",
            "answer": "4",
            "samples": [
                {
                    "text": "4",
                    "extracted": "4",
                    "correct": True,
                    "rewards": {"accuracy": 1.0},
                    "num_tokens": 1,
                    "truncated": False,
                    "logprobs": [0.1],
                }
            ],
        }
    ]
    rows = [json.loads(line) for line in write_samples(records, tmp_path).read_text().splitlines()]
    assert rows == [
        {
            "id": "a",
            "prompt": "2+2?",
            "answer": "4",
            "samples": [
                {
                    "text": "4",
                    "extracted": "4",
                    "correct": True,
                    "rewards": {"accuracy": 1.0},
                    "num_tokens": 1,
                    "truncated": False,
                }
            ],
        }
    ]


def test_render_table_prints_metrics_and_routing():
    console = Console(file=io.StringIO(), width=120)
    render_table(make_report(routing_summary({"l0": [1, 1]})), console)
    out = console.file.getvalue()
    assert "pass@1" in out and "0.625" in out and "MoE routing" in out and "l0" in out


def test_parse_gates():
    assert parse_gates(["pass@1=0.35", " format_rate = 0.9 "]) == {"pass@1": 0.35, "format_rate": 0.9}
    assert parse_gates([]) == {}


def test_parse_gates_reports_every_bad_item_with_the_expected_form():
    with pytest.raises(PosttrainError) as e:
        parse_gates(["pass@1", "format_rate=high", "pass@1=35", "maj@4=0.5", "maj@4=0.6"])
    msg = str(e.value)
    assert "--min 'pass@1': expected METRIC=VALUE" in msg
    assert "'high' is not a number" in msg
    assert "did you mean pass@1=0.35?" in msg
    assert "maj@4 is already gated at 0.5" in msg


def test_parse_gates_unknown_metric_lists_the_known_ones():
    known = gate_values(METRICS)
    with pytest.raises(PosttrainError) as e:
        parse_gates(["pass@16=0.5"], known=known)
    assert "unknown metric 'pass@16' (did you mean pass@1?)" in str(e.value)
    known_list = "n_problems, n_excluded, n_samples, pass@1, pass@4, maj@4, format_rate, truncation_rate"
    assert f"known metrics: {known_list}, reward/format" in str(e.value)


def test_check_gates_messages():
    metrics = {**METRICS, "pass@1": 0.281}
    assert check_gates(metrics, {"pass@1": 0.35}) == ["pass@1 = 0.281 is below the bar 0.35"]
    assert check_gates(metrics, {"pass@4": 1.0, "reward/format": 0.9}) == []  # the bar itself passes
    # never print a failing value as if it met the bar
    close = {**METRICS, "pass@1": 0.3499, "n_problems": 3}
    assert check_gates(close, {"pass@1": 0.35, "n_problems": 10}) == [
        "pass@1 = 0.3499 is below the bar 0.35",
        "n_problems = 3 is below the bar 10",
    ]


def test_check_gates_fails_a_metric_that_could_not_be_computed():
    [msg] = check_gates({**METRICS, "pass@1": None}, {"pass@1": 0.1})
    assert msg.startswith("pass@1 is not available")


def test_check_gates_unknown_metric_is_a_user_error():
    with pytest.raises(PosttrainError, match="unknown metric 'pass@8'.*known metrics: n_problems"):
        check_gates(METRICS, {"pass@8": 0.5})


def test_gate_names_match_what_summarize_produces():
    record = {"id": "a", "samples": [{"extracted": "1", "correct": True, "rewards": {"format": 1.0}}] * 4}
    metrics = summarize([record], [1, 2, 4], lambda a, b: a == b)
    assert gate_names([1, 2, 4], ["format"]) == list(gate_values(metrics))
