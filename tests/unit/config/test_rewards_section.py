"""`rewards:` is a list (shorthand) or a mapping {strict, functions}; both load, override and report alike."""

from pathlib import Path

import pytest
import yaml

from posttrain.config import GRPORecipe, load_recipe
from posttrain.config.distill_schema import DistillRecipe
from posttrain.errors import ConfigError

REPO = Path(__file__).resolve().parents[3]
HEAD = "model:\n  name_or_path: build:tiny-moe\ndata:\n  source: arithmetic\n"
MAPPING = (
    HEAD
    + "rewards:\n  strict: true\n  functions:\n    - {name: accuracy, weight: 1.0}\n    - {name: format, weight: 0.2}\n"
)


def _recipe(tmp_path, text: str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return path


def test_list_form_is_shorthand_for_functions():
    cfg = load_recipe(REPO / "recipes/tiny-math.yaml", GRPORecipe)
    assert [r.name for r in cfg.rewards.functions] == [
        "accuracy",
        "format",
        "step_arithmetic",
    ] and cfg.rewards.strict is False


def test_mapping_form_loads_and_round_trips(tmp_path):
    cfg = load_recipe(_recipe(tmp_path, MAPPING), GRPORecipe)
    assert cfg.rewards.strict is True and [r.weight for r in cfg.rewards.functions] == [1.0, 0.2]
    # The run folder's recipe.yaml (the mapping form) loads back to the same recipe.
    again = load_recipe(_recipe(tmp_path, yaml.safe_dump(cfg.model_dump(mode="json"))), GRPORecipe)
    assert again == cfg


def test_set_reaches_both_forms():
    cfg = load_recipe(REPO / "recipes/tiny-math.yaml", GRPORecipe, ["rewards.strict=true", "rewards.1.weight=0.5"])
    assert cfg.rewards.strict is True
    assert [(r.name, r.weight) for r in cfg.rewards.functions] == [
        ("accuracy", 1.0),
        ("format", 0.5),
        ("step_arithmetic", 0.5),
    ]


def test_set_index_on_mapping_form(tmp_path):
    cfg = load_recipe(_recipe(tmp_path, MAPPING), GRPORecipe, ["rewards.0.weight=2", "rewards.strict=false"])
    assert cfg.rewards.functions[0].weight == 2.0 and cfg.rewards.strict is False
    with pytest.raises(
        ConfigError, match=r"rewards.functions.0.wieght \(line 8\): unknown key — did you mean weight\?"
    ):
        load_recipe(_recipe(tmp_path, MAPPING), GRPORecipe, ["rewards.0.wieght=2"])


def test_errors_name_the_line_and_key_path_in_both_forms(tmp_path):
    listed = HEAD + "rewards:\n  - name: accuracy\n    wieght: 2\n  - {name: format, weight: abc}\n"
    msg = str(_error(_recipe(tmp_path, listed)))
    assert "rewards.0.wieght (line 7): unknown key — did you mean weight?" in msg
    assert "rewards.1.weight (line 8)" in msg and "'abc'" in msg
    assert "functions" not in msg  # the list form's errors read as the recipe is written

    mapped = HEAD + "rewards:\n  strickt: true\n  functions:\n    - name: accuracy\n      wieght: 2\n"
    msg = str(_error(_recipe(tmp_path, mapped)))
    assert "rewards.strickt (line 6): unknown key — did you mean strict?" in msg
    assert "rewards.functions.0.wieght (line 9): unknown key — did you mean weight?" in msg


def test_list_form_error_keeps_its_line_after_set_strict(tmp_path):
    listed = HEAD + "rewards:\n  - name: accuracy\n    wieght: 2\n"
    msg = str(_error(_recipe(tmp_path, listed), ["rewards.strict=true"]))
    assert "rewards.0.wieght (line 7): unknown key" in msg


def test_empty_or_malformed_rewards_are_clear(tmp_path):
    msg = str(_error(_recipe(tmp_path, HEAD + "rewards: []\n")))
    assert "rewards (line 5): List should have at least 1 item" in msg
    msg = str(_error(_recipe(tmp_path, HEAD + "rewards: accuracy\n")))
    assert "rewards (line 5): expected a list of {name, weight, kwargs} entries, or a mapping" in msg
    msg = str(_error(_recipe(tmp_path, HEAD + "rewards:\n  strict: true\n")))
    assert "rewards.functions: required but missing" in msg


def test_distill_defaults_survive_set_strict():
    base = {"teacher": "build:tiny-moe", "student": "build:tiny-dense", "data": {"source": "arithmetic"}}
    cfg = load_recipe(None, DistillRecipe, ["rewards.strict=true"], data=dict(base))
    assert cfg.rewards.strict is True and [r.name for r in cfg.rewards.functions] == ["accuracy", "format"]
    cfg = load_recipe(None, DistillRecipe, [], data={**base, "rewards": [{"name": "accuracy"}]})
    assert [r.name for r in cfg.rewards.functions] == ["accuracy"] and cfg.rewards.strict is False


def test_rewards_score_reads_both_forms(tmp_path):
    from posttrain.cli.rewards import _recipe_rewards, read_recipe_rewards

    mapped = _recipe(tmp_path, MAPPING)
    assert [s["name"] for s in read_recipe_rewards(mapped)] == ["accuracy", "format"]
    assert _recipe_rewards(mapped)[1] is True
    assert _recipe_rewards(REPO / "recipes/tiny-math.yaml")[1] is False


def _error(path: Path, overrides=None) -> ConfigError:
    with pytest.raises(ConfigError) as err:
        load_recipe(path, GRPORecipe, overrides)
    return err.value
