"""The absorbed-MLA decode step (posttrain.models.mla): the decode loop samples the same tokens through it as
through transformers' forward, with log-probs equal up to rounding, on every DeepSeek-V3 layout; routing
recordings line up; and the models it cannot promise exactness for keep transformers' forward."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

from posttrain.config.builders import BUILDERS
from posttrain.models import mla
from posttrain.models.builders import build_model, moe_config
from posttrain.models.decoding import Decoding, decode
from posttrain.models.mla import MLADecoder
from posttrain.models.replay import RoutingReplay

TINY = json.loads((Path(__file__).resolve().parents[2] / "fixtures" / "tiny_models.json").read_text())["tiny_moe"]
PROMPTS = [p for p in ([5, 6, 7, 8, 9], [10, 11], [12, 13, 14]) for _ in range(3)]  # padded, grouped
ENDS = tuple(range(20, 40))

LAYOUTS = {
    "v3": {},  # q_proj, interleaved rope, every layer MoE
    "q-lora": {"q_lora_rank": 12},  # q_a_proj -> norm -> q_b_proj, as the full-size DeepSeek-V3
    "rotate-half": {"rope_interleave": False},
    "dense-first": {"first_k_dense_replace": 1},
    "grouped": {"n_group": 2, "topk_group": 1},  # group-limited routing: the router's own forward
    "yarn": {
        "rope_parameters": {
            "rope_type": "yarn",
            "factor": 4.0,
            "original_max_position_embeddings": 64,
            "rope_theta": 10000.0,
            "mscale": 1.0,
            "mscale_all_dim": 1.0,
        }
    },
}


def deepseek(char_tokenizer, **changes):
    config = moe_config(BUILDERS["tiny-moe"](**TINY), char_tokenizer)
    for key, value in changes.items():
        setattr(config, key, value)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config).eval()


def sample(model, settings: Decoding, record=None, seed: int = 3):
    torch.manual_seed(seed)
    return decode(model, PROMPTS, settings, record)


@pytest.mark.parametrize("experts", ["dense", "sparse"])
@pytest.mark.parametrize("layout", LAYOUTS, ids=list(LAYOUTS))
def test_the_mla_step_samples_what_transformers_forward_samples(char_tokenizer, layout, experts, monkeypatch):
    if experts == "sparse":  # experts too large to run densely: transformers' own experts module
        monkeypatch.setattr(mla, "DENSE_EXPERT_WEIGHTS", 0)
    model = deepseek(char_tokenizer, **LAYOUTS[layout])
    assert (
        MLADecoder.for_model(model).dense == [experts == "dense"] * len(model.model.layers) or layout == "dense-first"
    )
    assert MLADecoder.for_model(model) is not None
    settings = Decoding(16, ENDS, char_tokenizer.pad_token_id, temperature=1.0)
    forwards = []
    hook = model.model.layers[0].self_attn.register_forward_pre_hook(lambda *_: forwards.append(1))
    try:
        lean = sample(model, settings)
    finally:
        hook.remove()
    assert len(forwards) == 1  # the prefill: every decode forward went through the MLA step
    full = sample(model, Decoding(16, ENDS, char_tokenizer.pad_token_id, temperature=1.0, lean=False))
    assert lean.completions == full.completions
    assert len({len(c) for c in lean.completions}) > 2  # rows left the batch at different steps
    gaps = [abs(a - b) for x, y in zip(lean.logps, full.logps) for a, b in zip(x, y)]
    assert max(gaps) < 1e-5
    # ... and against one full forward of each finished sequence
    with torch.no_grad():
        for prompt, completion, logps in zip(PROMPTS, lean.completions, lean.logps):
            logits = model(input_ids=torch.tensor([prompt + completion])).logits[0, len(prompt) - 1 : -1]
            exact = torch.log_softmax(logits.float(), dim=-1).gather(1, torch.tensor(completion)[:, None]).squeeze(1)
            assert (exact - torch.tensor(logps)).abs().max() < 1e-4


@pytest.mark.parametrize("groups", [(1, 1), (2, 2)])
def test_a_router_keeping_every_group_routes_bit_for_bit_in_the_step(char_tokenizer, groups):
    model = deepseek(char_tokenizer, n_group=groups[0], topk_group=groups[1])
    router = model.model.layers[0].mlp.gate
    torch.manual_seed(1)
    router.e_score_correction_bias.normal_()  # the bias picks experts but does not weight them
    x = torch.randn(7, 1, model.config.hidden_size)
    expected = router(x)
    with MLADecoder.for_model(model).installed():
        assert "forward" in router.__dict__
        got = router(x)
    assert "forward" not in router.__dict__
    for a, b in zip(expected, got):
        assert torch.equal(a, b)


def test_without_a_rotation_table_each_step_calls_the_rotary_module(char_tokenizer, monkeypatch):
    # Dynamic RoPE gets no table (its frequencies follow the length): the step's own path must match too.
    model = deepseek(char_tokenizer)
    calls = []
    hook = model.model.rotary_emb.register_forward_hook(lambda *_: calls.append(1))
    settings = Decoding(12, ENDS, char_tokenizer.pad_token_id)
    try:
        table = sample(model, settings)
        with_table = len(calls)
        monkeypatch.setattr(MLADecoder, "_rotations", lambda *_: None)
        calls.clear()
        stepped = sample(model, settings)
    finally:
        hook.remove()
    assert with_table == 2  # the prefill's and the table's
    assert len(calls) == 1 + max(len(c) for c in stepped.completions) - 1  # the prefill, then one per fed token
    assert table.completions == stepped.completions
    assert max(abs(a - b) for x, y in zip(table.logps, stepped.logps) for a, b in zip(x, y)) < 1e-6


def test_a_routing_recording_through_the_mla_step_is_the_model_forwards(char_tokenizer):
    model = deepseek(char_tokenizer)
    replay = RoutingReplay(model, temperature=1.0)
    rollouts = []
    for lean in (True, False):
        settings = Decoding(12, ENDS, char_tokenizer.pad_token_id, lean=lean)
        with replay.recording() as record:
            decoded = sample(model, settings, record)
        rollouts.append(replay.rollout(record, PROMPTS, decoded.completions, decoded.logps))
    ours, theirs = rollouts
    for a, b in zip(ours.rows, theirs.rows):
        assert torch.equal(a.tokens, b.tokens) and a.prompt_len == b.prompt_len
        assert torch.equal(a.experts, b.experts)  # fp32: the same experts at every fed token
    assert sum(len(row.tokens) for row in ours.rows) > sum(map(len, PROMPTS))  # decode tokens were recorded


def test_models_it_cannot_reproduce_exactly_keep_transformers_forward(char_tokenizer):
    assert MLADecoder.for_model(build_model("tiny-moe", char_tokenizer, family="qwen3_moe", **TINY)) is None
    assert MLADecoder.for_model(deepseek(char_tokenizer, attention_dropout=0.1)) is None
    targets = ["kv_b_proj", "q_proj"]
    adapted = get_peft_model(deepseek(char_tokenizer), LoraConfig(r=4, target_modules=targets))
    assert MLADecoder.for_model(adapted) is None  # kv_b_proj's weight is absorbed: an adapter on it is not
    decoder = MLADecoder.for_model(deepseek(char_tokenizer))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not decoder.usable()  # transformers' bf16 forward rounds its own way


@pytest.mark.parametrize("interleave", [True, False], ids=["interleaved", "rotate-half"])
def test_lora_on_the_projections_it_calls_is_sampled_through_the_mla_step(char_tokenizer, interleave):
    # LoRA-wrapped projections cannot be folded: the step calls them and rotates their output itself.
    lora = LoraConfig(r=4, target_modules=["q_proj", "kv_a_proj_with_mqa", "o_proj"], init_lora_weights=False)
    model = get_peft_model(deepseek(char_tokenizer, rope_interleave=interleave), lora).eval()
    assert MLADecoder.for_model(model) is not None
    settings = Decoding(12, ENDS, char_tokenizer.pad_token_id)
    lean, full = sample(model, settings), sample(model, Decoding(12, ENDS, char_tokenizer.pad_token_id, lean=False))
    assert lean.completions == full.completions
    with model.disable_adapter():
        base = sample(model, settings)
        assert (
            base.completions == sample(model, Decoding(12, ENDS, char_tokenizer.pad_token_id, lean=False)).completions
        )
    assert lean.logps != base.logps  # the adapters took part in the step
