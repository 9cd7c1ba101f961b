"""The tiny builders' shapes: what `build:tiny-moe` / `build:tiny-dense` and their `builder_args` may set.

Plain data, so recipe validation checks builder arguments without importing torch; the models
themselves are built in `posttrain.models.builders`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class TinyMoESpec:
    """DeepSeek-V3 layout in miniature: fine-grained routed experts, shared expert(s), a sigmoid
    router whose `e_score_correction_bias` is the loss-free balancing bias, MLA attention."""

    hidden_size: int = 128
    num_layers: int = 3
    num_heads: int = 4
    n_routed_experts: int = 8
    n_shared_experts: int = 1
    num_experts_per_tok: int = 2
    moe_intermediate_size: int = 64
    first_k_dense_replace: int = 0
    intermediate_size: int = 256  # dense MLP width for layers below first_k_dense_replace
    kv_lora_rank: int = 32
    qk_rope_head_dim: int = 16
    qk_nope_head_dim: int = 16
    v_head_dim: int = 32
    max_position_embeddings: int = 256


@dataclass(frozen=True)
class TinyDenseSpec:
    """A small Qwen3-style dense decoder: the default distillation student."""

    hidden_size: int = 96
    num_layers: int = 3
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 256
    max_position_embeddings: int = 256


BUILDERS: dict[str, type] = {"tiny-moe": TinyMoESpec, "tiny-dense": TinyDenseSpec}


def spec_fields(kind: str) -> dict:
    """Field names and defaults of a builder, for validation and help text."""
    return asdict(BUILDERS[kind]())
