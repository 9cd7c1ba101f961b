"""Run-start checks, each failing in one line: can this machine do the precision, KV cache, generation
backend and quantization a recipe asks for? grpo and distill run them before any work."""

from __future__ import annotations

from posttrain.config.schema import ModelConfig
from posttrain.models.generation import check_backend, check_cache
from posttrain.models.precision import check_hardware, resolve
from posttrain.models.quantization import check_quantization


def check_machine(precision: str, model: ModelConfig, cache: str, backend: str | None = None) -> None:
    """`precision` is `train.precision` (resolved against `model.dtype`); `backend` the rollout backend, if any."""
    check_hardware(resolve(precision, model.dtype))
    if backend is not None:
        check_backend(backend)
    check_cache(cache)
    check_quantization(model)
