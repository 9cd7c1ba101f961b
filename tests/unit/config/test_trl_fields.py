"""Each TRL config is built in one place: every field settable exactly once, conflicts refused at validation."""

from pathlib import Path

import pytest
from trl import GRPOConfig

from posttrain.config import GRPORecipe, load_recipe
from posttrain.config.distill_schema import DistillRecipe
from posttrain.config.trl_fields import DISTILL_GKD, DISTILL_SFT, GRPO, WARMSTART, TrlMapping, build, trl_config_fields
from posttrain.distill.logit_kd import kd_args
from posttrain.distill.sequence_kd import sft_args
from posttrain.errors import ConfigError
from posttrain.grpo.trainer import grpo_args

REPO = Path(__file__).resolve().parents[3]
MAPPINGS = [GRPO, DISTILL_SFT, DISTILL_GKD, WARMSTART]


@pytest.mark.parametrize("mapping", MAPPINGS, ids=lambda m: m.section)
def test_every_field_a_mapping_names_is_one_of_trls(mapping):
    # warmup_ratio left TrainingArguments in transformers 5 (the ratio is folded into warmup_steps);
    # it stays owned so `grpo.trl: {warmup_ratio: ...}` is pointed at grpo.warmup_ratio.
    assert set(mapping.owned) - trl_config_fields(mapping.config) <= {"warmup_ratio"}
    assert set(mapping.defaults) <= trl_config_fields(mapping.config)


def test_output_report_to_reaches_trl_and_grpo_trl_is_pointed_at_it():
    # Through grpo.trl it once passed --dry-run, then died after warm-start with a duplicate-keyword
    # TypeError; now the recipe owns it, for every stage at once.
    recipe = load_recipe(
        REPO / "recipes/tiny-math.yaml", GRPORecipe, ["output.report_to=tensorboard", "grpo.trl={disable_tqdm: false}"]
    )
    args = grpo_args(recipe, Path("/tmp/unused"))
    assert args.report_to == ["tensorboard"] and args.disable_tqdm is False
    assert grpo_args(load_recipe(REPO / "recipes/tiny-math.yaml", GRPORecipe), Path("/tmp/unused")).report_to == []
    with pytest.raises(ConfigError, match="'report_to' is set by output.report_to, not under grpo.trl"):
        load_recipe(REPO / "recipes/tiny-math.yaml", GRPORecipe, ["grpo.trl={report_to: [tensorboard]}"])


@pytest.mark.parametrize(
    "overrides",
    [
        [],
        ["generation.backend=vllm", "generation.vllm_mode=server", "generation.vllm_server_port=8001"],
        ["generation.cache=static"],
        ["train.precision=bf16"],
        ["grpo.gradient_checkpointing=true", "grpo.warmup_ratio=0.1", "grpo.warmup_steps=0"],
    ],
)
def test_every_field_grpo_sets_is_declared_so_trl_cannot_set_it_again(overrides):
    # `build` raises on a field the recipe sets without declaring it in config/trl_fields.py.
    recipe = load_recipe(REPO / "recipes/tiny-math.yaml", GRPORecipe, overrides)
    args = grpo_args(recipe, Path("/tmp/unused"))
    assert args.max_steps == recipe.grpo.max_steps > 0 and args.report_to == []


def test_distillation_stages_take_their_trl_sections():
    recipe = load_recipe(
        REPO / "recipes/tiny-distill.yaml",
        DistillRecipe,
        [
            "distill.trl={weight_decay: 0.1}",
            "distill.logit_kd.trl={max_grad_norm: 0.5}",
        ],
    )
    sft = sft_args(
        recipe.distill,
        Path("/tmp/unused"),
        packing=False,
        precision="fp32",
        save_steps=0,
        save_total_limit=1,
        report_to=["tensorboard"],
    )
    assert (sft.report_to, sft.weight_decay, sft.completion_only_loss) == (["tensorboard"], 0.1, True)
    gkd = kd_args(
        recipe.distill.logit_kd,
        Path("/tmp/unused"),
        max_new_tokens=8,
        max_length=64,
        precision="fp32",
        seed=0,
        logging_steps=1,
        save_steps=0,
        save_total_limit=1,
        report_to=["tensorboard"],
    )
    assert (gkd.report_to, gkd.max_grad_norm, gkd.remove_unused_columns) == (["tensorboard"], 0.5, False)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("grpo.trl={bf16: true}", "'bf16' is set by train.precision, not under grpo.trl"),
        ("grpo.trl={save_steps: 3}", "'save_steps' is set by output.save_steps, not under grpo.trl"),
        ("grpo.trl={num_generations: 4}", "'num_generations' is set by grpo.num_generations"),
        ("grpo.trl={on_nonfinite: skip}", "'on_nonfinite' is a recipe field: set grpo.on_nonfinite"),
        (
            "model.warmstart.trl={max_steps: 3}",
            "'max_steps' is set by model.warmstart.steps, not under model.warmstart.trl",
        ),
        (
            "model.warmstart.trl={wieght_decay: 0.1}",
            "'wieght_decay' is not a trl.SFTConfig field (did you mean weight_decay?)",
        ),
    ],
)
def test_a_field_the_recipe_owns_is_refused_under_trl_naming_where_it_is_set(override, message):
    with pytest.raises(ConfigError) as err:
        load_recipe(REPO / "recipes/tiny-math.yaml", GRPORecipe, [override])
    assert message in str(err.value)


def test_logit_kd_trl_refuses_what_the_stage_sets():
    with pytest.raises(ConfigError, match=r"'beta' is set by distill.logit_kd.divergence / distill.logit_kd.beta"):
        load_recipe(REPO / "recipes/tiny-distill.yaml", DistillRecipe, ["distill.logit_kd.trl={beta: 0.3}"])


def test_build_refuses_a_field_set_twice_or_undeclared():
    owned = {"max_steps": "grpo.max_steps", "bf16": "train.precision"}  # TRL defaults to bf16, refused on CPUs
    mapping = TrlMapping(config="GRPOConfig", section="grpo", owned=owned, defaults={"report_to": []})
    args = build(GRPOConfig, mapping, {"max_steps": 3, "bf16": False}, {"report_to": ["tensorboard"], "seed": 5})
    assert (args.max_steps, args.report_to, args.seed) == (3, ["tensorboard"], 5)
    with pytest.raises(ValueError, match=r"grpo.trl: \['max_steps'\] are set by the recipe"):
        build(GRPOConfig, mapping, {"max_steps": 3, "bf16": False}, {"max_steps": 4})
    with pytest.raises(RuntimeError, match=r"fields \['seed'\] are set by the recipe but not declared"):
        build(GRPOConfig, mapping, {"max_steps": 3, "seed": 1}, {})
