"""`posttrain eval` end to end: completions files with hand-computed metrics, gates, resume."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from posttrain.cli.app import app

runner = CliRunner()

GOOD = "<think>1+2=3</think><answer>{}</answer>"


def _data(tmp_path: Path) -> Path:
    rows = [
        {"id": "a", "prompt": "1+2", "answer": "3"},
        {"id": "b", "prompt": "half of 1", "answer": "\\frac{1}{2}"},
        {"id": "c", "prompt": "2+2", "answer": "4"},
    ]
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _completions(tmp_path: Path) -> Path:
    lines = [
        # a: 2 of 4 correct -> pass@1 0.5, pass@2 = 1 - C(2,2)/C(4,2) = 5/6; first two vote 3 -> maj@2 ok
        {"id": "a", "completions": [GOOD.format(3), GOOD.format(3), GOOD.format(5), "no tags 7"]},
        # b: joined by prompt text; 0.5 and 1/2 are the same answer -> 4 of 4 correct
        {
            "prompt": "half of 1",
            "completions": [GOOD.format("0.5"), GOOD.format("1/2"), GOOD.format("\\frac12"), GOOD.format("0.50")],
        },
        # c: 0 of 4 correct
        {"id": "c", "completions": [GOOD.format(5)] * 4},
    ]
    path = tmp_path / "completions.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    return path


def test_completions_metrics_are_exact(tmp_path):
    out = tmp_path / "eval"
    result = runner.invoke(
        app,
        [
            "eval",
            "--completions",
            str(_completions(tmp_path)),
            "--data",
            str(_data(tmp_path)),
            "--k",
            "1,2,4",
            "--output-dir",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    m = report["metrics"]
    assert m["n_problems"] == 3 and m["n_samples"] == 12
    assert abs(m["pass@1"] - (0.5 + 1.0 + 0.0) / 3) < 1e-9
    assert abs(m["pass@2"] - (5 / 6 + 1 + 0) / 3) < 1e-9
    assert abs(m["pass@4"] - (1 + 1 + 0) / 3) < 1e-9
    assert abs(m["maj@2"] - 2 / 3) < 1e-9  # a: 3 wins, b: all equal, c: wrong
    assert abs(m["format_rate"] - 11 / 12) < 1e-9
    assert report["sampling"]["n"] is None  # nothing was sampled
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert samples[1]["samples"][2]["extracted"] in ("\\frac12", "1/2", "\\frac{1}{2}")
    assert (out / "report.md").read_text().count("|") > 10


def test_gate_failure_exits_1_and_names_metric(tmp_path):
    args = [
        "eval",
        "--completions",
        str(_completions(tmp_path)),
        "--data",
        str(_data(tmp_path)),
        "--output-dir",
        str(tmp_path / "e"),
    ]
    assert runner.invoke(app, [*args, "--min", "pass@1=0.4"]).exit_code == 0
    result = runner.invoke(app, [*args, "--min", "pass@1=0.6"])
    assert result.exit_code == 1
    assert "pass@1 = 0.500 is below the bar 0.6" in result.output


def test_bad_gate_and_unmatched_rows(tmp_path):
    data = _data(tmp_path)
    result = runner.invoke(
        app, ["eval", "--completions", str(_completions(tmp_path)), "--data", str(data), "--min", "pass@16=0.1"]
    )
    assert result.exit_code == 2 and "pass@16" in result.output
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "zzz", "completion": "x"}) + "\n")
    result = runner.invoke(
        app, ["eval", "--completions", str(bad), "--data", str(data), "--output-dir", str(tmp_path / "e2")]
    )
    assert result.exit_code == 2 and "bad.jsonl:1" in result.output and "'zzz'" in result.output


def test_needs_model_or_completions(tmp_path):
    result = runner.invoke(app, ["eval", "--data", str(_data(tmp_path))])
    assert result.exit_code == 2 and "--model" in result.output


def test_model_eval_reports_routing_and_resumes(tiny_moe_dir, tmp_path):
    out = tmp_path / "eval"
    args = [
        "eval",
        "--model",
        str(tiny_moe_dir),
        "--data",
        "arithmetic",
        "--num-problems",
        "5",
        "--n",
        "2",
        "--k",
        "1,2",
        "--max-new-tokens",
        "6",
        "--output-dir",
        str(out),
        "--seed",
        "3",
        "--batch-size",
        "4",  # two problems per batch: the resume below skips whole batches and redoes one
    ]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    report = json.loads((out / "report.json").read_text())
    assert report["sampling"] == {"n": 2, "temperature": 1.0, "top_p": 1.0, "max_new_tokens": 6, "seed": 3}
    assert report["metrics"]["n_problems"] == 5 and report["metrics"]["truncation_rate"] is not None
    layers = report["routing"]["layers"]
    assert len(layers) == 2 and all(len(layer["load_share"]) == 4 for layer in layers.values())
    lines = (out / "samples.jsonl").read_text().splitlines()
    assert len(lines) == 5

    # An interrupted eval keeps what it wrote: drop two rows, resume, get the same samples back.
    (out / "samples.jsonl").write_text("\n".join(lines[:3]) + "\n")
    again = runner.invoke(app, [*args, "--resume"])
    assert again.exit_code == 0, again.output
    assert "resuming: 3 problems" in again.output
    assert sorted((out / "samples.jsonl").read_text().splitlines()) == sorted(lines)


def test_failing_reward_plugin_is_reported_not_fatal(tmp_path, monkeypatch):
    (tmp_path / "rewards").mkdir()
    (tmp_path / "rewards" / "x.py").write_text(
        "def fn(completions, **kwargs):\n"
        "    return [1.0 / ('5' not in c) for c in completions]  # ZeroDivisionError on a 5\n"
    )
    monkeypatch.chdir(tmp_path)  # plug-ins named on the command line resolve from the working folder
    out = tmp_path / "eval"
    args = [
        "eval",
        "--completions",
        str(_completions(tmp_path)),
        "--data",
        str(_data(tmp_path)),
        "--reward",
        "accuracy",
        "--reward",
        "rewards/x.py:fn",
        "--output-dir",
        str(out),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "report.json").read_text())["metrics"]
    assert metrics["reward_errors"] == {"fn": 7}  # a: one '5', b: 0.5 and 0.50, c: four
    assert metrics["rewards"]["fn"] == {"mean": 1.0, "n": 5, "n_none": 7}
    assert "reward_errors" in (out / "report.md").read_text()


def test_min_gain_gates_on_the_gain_over_a_baseline_eval(tmp_path):
    data = str(_data(tmp_path))
    base = runner.invoke(
        app,
        ["eval", "--completions", str(_completions(tmp_path)), "--data", data, "--output-dir", str(tmp_path / "base")],
    )
    assert base.exit_code == 0, base.output  # pass@1 (0.5 + 1 + 0) / 3 = 0.5
    better = tmp_path / "better.jsonl"  # c now right 2 of 4 times: pass@1 (0.5 + 1 + 0.5) / 3 = 2/3
    better.write_text(
        "".join(
            json.dumps(r) + "\n"
            for r in [
                {"id": "a", "completions": [GOOD.format(3), GOOD.format(3), GOOD.format(5), "no tags 7"]},
                {"id": "b", "completions": [GOOD.format("0.5")] * 4},
                {"id": "c", "completions": [GOOD.format(4), GOOD.format(4), GOOD.format(5), GOOD.format(5)]},
            ]
        )
    )
    args = [
        "eval",
        "--completions",
        str(better),
        "--data",
        data,
        "--baseline",
        str(tmp_path / "base" / "report.json"),
        "--output-dir",
        str(tmp_path / "better"),
    ]
    passed = runner.invoke(app, [*args, "--min-gain", "pass@1=0.15"])
    assert passed.exit_code == 0, passed.output
    report = json.loads((tmp_path / "better" / "report.json").read_text())
    assert abs(report["baseline"]["gains"]["pass@1"] - 1 / 6) < 1e-9 and report["baseline"]["metrics"]["pass@1"] == 0.5
    assert "Against the baseline" in (tmp_path / "better" / "report.md").read_text()
    short = runner.invoke(app, [*args, "--min-gain", "pass@1=0.2"])
    assert (
        short.exit_code == 1
        and "pass@1 gained +0.1667 over the baseline (0.5000 -> 0.6667), below the required +0.2" in short.output
    )

    alone = runner.invoke(app, ["eval", "--completions", str(better), "--data", data, "--min-gain", "pass@1=0.1"])
    assert alone.exit_code == 2 and "--min-gain needs --baseline" in alone.output
    other = tmp_path / "other.jsonl"
    other.write_text((tmp_path / "data.jsonl").read_text())
    unlike = runner.invoke(
        app,
        [
            "eval",
            "--completions",
            str(better),
            "--data",
            str(other),
            "--baseline",
            str(tmp_path / "base" / "report.json"),
            "--min-gain",
            "pass@1=0.1",
            "--output-dir",
            str(tmp_path / "u"),
        ],
    )
    assert unlike.exit_code == 2 and "evaluated differently" in unlike.output and "Traceback" not in unlike.output
    assert not (tmp_path / "u" / "report.json").exists()  # refused before any work


@pytest.mark.slow
def test_eval_recipe_reproduces_the_runs_own_held_out_figures(quick_overrides, tmp_path):
    # One held-out path: `eval --recipe` picks the run's held-out problems, prompts and sampling, so
    # the saved policy scores exactly what the run reported for it.
    recipe = str(Path(__file__).resolve().parents[2] / "recipes/tiny-math.yaml")
    sets = [a for o in [*quick_overrides, "eval.batch_size=4", "eval.seed=11"] for a in ("--set", o)]
    run = runner.invoke(app, ["grpo", recipe, *sets])
    assert run.exit_code == 0, run.output
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    out = tmp_path / "eval"
    ev = runner.invoke(
        app, ["eval", "--recipe", recipe, *sets, "--model", str(tmp_path / "run"), "--output-dir", str(out)]
    )
    assert ev.exit_code == 0, ev.output
    report = json.loads((out / "report.json").read_text())
    assert report["metrics"]["pass@1"] == summary["final_accuracy"]
    assert report["metrics"]["n_problems"] == summary["eval"]["num_problems"] == 6
    assert report["sampling"] == {"n": 2, "temperature": 1.0, "top_p": 1.0, "max_new_tokens": 12, "seed": 11}
    trained = [json.loads(line) for line in (tmp_path / "run" / "heldout_trained.jsonl").read_text().splitlines()]
    evaluated = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert [(r["id"], r["prompt"]) for r in evaluated] == [(r["id"], r["prompt"]) for r in trained]
    assert [[x["text"] for x in r["samples"]] for r in evaluated] == [
        [x["text"] for x in r["samples"]] for r in trained
    ]
