"""Builders for tiny random-init models: stand-ins of every MoE family posttrain balances, and dense students.

They exist so every test, the quickstart and CI run offline. Each is a stock transformers
architecture (DeepseekV3ForCausalLM, Qwen3MoeForCausalLM, MixtralForCausalLM, ...), so a built model
is saved and loaded through the normal `from_pretrained` path, like any Hub model, and exercises the
same router, expert and attention code a user's checkpoint of that family does.
"""

from __future__ import annotations

import torch
import transformers
from transformers import AutoModelForCausalLM

from posttrain.config.builders import BUILDERS, TinyDenseSpec, TinyMoESpec


def _token_ids(tokenizer) -> dict:
    return {
        "vocab_size": len(tokenizer),
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "tie_word_embeddings": True,
    }


def _attention(spec) -> dict:
    return {
        "hidden_size": spec.hidden_size,
        "num_hidden_layers": spec.num_layers,
        "num_attention_heads": spec.num_heads,
        "num_key_value_heads": getattr(spec, "num_kv_heads", spec.num_heads),
        "max_position_embeddings": spec.max_position_embeddings,
    }


def _deepseek(spec: TinyMoESpec) -> dict:
    """MLA attention and shared experts, as in DeepSeek-V2/V3 (one expert group: no group-limited top-k)."""
    return {
        "intermediate_size": spec.intermediate_size,
        "moe_intermediate_size": spec.moe_intermediate_size,
        "n_routed_experts": spec.n_routed_experts,
        "n_shared_experts": spec.n_shared_experts,
        "num_experts_per_tok": spec.num_experts_per_tok,
        "first_k_dense_replace": spec.first_k_dense_replace,
        "n_group": 1,
        "topk_group": 1,
        "routed_scaling_factor": 1.0,
        "q_lora_rank": None,
        "kv_lora_rank": spec.kv_lora_rank,
        "qk_rope_head_dim": spec.qk_rope_head_dim,
        "qk_nope_head_dim": spec.qk_nope_head_dim,
        "v_head_dim": spec.v_head_dim,
    }


def _moe_family(spec: TinyMoESpec) -> tuple[str, dict]:
    """(transformers config class, its arguments) for the spec's family."""
    head_dim = spec.hidden_size // spec.num_heads
    experts, top_k, width = spec.n_routed_experts, spec.num_experts_per_tok, spec.moe_intermediate_size
    match spec.family:
        case "deepseek_v3":
            return "DeepseekV3Config", _deepseek(spec)
        case "deepseek_v2":
            return "DeepseekV2Config", {**_deepseek(spec), "topk_method": "greedy", "head_dim": spec.qk_rope_head_dim}
        case "qwen3_moe":
            return "Qwen3MoeConfig", {
                "num_experts": experts,
                "num_experts_per_tok": top_k,
                "moe_intermediate_size": width,
                "intermediate_size": spec.intermediate_size,
                "norm_topk_prob": True,
                "head_dim": head_dim,
            }
        case "qwen2_moe":
            return "Qwen2MoeConfig", {
                "num_experts": experts,
                "num_experts_per_tok": top_k,
                "moe_intermediate_size": width,
                "intermediate_size": spec.intermediate_size,
                "shared_expert_intermediate_size": width * max(spec.n_shared_experts, 1),
            }
        case "mixtral":
            return "MixtralConfig", {
                "num_local_experts": experts,
                "num_experts_per_tok": top_k,
                "intermediate_size": width,
            }
        case "olmoe":
            return "OlmoeConfig", {"num_experts": experts, "num_experts_per_tok": top_k, "intermediate_size": width}
        case "granitemoe":
            return "GraniteMoeConfig", {
                "num_local_experts": experts,
                "num_experts_per_tok": top_k,
                "intermediate_size": width,
            }
        case "glm4_moe" | "dots1":  # DeepSeek-V3's router and shared experts, without MLA
            return {"glm4_moe": "Glm4MoeConfig", "dots1": "Dots1Config"}[spec.family], {
                "n_routed_experts": experts,
                "n_shared_experts": spec.n_shared_experts,
                "num_experts_per_tok": top_k,
                "moe_intermediate_size": width,
                "intermediate_size": spec.intermediate_size,
                "first_k_dense_replace": spec.first_k_dense_replace,
                "n_group": 1,
                "topk_group": 1,
                "head_dim": head_dim,
            }
        case "gpt_oss":
            return "GptOssConfig", {
                "num_local_experts": experts,
                "num_experts_per_tok": top_k,
                "intermediate_size": width,
                "head_dim": head_dim,
                "layer_types": ["sliding_attention", "full_attention"] * (spec.num_layers // 2)
                + ["sliding_attention"] * (spec.num_layers % 2),
                "sliding_window": 64,
                # The Hub config's YaRN factor assumes 4k pre-training positions; a stand-in has no need of it.
                "rope_parameters": {"rope_type": "default", "rope_theta": 150000.0},
            }
    raise ValueError(f"unknown MoE family {spec.family!r}")


def moe_config(spec: TinyMoESpec, tokenizer):
    name, args = _moe_family(spec)
    return getattr(transformers, name)(**{**_token_ids(tokenizer), **_attention(spec), **args})


def dense_config(spec: TinyDenseSpec, tokenizer):
    name = {"qwen3": "Qwen3Config", "llama": "LlamaConfig"}[spec.family]
    return getattr(transformers, name)(
        **_token_ids(tokenizer),
        **_attention(spec),
        intermediate_size=spec.intermediate_size,
        head_dim=spec.hidden_size // spec.num_heads,
    )


def build_model(kind: str, tokenizer, /, seed: int = 0, **overrides):
    """Random-init a tiny model of `kind` ("tiny-moe" or "tiny-dense") sized for `tokenizer`."""

    spec = BUILDERS[kind](**overrides)
    config = moe_config(spec, tokenizer) if kind == "tiny-moe" else dense_config(spec, tokenizer)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model
