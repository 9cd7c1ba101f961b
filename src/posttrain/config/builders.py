"""The tiny builders' shapes: what `build:tiny-moe` / `build:tiny-dense` and their `builder_args` may set.

Plain data, so recipe validation checks builder arguments without importing torch; the models
themselves are built in `posttrain.models.builders`. `family` picks the transformers architecture
the stand-in is an instance of (random-init, real classes), `tokenizer` the tokenizer saved with it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

# Stand-in families: transformers model_type of each tiny MoE / dense builder.
MOE_FAMILIES = (
    "deepseek_v3",
    "deepseek_v2",
    "qwen3_moe",
    "qwen2_moe",
    "mixtral",
    "olmoe",
    "granitemoe",
    "glm4_moe",
    "dots1",
    "gpt_oss",
)
DENSE_FAMILIES = ("qwen3", "llama")
# char: the quickstart's 106-symbol tokenizer; bpe-*: byte-level BPE with <think> added tokens and a
# Qwen3-style (enable_thinking) or DeepSeek-R1-style (opened <think> in the generation prompt) template.
TOKENIZERS = ("char", "bpe-qwen3", "bpe-r1")


@dataclass(frozen=True)
class TinyMoESpec:
    """An MoE in miniature, DeepSeek-V3 by default: fine-grained routed experts, shared expert(s), a
    sigmoid router whose `e_score_correction_bias` is the loss-free balancing bias, MLA attention.

    Other families take the fields they have: shared experts only where the family has them
    (deepseek_v2/v3, glm4_moe, dots1, qwen2_moe), MLA fields only for DeepSeek, `first_k_dense_replace`
    for DeepSeek, GLM and dots1; routed experts are `moe_intermediate_size` wide in every family.
    """

    family: str = "deepseek_v3"
    tokenizer: str | None = None  # None: char (a distillation student: the teacher's tokenizer)
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
    """A small dense decoder (Qwen3 by default, or Llama): the default distillation student."""

    family: str = "qwen3"
    tokenizer: str | None = None
    hidden_size: int = 96
    num_layers: int = 3
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 256
    max_position_embeddings: int = 256


BUILDERS: dict[str, type] = {"tiny-moe": TinyMoESpec, "tiny-dense": TinyDenseSpec}
_FAMILIES = {"tiny-moe": MOE_FAMILIES, "tiny-dense": DENSE_FAMILIES}


def check_choices(kind: str, args: dict) -> None:
    """ValueError naming the key when `family` or `tokenizer` is not one the builder knows."""
    for key, allowed in (("family", _FAMILIES[kind]), ("tokenizer", TOKENIZERS)):
        value = args.get(key)
        if value is not None and value not in allowed:
            raise ValueError(f"builder_args.{key}: {value!r} is not one of {', '.join(allowed)} for {kind}")


def spec_fields(kind: str) -> dict:
    """Field names and defaults of a builder, for validation and help text."""
    return asdict(BUILDERS[kind]())
