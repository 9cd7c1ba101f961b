"""How completions are decoded: `generation.cache` and `generation.backend` -> generate()/TRL kwargs,
checked against what is installed and this machine at run start.

dynamic is transformers' default growing KV cache; static preallocates it (fixed shapes, what
torch.compile wants); quantized stores it in 4 bits (optimum-quanto, or hqq) for long completions.
"""

from __future__ import annotations

import importlib.util

import torch

from posttrain.errors import PosttrainError

CACHES = ("dynamic", "static", "quantized")
# transformers' QuantizedCache backends that quantize group-wise, in the order we try them.
_QUANT_BACKENDS = (("optimum.quanto", "quanto", "optimum-quanto"), ("hqq", "hqq", "hqq"))


def cache_kwargs(cache: str) -> dict:
    """Keyword arguments of `model.generate` for `cache`; {} for transformers' default."""
    if cache == "dynamic":
        return {}
    if cache == "static":
        return {"cache_implementation": "static"}
    if cache == "quantized":
        return {"cache_implementation": "quantized", "cache_config": {"backend": quantized_backend()}}
    raise ValueError(f"unknown cache {cache!r}; expected one of {', '.join(CACHES)}")


def quantized_backend(key: str = "generation.cache") -> str:
    """The installed QuantizedCache backend (transformers' default, quanto, first)."""
    for module, backend, _ in _QUANT_BACKENDS:
        if _installed(module):
            return backend
    raise PosttrainError(
        f"{key}: quantized needs optimum-quanto or hqq for the 4-bit KV cache; neither is installed "
        "(pip install optimum-quanto)"
    )


def check_cache(cache: str, key: str = "generation.cache") -> None:
    """Raise one clear line when `cache` needs a package this machine lacks."""
    if cache == "quantized":
        quantized_backend(key)


def refused(cache: str, model, error: Exception) -> PosttrainError:
    """transformers' refusal of `cache` for this architecture, as one line naming both."""
    arch = type(model).__name__
    return PosttrainError(
        f"generation.cache: transformers cannot use a {cache} cache with {arch} ({error}); use dynamic"
    )


def check_backend(backend: str, key: str = "generation.backend") -> None:
    """vllm needs the extra and a CUDA GPU; transformers always works."""
    if backend != "vllm":
        return
    if not _installed("vllm"):
        raise PosttrainError(f"{key}: vllm needs the vllm extra (pip install 'posttrain[vllm]')")

    if not torch.cuda.is_available():
        raise PosttrainError(f"{key}: vllm needs a CUDA GPU; this machine has none (use transformers)")


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package (optimum) missing
        return False
