"""Builders for tiny random-init models: a DeepSeek-V3-style MoE and a small dense model.

They exist so every test, the quickstart and CI run offline. Both are stock transformers
architectures (DeepseekV3ForCausalLM, Qwen3ForCausalLM), so a built model is saved and
loaded through the normal `from_pretrained` path, like any Hub model.
"""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM, DeepseekV3Config, Qwen3Config

from posttrain.config.builders import BUILDERS, TinyDenseSpec, TinyMoESpec


def _token_ids(tokenizer) -> dict:
    return {
        "vocab_size": len(tokenizer),
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "bos_token_id": None,
    }


def moe_config(spec: TinyMoESpec, tokenizer):

    return DeepseekV3Config(
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        moe_intermediate_size=spec.moe_intermediate_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_heads,
        n_routed_experts=spec.n_routed_experts,
        n_shared_experts=spec.n_shared_experts,
        num_experts_per_tok=spec.num_experts_per_tok,
        first_k_dense_replace=spec.first_k_dense_replace,
        n_group=1,
        topk_group=1,
        routed_scaling_factor=1.0,
        q_lora_rank=None,
        kv_lora_rank=spec.kv_lora_rank,
        qk_rope_head_dim=spec.qk_rope_head_dim,
        qk_nope_head_dim=spec.qk_nope_head_dim,
        v_head_dim=spec.v_head_dim,
        max_position_embeddings=spec.max_position_embeddings,
        tie_word_embeddings=True,
        **_token_ids(tokenizer),
    )


def dense_config(spec: TinyDenseSpec, tokenizer):

    return Qwen3Config(
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_kv_heads,
        head_dim=spec.hidden_size // spec.num_heads,
        max_position_embeddings=spec.max_position_embeddings,
        tie_word_embeddings=True,
        **_token_ids(tokenizer),
    )


def build_model(kind: str, tokenizer, seed: int = 0, **overrides):
    """Random-init a tiny model of `kind` ("tiny-moe" or "tiny-dense") sized for `tokenizer`."""

    spec_cls = BUILDERS[kind]
    spec = spec_cls(**overrides)
    config = moe_config(spec, tokenizer) if kind == "tiny-moe" else dense_config(spec, tokenizer)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model
