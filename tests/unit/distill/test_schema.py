"""The distillation recipe: sections reuse the GRPO classes; cross-field rules report clearly."""

from pathlib import Path

import pytest

from posttrain.config.distill_schema import DistillRecipe, split_builder_spec
from posttrain.config.loader import load_recipe
from posttrain.errors import ConfigError

REPO = Path(__file__).resolve().parents[3]
BASE = {"teacher": "build:tiny-moe", "student": "build:tiny-dense", "data": {"source": "arithmetic"}}


def test_compact_builder_args_in_the_name():
    cfg = DistillRecipe.model_validate({**BASE, "student": "build:tiny-dense?hidden_size=64&num_layers=2"})
    assert cfg.student.name_or_path == "build:tiny-dense" and cfg.student.builder_args == {
        "hidden_size": 64,
        "num_layers": 2,
    }
    assert split_builder_spec({"name_or_path": "build:tiny-dense?hidden_size=64", "builder_args": {"hidden_size": 80}})[
        "builder_args"
    ] == {"hidden_size": 64}
    assert split_builder_spec({"name_or_path": "Qwen/Qwen3-0.6B"}) == {"name_or_path": "Qwen/Qwen3-0.6B"}


def test_unknown_compact_builder_arg_is_reported():
    with pytest.raises(Exception, match="hiden_size"):
        DistillRecipe.model_validate({**BASE, "student": "build:tiny-dense?hiden_size=64"})


def test_defaults_rewards_and_divergence_mapping():
    cfg = DistillRecipe.model_validate(BASE)
    assert [r.name for r in cfg.rewards.functions] == ["accuracy", "format"]
    kd = cfg.distill.logit_kd
    assert not kd.enabled and kd.jsd_beta == 0.0
    assert kd.model_copy(update={"divergence": "reverse_kl"}).jsd_beta == 1.0


def _problems(data, overrides=()):
    with pytest.raises(ConfigError) as err:
        load_recipe(None, DistillRecipe, list(overrides), data=data)
    return str(err.value)


def test_offline_teacher_cannot_be_on_policy():
    msg = _problems(dict(BASE), ["distill.logit_kd.lmbda=0.5"])
    assert "offline teacher is not in memory" in msg and "distill.logit_kd.teacher=online" in msg
    cfg = load_recipe(
        None, DistillRecipe, ["distill.logit_kd.lmbda=0.5", "distill.logit_kd.teacher=online"], data=dict(BASE)
    )
    assert cfg.distill.logit_kd.lmbda == 0.5


def test_beta_only_with_jsd():
    assert "beta applies to divergence 'jsd' only" in _problems(dict(BASE), ["distill.logit_kd.beta=0.3"])
    cfg = load_recipe(
        None, DistillRecipe, ["distill.logit_kd.beta=0.3", "distill.logit_kd.divergence=jsd"], data=dict(BASE)
    )
    assert cfg.distill.logit_kd.jsd_beta == 0.3


def test_roles_and_misspellings_reported_together():
    msg = _problems(dict(BASE), ["student.warmstart.steps=5", "distill.max_step=3"])
    assert "did you mean max_steps?" in msg and "student learns from the teacher's traces" in msg


def test_trl_passthrough_checked_against_sftconfig():
    assert "not a trl.SFTConfig field" in _problems(dict(BASE), ["distill.trl.nonsense=1"])
    assert "'router_aux_loss_coef' is set by moe.aux_loss_coef" in _problems(
        dict(BASE), ["distill.trl.router_aux_loss_coef=0.1"]
    )


def test_moe_section_is_the_grpo_one():
    fresh = lambda: {"teacher": "build:tiny-moe", "student": "build:tiny-moe", "data": {"source": "arithmetic"}}  # noqa: E731
    assert DistillRecipe.model_validate(fresh()).moe.balancing == "none"
    cfg = load_recipe(None, DistillRecipe, ["moe.balancing=loss_free", "moe.bias_update_speed=0.01"], data=fresh())
    assert cfg.moe.balancing == "loss_free" and cfg.moe.bias_update_speed == 0.01
    assert "loss_free" in _problems(fresh(), ["moe.balancing=switch"])


def test_tiny_recipe_validates_and_shrinks():
    path = REPO / "recipes/tiny-distill.yaml"
    assert path.read_text().splitlines()[0] == "# posttrain distill recipes/tiny-distill.yaml"
    cfg = load_recipe(path, DistillRecipe, ["output.dir=/tmp/x", "distill.max_steps=3"])
    assert cfg.output.dir == "/tmp/x" and cfg.distill.max_steps == 3
    assert cfg.teacher.builder == "tiny-moe" and cfg.teacher.warmstart.steps > 0 and cfg.student.builder == "tiny-dense"


def test_routing_replay_is_refused_in_distillation():
    with pytest.raises(ValueError, match="routing_replay applies to GRPO"):
        DistillRecipe.model_validate({**BASE, "moe": {"routing_replay": "rollout"}})
