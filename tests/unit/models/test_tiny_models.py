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
