"""Every exit code in the README's table is the one the CLI returns in that situation."""

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from posttrain.cli.app import app
from posttrain.errors import ConfigError, DataError, Interrupted
from posttrain.safety import NonFiniteError

REPO = Path(__file__).resolve().parents[2]
RECIPE = str(REPO / "recipes/tiny-math.yaml")
runner = CliRunner()


def _readme_codes() -> dict[int, str]:
    section = (REPO / "README.md").read_text().split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    return {int(m[1]): m[2] for m in re.finditer(r"^\| `(\d+)` \| (.+) \|$", section, flags=re.M)}


def test_the_readme_table_lists_exactly_the_codes_the_cli_returns():
    assert set(_readme_codes()) == {0, 1, 2, 3, 130}


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ConfigError("grpo.beta: must be >= 0"), 2),
        (DataError("data.jsonl line 3: no 'answer'"), 2),
        (NonFiniteError("step 4: loss is nan"), 3),
        (Interrupted("SIGINT at step 3: checkpoint saved"), 130),
    ],
)
def test_a_run_that_stops_on_a_problem_exits_with_its_code_and_one_line(monkeypatch, tmp_path, error, code):
    def stopped(*args, **kwargs):
        raise error

    monkeypatch.setattr("posttrain.grpo.run.run", stopped)
    result = runner.invoke(app, ["grpo", RECIPE, "--set", f"output.dir={tmp_path / 'run'}"])
    assert result.exit_code == code, result.output
    assert result.output.strip() == f"error: {error}"


def test_success_and_a_failed_gate(tmp_path):
    data, completions = tmp_path / "data.jsonl", tmp_path / "completions.jsonl"
    data.write_text(json.dumps({"id": "a", "prompt": "1+2", "answer": "3"}) + "\n")
    good, bad = "<think>1+2=3</think><answer>3</answer>", "<think>1+2=4</think><answer>4</answer>"
    completions.write_text(json.dumps({"id": "a", "completions": [good, bad]}) + "\n")
    args = ["eval", "--completions", str(completions), "--data", str(data), "--output-dir", str(tmp_path / "e")]
    assert runner.invoke(app, [*args, "--min", "pass@1=0.5"]).exit_code == 0
    failed = runner.invoke(app, [*args, "--min", "pass@1=0.75"])
    assert failed.exit_code == 1 and "below the bar 0.75" in failed.output


def test_shell_completion_is_on_and_completes_commands_and_options():
    script = runner.invoke(app, ["--show-completion", "bash"])
    assert script.exit_code == 0 and "_POSTTRAIN_COMPLETE=complete_bash" in script.output
    env = {"_POSTTRAIN_COMPLETE": "complete_bash", "COMP_WORDS": "posttrain gr", "COMP_CWORD": "1"}
    assert runner.invoke(app, [], env=env, prog_name="posttrain").output.split() == ["grpo"]
    env = {"_POSTTRAIN_COMPLETE": "complete_bash", "COMP_WORDS": "posttrain eval --mi", "COMP_CWORD": "2"}
    assert runner.invoke(app, [], env=env, prog_name="posttrain").output.split() == ["--min", "--min-gain"]
