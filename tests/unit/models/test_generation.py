"""generation.cache / generation.backend: generate() kwargs, the checks, and static == dynamic greedy."""

import dataclasses

import pytest
import torch

from posttrain.errors import PosttrainError
from posttrain.models import generation
from posttrain.models.generation import cache_kwargs, check_backend, check_cache


def _installed(monkeypatch, *present):
    monkeypatch.setattr(generation, "_installed", lambda module: module in present)


def test_cache_kwargs():
    assert cache_kwargs("dynamic") == {}
    assert cache_kwargs("static") == {"cache_implementation": "static"}


def test_quantized_picks_an_installed_backend(monkeypatch):
    _installed(monkeypatch, "hqq")
    assert cache_kwargs("quantized") == {"cache_implementation": "quantized", "cache_config": {"backend": "hqq"}}
    _installed(monkeypatch, "hqq", "optimum.quanto")
    assert cache_kwargs("quantized")["cache_config"] == {"backend": "quanto"}  # transformers' default first
    _installed(monkeypatch)
    with pytest.raises(PosttrainError, match=r"quantized needs optimum-quanto or hqq.*pip install optimum-quanto"):
        check_cache("quantized")
    check_cache("static")


def test_vllm_needs_the_extra_and_a_gpu(monkeypatch):
    check_backend("transformers")
    _installed(monkeypatch)
    with pytest.raises(PosttrainError, match=r"needs the vllm extra \(pip install 'posttrain\[vllm\]'\)"):
        check_backend("vllm")
    _installed(monkeypatch, "vllm")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(PosttrainError, match="generation.backend: vllm needs a CUDA GPU"):
        check_backend("vllm")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    check_backend("vllm")


def test_static_cache_samples_what_dynamic_does(tiny_moe_dir, char_tokenizer):
    from transformers import AutoModelForCausalLM

    from posttrain.evaluate.sampling import SamplingSettings, generate

    model = AutoModelForCausalLM.from_pretrained(tiny_moe_dir)  # DeepseekV3
    prompts = ["1+2=", "12+34=", "7*8="]
    greedy = SamplingSettings(n=1, temperature=0, max_new_tokens=8, batch_size=4)
    assert generate(model, char_tokenizer, prompts, dataclasses.replace(greedy, cache="static")) == generate(
        model, char_tokenizer, prompts, greedy
    )


def test_a_refused_cache_names_the_architecture(char_tokenizer):
    from posttrain.evaluate.sampling import SamplingSettings, generate

    class Refuses(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Linear(1, 1)

        def generate(self, **kwargs):
            raise ValueError("This model does not support the quantized cache.")

    settings = SamplingSettings(n=1, temperature=0, max_new_tokens=2, cache="static")
    with pytest.raises(PosttrainError, match="cannot use a static cache with Refuses"):
        generate(Refuses(), char_tokenizer, ["1+2="], settings)
