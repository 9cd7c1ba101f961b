from pathlib import Path

import pytest

from posttrain.config import GRPORecipe, load_recipe
from posttrain.grpo.trainer import grpo_args
from posttrain.models.lora import peft_config

RECIPE = Path(__file__).resolve().parents[3] / "recipes/tiny-math.yaml"


def _args(*overrides):
    return grpo_args(load_recipe(RECIPE, GRPORecipe, list(overrides)), Path("/tmp/unused"))


def test_recipe_maps_onto_trl_names():
    args = _args(
        "grpo.learning_rate=2e-5",
        "grpo.lr_scheduler_type=cosine",
        "grpo.warmup_steps=0",
        "grpo.warmup_ratio=0.1",
        "grpo.gradient_accumulation_steps=4",
        "grpo.loss_type=dapo",
        "grpo.epsilon_high=0.28",
        "grpo.scale_rewards=group",
        "grpo.beta=0.04",
        "grpo.seed=11",
        "grpo.gradient_checkpointing=true",
    )
    assert args.learning_rate == 2e-5 and args.lr_scheduler_type == "cosine"
    assert args.get_warmup_steps(100) == 10  # the ratio, as transformers 5 reads warmup_steps < 1
    assert args.gradient_accumulation_steps == 4 and args.loss_type == "dapo" and args.epsilon_high == 0.28
    assert args.scale_rewards == "group" and args.beta == 0.04 and args.seed == 11
    assert args.gradient_checkpointing is True
    assert args.reward_weights == [1.0, 0.2, 0.5]
    assert args.bf16 is False  # TRL's default bf16 autocast is several times slower on CPUs


def test_warmup_steps_win_over_ratio_and_trl_passthrough():
    args = _args(
        "grpo.lr_scheduler_type=cosine",
        "grpo.warmup_steps=7",
        "grpo.warmup_ratio=0.5",
        "grpo.trl={log_completions: true}",
    )
    assert args.get_warmup_steps(100) == 7 and args.log_completions is True


def test_lora_config():
    assert peft_config(load_recipe(RECIPE, GRPORecipe).model.lora) is None
    cfg = peft_config(load_recipe(RECIPE, GRPORecipe, ["model.lora.enabled=true", "model.lora.r=8"]).model.lora)
    assert cfg.r == 8 and cfg.lora_alpha == 32


def test_precision_follows_model_dtype_unless_train_precision_says():
    assert _args("model.dtype=bfloat16").bf16 is True
    args = _args("model.dtype=bfloat16", "train.precision=fp32")
    assert (args.bf16, args.fp16) == (False, False)
    assert _args("train.precision=bf16").bf16 is True


def test_generation_cache_and_vllm_reach_grpo_config():
    assert _args().cache_implementation is None and _args().use_vllm is False
    assert _args("generation.cache=static").cache_implementation == "static"
    args = _args("generation.backend=vllm")
    assert (args.use_vllm, args.vllm_mode) == (True, "colocate")
    args = _args(
        "generation.backend=vllm",
        "generation.vllm_mode=server",
        "generation.vllm_server_host=10.0.0.2",
        "generation.vllm_server_port=8001",
    )
    assert (args.vllm_mode, args.vllm_server_host, args.vllm_server_port) == ("server", "10.0.0.2", 8001)


def test_a_kv_cache_setting_vllm_does_not_use_is_said(caplog):
    with caplog.at_level("WARNING", logger="posttrain.grpo.trainer"):
        args = _args("generation.backend=vllm", "generation.cache=static")
    assert args.cache_implementation is None
    assert "generation.cache=static applies to the held-out evaluation only" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="posttrain.grpo.trainer"):
        _args("generation.backend=vllm")
    assert caplog.text == ""


def test_quantized_cache_backend_merges_with_trl_generation_kwargs(monkeypatch):
    from posttrain.models import generation

    monkeypatch.setattr(generation, "_installed", lambda module: module == "hqq")
    args = _args("generation.cache=quantized", "grpo.trl={generation_kwargs: {min_new_tokens: 1}}")
    assert args.cache_implementation == "quantized"
    assert args.generation_kwargs == {"cache_config": {"backend": "hqq"}, "min_new_tokens": 1}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["generation.vllm_mode=server"], "apply to backend: vllm only"),
        (["generation.backend=vllm", "generation.vllm_server_port=8001"], "apply to vllm_mode: server only"),
        (["grpo.trl={use_vllm: true}"], "'use_vllm' is set by generation.backend"),
    ],
)
def test_generation_settings_that_do_not_fit(overrides, message):
    from posttrain.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        _args(*overrides)
