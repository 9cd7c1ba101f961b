"""`posttrain rewards list` and `posttrain rewards score`, run in-process with CliRunner."""

import json

from typer.testing import CliRunner

from posttrain.cli.rewards import app

runner = CliRunner()
GOOD = "<think>12+34=46 46+5=51</think><answer>51</answer>"


def _rows(tmp_path, rows):
    path = tmp_path / "completions.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_list_shows_builtins_and_kwargs():
    result = runner.invoke(app, ["list"], terminal_width=200)
    assert result.exit_code == 0, result.output
    for text in ("accuracy", "format", "allow_prefilled_think", "max_length (required)"):
        assert text in result.output


def test_score_writes_per_row_scores_atomically(tmp_path):
    data = _rows(
        tmp_path,
        [
            {"id": "a", "completion": GOOD, "answer": "51"},
            {"id": "b", "completion": "The answer is 50", "answer": "51"},
            {"id": "c", "completion": [{"role": "assistant", "content": GOOD}], "answer": ""},
        ],
    )
    out = tmp_path / "out" / "scores.jsonl"
    result = runner.invoke(
        app, ["score", str(data), "-r", "accuracy", "-r", "format", "--output", str(out)], terminal_width=200
    )
    assert result.exit_code == 0, result.output
    assert "accuracy" in result.output and "0.5000" in result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["a", "b", "c"]
    assert [r["accuracy"] for r in rows] == [1.0, 0.0, None]
    assert [r["format"] for r in rows] == [1.0, 0.0, 1.0]
    assert rows[0]["total"] == 2.0
    assert [p.name for p in out.parent.iterdir()] == ["scores.jsonl"]  # no temp file left


def test_score_with_recipe_and_answer_column(tmp_path):
    data = _rows(tmp_path, [{"completion": "\\boxed{4}", "gold": "4"}])
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "model: x\nrewards:\n  - {name: accuracy, weight: 2.0}\n"
        "  - {name: overlong, kwargs: {max_length: 100, unit: chars}}\n"
    )
    result = runner.invoke(
        app, ["score", str(data), "--recipe", str(recipe), "--answer-column", "gold"], terminal_width=200
    )
    assert result.exit_code == 0, result.output
    assert "overlong" in result.output and "1.0000" in result.output


def test_user_errors_are_one_clear_message(tmp_path):
    data = _rows(tmp_path, [{"completion": "1", "answer": "1"}])
    result = runner.invoke(app, ["score", str(data), "-r", "acuracy"])
    assert result.exit_code == 2 and "Did you mean 'accuracy'" in result.output
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"completion": "1"}\nnot json\n')
    result = runner.invoke(app, ["score", str(bad)])
    assert result.exit_code == 2 and "bad.jsonl:2" in result.output
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: x\n")
    result = runner.invoke(app, ["score", str(data), "--recipe", str(recipe)])
    assert result.exit_code == 2 and "no `rewards:` list" in result.output


def test_score_counts_plugin_errors_and_honours_strict(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # plug-in files resolve from where posttrain runs, as in grpo and distill
    data = _rows(tmp_path, [{"completion": "ab", "answer": "1"}, {"completion": "", "answer": "1"}])
    (tmp_path / "x.py").write_text("def fn(completions, **kwargs):\n    return [1.0 / len(c) for c in completions]\n")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("rewards:\n  functions:\n    - {name: x.py:fn}\n")
    out = tmp_path / "scores.jsonl"
    result = runner.invoke(app, ["score", str(data), "--recipe", str(recipe), "--output", str(out)], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "n errors" in result.output
    assert [json.loads(line)["fn"] for line in out.read_text().splitlines()] == [0.5, None]
    recipe.write_text("rewards:\n  strict: true\n  functions:\n    - {name: x.py:fn}\n")
    result = runner.invoke(app, ["score", str(data), "--recipe", str(recipe)])
    assert result.exit_code == 2 and "reward 'fn' raised ZeroDivisionError" in result.output
