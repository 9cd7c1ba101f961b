"""Every entry point answers malformed input with exit code 2 and one message that names the problem.

Recipe problems are covered in test_grpo_cli/test_distill_cli; here: data files (malformed line,
missing column), model paths that do not exist, and completions files, for each command that
takes them. All of these fail before any model is trained, so the whole file runs in seconds.
"""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from posttrain.cli.app import app

REPO = Path(__file__).resolve().parents[2]
GRPO = str(REPO / "recipes/tiny-math.yaml")
runner = CliRunner()


@pytest.fixture
def files(tmp_path) -> dict[str, str]:
    bad_line = tmp_path / "bad_line.jsonl"
    bad_line.write_text(
        '{"question": "1+1", "answer": "2"}\n{"question": "2+2", "answer": 4\n{"question": "3+3", "answer": "6"}\n'
    )
    columns = tmp_path / "columns.jsonl"
    columns.write_text('{"q": "1+1", "a": "2"}\n')
    completions = tmp_path / "completions.jsonl"
    completions.write_text('{"completion": "<answer>2</answer>", "answer": "2"}\nnot json\n')
    return {
        "bad_line": str(bad_line),
        "columns": str(columns),
        "completions": str(completions),
        "no_model": str(tmp_path / "no-model"),
        "no_file": str(tmp_path / "absent.jsonl"),
        "out": str(tmp_path / "out"),
    }


CASES = {
    "grpo: malformed data line": (
        lambda f: ["grpo", GRPO, "--set", f"output.dir={f['out']}", "--set", f"data.source={f['bad_line']}"],
        ["bad_line.jsonl:2", "malformed JSON"],
    ),
    "grpo: missing data column": (
        lambda f: ["grpo", GRPO, "--set", f"output.dir={f['out']}", "--set", f"data.source={f['columns']}"],
        ["columns.jsonl", "no column 'prompt'", "columns are: q, a", "data.prompt_column"],
    ),
    "grpo: model path": (
        lambda f: [
            "grpo",
            GRPO,
            "--set",
            f"output.dir={f['out']}",
            "--set",
            f"model.name_or_path={f['no_model']}",
            "--set",
            "model.builder_args={}",
        ],
        ["no-model", "no such model directory"],
    ),
    "grpo: routing replay on a dense model, refused before the warm-start": (
        lambda f: [
            "grpo",
            GRPO,
            *("--set", f"output.dir={f['out']}", "--set", "model.name_or_path=build:tiny-dense"),
            *("--set", "model.builder_args={}", "--set", "moe.routing_replay=rollout"),
        ],
        ["moe.routing_replay=rollout", "has no MoE layers"],
    ),
    "distill: model path": (
        lambda f: [
            "distill",
            "--teacher",
            f["no_model"],
            "--student",
            "build:tiny-dense",
            "--data",
            "arithmetic",
            "--output-dir",
            f["out"],
        ],
        ["no-model", "no such model directory"],
    ),
    "distill: malformed data line": (
        lambda f: [
            "distill",
            "--teacher",
            "build:tiny-moe",
            "--student",
            "build:tiny-dense",
            "--data",
            f["bad_line"],
            "--output-dir",
            f["out"],
        ],
        ["bad_line.jsonl:2", "malformed JSON"],
    ),
    "eval: model path": (
        lambda f: ["eval", "--model", f["no_model"], "--data", "arithmetic", "--output-dir", f["out"]],
        ["no-model", "no such model directory"],
    ),
    "eval: completions file missing": (
        lambda f: ["eval", "--completions", f["no_file"], "--data", "arithmetic", "--output-dir", f["out"]],
        ["absent.jsonl", "file not found"],
    ),
    "eval: missing data column": (
        lambda f: ["eval", "--completions", f["completions"], "--data", f["columns"], "--output-dir", f["out"]],
        ["columns.jsonl", "no column 'prompt'"],
    ),
    "rewards score: malformed completions line": (
        lambda f: ["rewards", "score", f["completions"]],
        ["completions.jsonl:2", "not valid JSON"],
    ),
    "rewards score: completions file missing": (lambda f: ["rewards", "score", f["no_file"]], ["absent.jsonl"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_exits_2_with_a_message_naming_it(case, files):
    args, expected = CASES[case]
    # wide enough that rich's error box never wraps a long temporary path mid-name
    result = runner.invoke(app, args(files), env={"COLUMNS": "400"})
    said = " ".join(result.output.split())  # rich wraps long lines at the terminal width
    assert result.exit_code == 2, result.output
    assert "Traceback" not in said and "error" in said.lower()
    assert not (Path(files["out"]) / "base").exists()  # nothing was warm-started
    for fragment in expected:
        assert fragment in said, f"{fragment!r} not in {said!r}"


def test_a_run_that_failed_on_its_inputs_can_be_rerun_without_flags(files):
    first = runner.invoke(app, CASES["grpo: malformed data line"][0](files))
    assert first.exit_code == 2
    again = runner.invoke(app, CASES["grpo: malformed data line"][0](files))
    assert "already holds a run" not in again.output and "bad_line.jsonl:2" in " ".join(again.output.split())
