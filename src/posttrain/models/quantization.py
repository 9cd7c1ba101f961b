"""4-bit QLoRA (bitsandbytes): the frozen base loaded in NF4/FP4, LoRA adapters trained on top.

The recipe keys follow TRL's ModelConfig (`load_in_4bit`, `bnb_4bit_quant_type`,
`use_bnb_nested_quant`), so an open-r1/TRL user finds them where they expect. TRL's trainers
take the quantized model with a `peft_config` and do the k-bit preparation themselves (adapter
weights in bf16, inputs requiring grad); here we only load the model that way.

bitsandbytes runs 4-bit on CPU too (slowly), which is how the tests exercise it; the
memory saving the method exists for is a GPU one. MoE experts that transformers stores as fused
3-D tensors (DeepSeek-V3, Qwen3-MoE in transformers 5) are not nn.Linear and stay unquantized:
attention, shared experts and dense MLPs are quantized.
"""

from __future__ import annotations

import importlib.util
from importlib.metadata import version

import torch
from accelerate import PartialState
from packaging.version import Version
from transformers import BitsAndBytesConfig

from posttrain.errors import PosttrainError

MIN_BITSANDBYTES = "0.50"  # the oldest release the suite runs on (4-bit CPU layers arrived in 0.46)


def bnb_config(model_cfg):
    """A transformers `BitsAndBytesConfig` for `model.load_in_4bit`, or None when it is off."""
    if not model_cfg.load_in_4bit:
        return None
    require_bitsandbytes()

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=model_cfg.bnb_4bit_quant_type,
        bnb_4bit_use_double_quant=model_cfg.use_bnb_nested_quant,
        bnb_4bit_compute_dtype=compute_dtype(model_cfg.dtype),
        bnb_4bit_quant_storage=torch.uint8,
    )


def compute_dtype(dtype: str):
    """The dtype 4-bit layers de-quantize to for their matmuls: the recipe's, else bf16 where the
    GPU has it (the QLoRA paper's choice), else fp32."""

    if dtype != "auto":
        return getattr(torch, dtype)  # model.dtype is validated: float32, bfloat16 or float16
    return torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32


def device_map() -> dict[str, int | str]:
    """bitsandbytes quantizes while loading onto a device: this process's GPU, else the CPU."""

    if not torch.cuda.is_available():
        return {"": "cpu"}

    return {"": PartialState().local_process_index}


def keep_trainable_layout(model) -> None:
    """Keep every 4-bit layer in the weight layout bitsandbytes trains with, on every CPU.

    On a CPU with AVX512-BF16 (Sapphire Rapids, Zen 4), bitsandbytes >= 0.49 repacks a `Linear4bit`
    for its inference kernel the first time the layer runs in eval mode without grad, and keeps it
    so. That layout is for inference: it asserts out_features % 32 == 0 and in_features >= the
    quantization block, and bitsandbytes converts it back only when saving. GRPO and distillation
    sample (eval, no grad) and train the same layers in turn, so we switch the repacking off; other
    CPUs, and GPUs, never take that path, and now no machine does.
    """
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False


def check_quantization(model_cfg) -> None:
    """At run start, before anything is written: bitsandbytes is there when the recipe needs it."""
    if model_cfg.load_in_4bit:
        require_bitsandbytes()


def require_bitsandbytes() -> None:

    if importlib.util.find_spec("bitsandbytes") is None:
        raise PosttrainError("model.load_in_4bit needs bitsandbytes: pip install 'posttrain[qlora]'")

    found = version("bitsandbytes")
    if Version(found) < Version(MIN_BITSANDBYTES):
        raise PosttrainError(
            f"model.load_in_4bit needs bitsandbytes>={MIN_BITSANDBYTES}; found {found} (pip install -U 'posttrain[qlora]')"
        )
