from pathlib import Path

import pytest

from posttrain.config import GRPORecipe, load_recipe, parse_overrides
from posttrain.errors import ConfigError

REPO = Path(__file__).resolve().parents[3]


def test_every_recipe_in_repo_validates():
    recipes = sorted((REPO / "recipes").glob("*.yaml"))
    assert recipes, "no recipes found"
    for path in recipes:
        text = path.read_text()
        first = text.splitlines()[0]
        assert first.startswith("# posttrain ") and path.name in first, f"{path.name} must open with its command"
        if "grpo:" in text:
            cfg = load_recipe(path, GRPORecipe)
            assert cfg.output.dir and cfg.grpo.max_steps > 0


def test_overrides_parse_yaml_values():
    assert parse_overrides(["grpo.learning_rate=1e-5", "eval.enabled=false", "a.b=x"]) == [
        (["grpo", "learning_rate"], 1e-5),
        (["eval", "enabled"], False),
        (["a", "b"], "x"),
    ]


def test_override_applies_and_is_validated():
    cfg = load_recipe(
        REPO / "recipes/tiny-math.yaml", GRPORecipe, ["grpo.max_steps=7", "output.dir=/tmp/x", "rewards.1.weight=0.5"]
    )
    assert cfg.grpo.max_steps == 7 and cfg.output.dir == "/tmp/x" and cfg.rewards.functions[1].weight == 0.5
    with pytest.raises(ConfigError, match="grpo.max_steps"):
        load_recipe(REPO / "recipes/tiny-math.yaml", GRPORecipe, ["grpo.max_steps=-1"])


def test_override_without_equals_is_rejected():
    with pytest.raises(ConfigError, match="KEY.PATH=VALUE"):
        parse_overrides(["grpo.max_steps"])


def test_all_problems_reported_once_with_lines_and_suggestions(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "model:\n  name_or_path: build:tiny-moe\n"
        "data:\n  source: arithmetic\n"
        "rewards:\n  - name: accuracy\n    wieght: 2\n"
        "grpo:\n  num_generation: 8\n  learning_rate: abc\n"
    )
    with pytest.raises(ConfigError) as err:
        load_recipe(bad, GRPORecipe)
    msg = str(err.value)
    assert "found 3 problem(s)" in msg
    assert "grpo.num_generation (line 9): unknown key — did you mean num_generations?" in msg
    assert "rewards.0.wieght (line 7): unknown key — did you mean weight?" in msg
    assert "grpo.learning_rate (line 10)" in msg and "'abc'" in msg


def test_missing_sections_and_bad_builder(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  name_or_path: build:huge-moe\n")
    with pytest.raises(ConfigError) as err:
        load_recipe(bad, GRPORecipe)
    msg = str(err.value)
    assert "data: required but missing" in msg and "rewards: required but missing" in msg
    assert "unknown builder 'huge-moe'" in msg


def test_trl_passthrough_is_checked():
    with pytest.raises(ConfigError, match="not a trl.GRPOConfig field .did you mean"):
        load_recipe(REPO / "recipes/tiny-math.yaml", GRPORecipe, ["grpo.trl={num_iteration: 2}"])
    cfg = load_recipe(REPO / "recipes/tiny-math.yaml", GRPORecipe, ["grpo.trl={log_completions: true}"])
    assert cfg.grpo.trl == {"log_completions": True}


def test_batch_must_hold_whole_groups():
    with pytest.raises(ConfigError, match="multiple of num_generations"):
        load_recipe(REPO / "recipes/tiny-math.yaml", GRPORecipe, ["grpo.per_device_train_batch_size=6"])


def test_warmup_under_a_constant_schedule_is_refused_not_ignored():
    # transformers' "constant" schedule drops warmup silently; the recipe says so instead.
    bad = ["grpo.lr_scheduler_type=constant", "grpo.warmup_steps=20"]
    with pytest.raises(ConfigError, match="warmup_steps=20 has no effect .*constant_with_warmup"):
        load_recipe(REPO / "recipes/tiny-math.yaml", GRPORecipe, bad)
    with pytest.raises(ConfigError, match="warmup_ratio=0.1 has no effect"):
        load_recipe(
            REPO / "recipes/tiny-math.yaml",
            GRPORecipe,
            ["grpo.lr_scheduler_type=constant", "grpo.warmup_steps=0", "grpo.warmup_ratio=0.1"],
        )
    fine = load_recipe(
        REPO / "recipes/tiny-math.yaml",
        GRPORecipe,
        ["grpo.lr_scheduler_type=constant_with_warmup", "grpo.warmup_steps=20"],
    )
    assert fine.grpo.warmup_steps == 20
    from posttrain.config.distill_schema import DistillRecipe

    with pytest.raises(ConfigError, match=r"distill \(line \d+\): warmup_steps=20 has no effect"):
        load_recipe(
            REPO / "recipes/tiny-distill.yaml",
            DistillRecipe,
            ["distill.lr_scheduler_type=constant", "distill.warmup_steps=20"],
        )


def test_invalid_yaml_names_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  name_or_path: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+: not valid YAML"):
        load_recipe(bad, GRPORecipe)
