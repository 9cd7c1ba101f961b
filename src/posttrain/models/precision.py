"""Training precision: `train.precision` -> Trainer arguments, checked against this machine at run start.

`auto` keeps what recipes did before the setting existed: the precision follows `model.dtype`
(bfloat16 -> bf16 autocast, float16 -> fp16, anything else fp32).
"""

from __future__ import annotations

import importlib.util
import os

import torch
from transformers.utils import is_torch_bf16_gpu_available

from posttrain.errors import PosttrainError

PRECISIONS = ("fp32", "bf16", "fp16", "fp8")
_FROM_DTYPE = {"bfloat16": "bf16", "float16": "fp16"}
FP8_MIN_CAPABILITY = (8, 9)  # Ada (sm_89) and Hopper (sm_90) have FP8 tensor cores


def resolve(precision: str, dtype: str) -> str:
    """The precision a recipe means: `auto` follows the weights' dtype."""
    if precision == "auto":
        return _FROM_DTYPE.get(dtype, "fp32")
    return precision


def check_hardware(precision: str, key: str = "train.precision") -> None:
    """Raise one clear line when this machine cannot train in `precision` (fp32 always can)."""

    has_cuda = torch.cuda.is_available()
    if precision == "fp16" and not has_cuda:
        raise PosttrainError(f"{key}: fp16 needs a CUDA GPU; this machine has none (use bf16 or fp32)")
    if precision == "bf16" and has_cuda and not torch.cuda.is_bf16_supported():
        name = torch.cuda.get_device_name(0)
        raise PosttrainError(f"{key}: bf16 needs a GPU with bfloat16 support; {name} has none (use fp16 or fp32)")
    if precision == "fp8":
        _check_fp8(key, has_cuda)


def _check_fp8(key: str, has_cuda: bool) -> None:

    need = "fp8 needs an NVIDIA GPU with compute capability 8.9+ (Hopper/Ada) and torchao"
    if not has_cuda:
        raise PosttrainError(f"{key}: {need}; this machine has no CUDA device")
    capability = torch.cuda.get_device_capability(0)
    if tuple(capability) < FP8_MIN_CAPABILITY:
        name = torch.cuda.get_device_name(0)
        raise PosttrainError(
            f"{key}: {need}; this machine has {name} (compute capability {capability[0]}.{capability[1]})"
        )
    if importlib.util.find_spec("torchao") is None:
        raise PosttrainError(f"{key}: {need}; torchao is not installed (pip install torchao)")


def trainer_kwargs(precision: str) -> dict[str, bool]:
    """`bf16`/`fp16` for a transformers/TRL TrainingArguments; must be called before it is built.

    fp8 is accelerate's torchao backend (`AORecipeKwargs`): TrainingArguments reads
    ACCELERATE_MIXED_PRECISION when neither bf16 nor fp16 is set and hands it to the Trainer's
    Accelerator, which reads ACCELERATE_FP8_BACKEND and converts the Linear layers to Float8Linear.
    Untested here (the project's CI has no FP8 GPU); `check_hardware` guards it at run start.
    """
    if precision not in PRECISIONS:
        raise ValueError(
            f"unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)} (resolve 'auto' first)"
        )
    if precision == "fp8":
        os.environ["ACCELERATE_MIXED_PRECISION"] = "fp8"
        os.environ["ACCELERATE_FP8_BACKEND"] = "AO"
    kwargs = {"bf16": precision == "bf16", "fp16": precision == "fp16"}
    if precision == "bf16":
        if not is_torch_bf16_gpu_available():
            kwargs["use_cpu"] = True  # TrainingArguments refuses bf16 without a GPU unless told it is CPU autocast
    return kwargs
