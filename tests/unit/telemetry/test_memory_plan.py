"""`posttrain plan`: its weight, gradient and optimizer bytes are those of a built model's tensors; its
sharding divides what each engine shards; its KV cache per token is what transformers caches."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from posttrain.cli.app import app
from posttrain.config.schema import LoraConfig, ModelConfig
from posttrain.models.builders import build_model
from posttrain.models.lora import peft_config
from posttrain.models.shape import model_shape
from posttrain.models.tokenizer import build_tokenizer
from posttrain.telemetry.memory import Workload, memory

REPO = Path(__file__).resolve().parents[3]
TINY = json.loads((REPO / "tests" / "fixtures" / "tiny_models.json").read_text())["tiny_moe"]
WORK = Workload(weight_bytes=4, beta=0.04, micro_batch=2, seq_len=16, rollout_sequences=4, gradient_checkpointing=False)


def _tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def _one_adamw_step(model) -> tuple[int, int]:
    """(gradient bytes, AdamW state bytes) after one real step."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-3)
    ids = torch.randint(10, 60, (2, 8))
    model(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()
    states = [v for s in optimizer.state.values() for k, v in s.items() if k in ("exp_avg", "exp_avg_sq")]
    return _tensor_bytes(p.grad for p in trainable), _tensor_bytes(states)


@pytest.mark.parametrize(("family", "dtype"), [("qwen3_moe", "float32"), ("deepseek_v3", "bfloat16")])
def test_full_fine_tune_bytes_are_the_tensors_bytes(family, dtype):
    cfg = ModelConfig(name_or_path="build:tiny-moe", builder_args={**TINY, "family": family}, dtype=dtype)
    shape = model_shape(cfg)
    model = build_model("tiny-moe", build_tokenizer(None), seed=0, **cfg.builder_args).to(getattr(torch, dtype))
    work = replace(WORK, weight_bytes=model.dtype.itemsize)
    planned = memory(shape, work, "full", "ddp", devices=1)
    assert planned.weights == _tensor_bytes(model.parameters())
    assert planned.reference == planned.weights  # beta > 0: TRL keeps a frozen copy
    assert (planned.gradients, planned.optimizer) == _one_adamw_step(model)


def test_lora_bytes_are_the_adapters_on_the_experts_too():
    lora = LoraConfig(enabled=True, r=4, target_parameters="experts")
    cfg = ModelConfig(name_or_path="build:tiny-moe", builder_args={**TINY, "family": "mixtral"}, lora=lora)
    shape = model_shape(cfg)
    from peft import get_peft_model

    base = build_model("tiny-moe", build_tokenizer(None), seed=0, **cfg.builder_args)
    model = get_peft_model(base, peft_config(lora, base))
    adapters = [p for p in model.parameters() if p.requires_grad]
    assert shape.lora == sum(p.numel() for p in adapters) > 0
    planned = memory(shape, WORK, "lora", "ddp", devices=1)
    assert planned.weights == _tensor_bytes(model.parameters()) and planned.reference == 0
    assert (planned.gradients, planned.optimizer) == _one_adamw_step(model)


def test_qlora_weights_are_what_bitsandbytes_stores(tmp_path):
    """4-bit nn.Linear weights plus one fp32 absmax per 64 values; fused experts, router, embeddings stay bf16."""
    from transformers import AutoModelForCausalLM

    from posttrain.models.loading import save_pretrained
    from posttrain.models.quantization import bnb_config

    args = {**TINY, "family": "qwen3_moe", "hidden_size": 64}
    cfg = ModelConfig(
        name_or_path="build:tiny-moe",
        builder_args=args,
        dtype="bfloat16",
        load_in_4bit=True,
        lora=LoraConfig(enabled=True),
    )
    tokenizer = build_tokenizer(None)
    save_pretrained(build_model("tiny-moe", tokenizer, **args).to(torch.bfloat16), tokenizer, tmp_path / "m")
    model = AutoModelForCausalLM.from_pretrained(
        tmp_path / "m", quantization_config=bnb_config(cfg), dtype=torch.bfloat16
    )
    stored = sum(
        p.numel() * p.element_size() + (_tensor_bytes([p.quant_state.absmax]) if hasattr(p, "quant_state") else 0)
        for p in model.parameters()
    )
    shape = model_shape(cfg)
    planned = memory(shape, replace(WORK, weight_bytes=2), "qlora", "ddp", devices=1)
    assert planned.weights - shape.lora * 4 == stored


def test_each_engine_shards_what_it_shards():
    shape = model_shape(ModelConfig(name_or_path="build:tiny-moe", builder_args=TINY))
    ddp, zero2, zero3, fsdp2 = (memory(shape, WORK, "full", e, devices=4) for e in ("ddp", "zero2", "zero3", "fsdp2"))
    assert (
        zero2.weights == ddp.weights and zero2.gradients == ddp.gradients / 4 and zero2.optimizer == ddp.optimizer / 4
    )
    assert zero3 == fsdp2 and zero3.weights == ddp.weights / 4 and zero3.reference == ddp.reference / 4
    assert ddp.activations == zero3.activations and ddp.kv_cache == zero3.kv_cache  # per device, never sharded
    qlora, lora = memory(shape, WORK, "qlora", "ddp", 4), memory(shape, WORK, "lora", "ddp", 4)
    assert qlora.weights < lora.weights and (qlora.gradients, qlora.optimizer) == (lora.gradients, lora.optimizer)


@pytest.mark.parametrize("family", ["deepseek_v3", "qwen3_moe", "gpt_oss"])
def test_kv_cache_per_token_is_what_transformers_caches(family):
    from transformers import DynamicCache

    args = {**TINY, "family": family, "kv_lora_rank": 12}  # MLA: latent and rope key of different widths
    shape = model_shape(ModelConfig(name_or_path="build:tiny-moe", builder_args=args))
    model = build_model("tiny-moe", build_tokenizer(None), seed=0, **args).eval()
    cache = DynamicCache(config=model.config)
    with torch.no_grad():
        model(input_ids=torch.randint(10, 60, (1, 12)), past_key_values=cache, use_cache=True)
    cached = sum(layer.keys.numel() + layer.values.numel() for layer in cache.layers)
    assert cached == 12 * shape.kv_per_token


def test_plan_prints_the_table_the_readme_shows():
    config = REPO / "tests" / "fixtures" / "configs" / "Qwen3-30B-A3B"
    result = CliRunner().invoke(app, ["plan", str(REPO / "recipes/math.yaml"), "--set", f"model.name_or_path={config}"])
    assert result.exit_code == 0, result.output
    assert re.search(r"30\.5\d\dB parameters, 3\.3\d\dB active", result.output)  # Qwen's own 30.5B / 3.3B
    shown = (REPO / "README.md").read_text().split("<!-- plan output -->", 2)[1]
    body = result.stdout.replace(str(config), "Qwen/Qwen3-30B-A3B")
    assert shown.strip().strip("`").strip() == body.strip()

    bad = CliRunner().invoke(app, ["plan", str(REPO / "recipes/math.yaml"), "--gpu", "h100"])
    assert bad.exit_code == 2 and "known: l4-24gb" in bad.output
