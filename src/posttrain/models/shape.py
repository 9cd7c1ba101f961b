"""A model's shape from its config alone: exact parameter counts (on the meta device), LoRA size, KV cache.

`posttrain plan` uses this to size a run before any weights are downloaded: transformers builds the
architecture with parameters on the meta device (no memory), so every count is the real model's,
for any family transformers knows, and peft applied to that empty model counts the adapter exactly.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from accelerate import init_empty_weights
from peft import get_peft_model
from transformers import AutoConfig, AutoModelForCausalLM

from posttrain.config.builders import BUILDERS
from posttrain.config.schema import LoraConfig, ModelConfig
from posttrain.errors import PosttrainError
from posttrain.models.builders import dense_config, moe_config
from posttrain.models.loading import check_local, count_parameters
from posttrain.models.lora import peft_config
from posttrain.models.tokenizer import build_tokenizer


@dataclass(frozen=True)
class ModelShape:
    """What memory planning needs to know about a model, all counts exact."""

    model_type: str
    total: int  # parameters
    active: int  # parameters one token activates (MoE: shared + top-k routed experts)
    quantizable: int  # parameters in nn.Linear weights (not the head): what a 4-bit load stores in 4 bits
    lora: int  # parameters of the recipe's LoRA adapter (of a default one, r 16 all-linear, when LoRA is off)
    layers: int
    hidden: int
    vocab: int
    kv_per_token: int  # KV cache values per token over all layers, as transformers caches them


def model_config(cfg: ModelConfig):
    """The transformers config of a recipe's model: built for `build:` models, read (config.json only) otherwise."""
    if cfg.builder:
        spec = BUILDERS[cfg.builder](**cfg.builder_args)
        tokenizer = build_tokenizer(cfg.builder_args.get("tokenizer"))
        return moe_config(spec, tokenizer) if cfg.builder == "tiny-moe" else dense_config(spec, tokenizer)
    check_local(cfg.name_or_path)
    try:
        return AutoConfig.from_pretrained(
            cfg.name_or_path, revision=cfg.revision, trust_remote_code=cfg.trust_remote_code
        )
    except (OSError, ValueError) as e:
        raise PosttrainError(f"could not read the config of {cfg.name_or_path!r}: {str(e).splitlines()[0]}") from None


def model_shape(cfg: ModelConfig) -> ModelShape:
    config = model_config(cfg)
    with init_empty_weights():  # parameters on the meta device: exact shapes, no memory
        model = AutoModelForCausalLM.from_config(config)
    model.tie_weights()  # a tied head is one tensor, as in the loaded model (meta init leaves it untied)
    counts = count_parameters(model)
    # bitsandbytes 4-bit replaces nn.Linear layers only (not the output head): fused 3-D expert tensors,
    # routers, embeddings and norms stay in the load dtype.
    quantizable = sum(
        module.weight.numel()
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and not name.endswith("lm_head")
    )
    lora_cfg = cfg.lora if cfg.lora.enabled else LoraConfig(enabled=True)
    with warnings.catch_warnings():  # peft's notes on its own internals (deprecations, rank patterns): not the user's
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        adapted = get_peft_model(model, peft_config(lora_cfg, model))
    lora = sum(p.numel() for p in adapted.parameters() if p.requires_grad)
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return ModelShape(
        model_type=text.model_type,
        total=counts["total"],
        active=counts["active"],
        quantizable=quantizable,
        lora=lora,
        layers=text.num_hidden_layers,
        hidden=text.hidden_size,
        vocab=text.vocab_size,
        kv_per_token=kv_per_token(text),
    )


def kv_per_token(config) -> int:
    """Cached key + value elements per token over all layers, in transformers' layout.

    Multi-head latent attention (DeepSeek-V2/V3) caches the compressed latent and the shared rope key,
    `kv_lora_rank + qk_rope_head_dim` per layer, whatever the number of heads.
    """
    layers = config.num_hidden_layers
    if getattr(config, "kv_lora_rank", None):
        return layers * (config.kv_lora_rank + config.qk_rope_head_dim)
    heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return layers * 2 * heads * head_dim
