"""4-bit layers keep the layout bitsandbytes trains with, on CPUs with and without AVX512-BF16."""

import pytest
import torch

from posttrain.config.schema import ModelConfig
from posttrain.models.loading import load_model
from posttrain.models.quantization import bnb_config


def test_sampling_then_training_works_where_bitsandbytes_would_repack_for_inference(tiny_moe_dir, monkeypatch):
    bnb_modules = pytest.importorskip("bitsandbytes.nn.modules")
    # What bitsandbytes reports on Sapphire Rapids / Zen 4: without keep_trainable_layout the first
    # eval-mode forward repacks the tiny model's layers and fails ("N must be divisible by block_n",
    # "shape '[32, 0]' is invalid"); this machine need not have the instructions to show it.
    monkeypatch.setattr(bnb_modules, "has_avx512bf16", lambda: True)
    cfg = ModelConfig(name_or_path=str(tiny_moe_dir), load_in_4bit=True, lora={"enabled": True})
    model = load_model(str(tiny_moe_dir), "float32", quantization=bnb_config(cfg))
    layers = [m for m in model.modules() if isinstance(m, bnb_modules.Linear4bit)]
    assert layers and not any(m.support_avx512bf16_for_cpu for m in layers)

    ids = torch.randint(5, 30, (2, 6))
    model.eval()
    with torch.no_grad():  # sampling
        sampled = model(input_ids=ids).logits
    assert not any(getattr(m.weight.quant_state, "packing_format_for_cpu", False) for m in layers)
    model.train()  # then a training forward through the same layers
    embeddings = model.get_input_embeddings()
    embeddings.weight.requires_grad_(True)
    logits = model(input_ids=ids).logits
    torch.testing.assert_close(logits, sampled, rtol=1e-5, atol=1e-5)
    logits.square().mean().backward()
    assert embeddings.weight.grad is not None and embeddings.weight.grad.abs().sum() > 0  # through the 4-bit layers
