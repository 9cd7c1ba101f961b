import pytest

from posttrain.models.builders import build_model
from posttrain.models.loading import count_parameters, load_model, load_tokenizer
from posttrain.models.tokenizer import TAG_TOKENS

TAGS = "<think>12+34=46 46+5=51</think><answer>51</answer>"


def test_tags_are_single_tokens_and_survive_decoding(char_tokenizer):
    ids = char_tokenizer(TAGS, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(TAGS) - sum(len(t) - 1 for t in TAG_TOKENS)
    assert char_tokenizer.decode(ids, skip_special_tokens=True) == TAGS


def test_chat_template_ends_with_assistant_turn(char_tokenizer):
    text = char_tokenizer.apply_chat_template(
        [{"role": "user", "content": "1+2"}], tokenize=False, add_generation_prompt=True
    )
    assert text == "<|user|>1+2<|end|><|assistant|>"


def test_moe_is_deepseek_style_and_round_trips(tiny_moe_dir, char_tokenizer):
    model = load_model(str(tiny_moe_dir), "float32")
    tok = load_tokenizer(str(tiny_moe_dir))
    assert type(model).__name__ == "DeepseekV3ForCausalLM"
    cfg = model.config
    assert cfg.n_routed_experts == 4 and cfg.n_shared_experts >= 1 and cfg.num_experts_per_tok == 2
    routers = [m for n, m in model.named_modules() if n.endswith("mlp.gate")]
    assert routers and all(hasattr(r, "e_score_correction_bias") for r in routers)
    assert tok(TAGS)["input_ids"] == char_tokenizer(TAGS)["input_ids"]
    params = count_parameters(model)
    assert params["active"] < params["total"]


def test_dense_builder(char_tokenizer):
    model = build_model(
        "tiny-dense", char_tokenizer, hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=32
    )
    params = count_parameters(model)
    assert params["active"] == params["total"] > 0


def test_unknown_builder_arg_fails(char_tokenizer):
    with pytest.raises(TypeError):
        build_model("tiny-moe", char_tokenizer, hiden_size=3)


def test_built_model_is_reused_only_for_the_same_builder_args(tmp_path):
    import json

    from posttrain.config.schema import ModelConfig
    from posttrain.models.loading import resolve_model_path

    small = {"hidden_size": 16, "num_layers": 1, "num_heads": 2, "n_routed_experts": 4, "num_experts_per_tok": 2}
    cfg = ModelConfig(name_or_path="build:tiny-moe", builder_args=small)
    path = resolve_model_path(cfg, tmp_path, seed=0)
    weights = (tmp_path / "init-tiny-moe" / "model.safetensors").stat().st_mtime_ns
    assert resolve_model_path(cfg, tmp_path, seed=0) == path
    assert (tmp_path / "init-tiny-moe" / "model.safetensors").stat().st_mtime_ns == weights  # reused
    wider = ModelConfig(name_or_path="build:tiny-moe", builder_args={**small, "n_routed_experts": 8})
    resolve_model_path(wider, tmp_path, seed=0)  # the same folder, other arguments: rebuilt, not reused
    assert json.loads((tmp_path / "init-tiny-moe" / "config.json").read_text())["n_routed_experts"] == 8
    resolve_model_path(wider, tmp_path, seed=1)
    record = json.loads((tmp_path / "init-tiny-moe" / "posttrain_builder.json").read_text())
    assert record == {"builder": "tiny-moe", "builder_args": {**small, "n_routed_experts": 8}, "seed": 1}
