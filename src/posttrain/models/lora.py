"""The recipe's `lora` section as a peft `LoraConfig` (None when LoRA is off), and merging a saved
adapter into its base; grpo and distill share both."""

from __future__ import annotations

from pathlib import Path

from peft import AutoPeftModelForCausalLM
from peft import LoraConfig as PeftLoraConfig

from posttrain.config.schema import LoraConfig
from posttrain.models.loading import DTYPES


def peft_config(lora: LoraConfig):
    if not lora.enabled:
        return None

    return PeftLoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        task_type="CAUSAL_LM",
    )


def merge_saved_adapter(adapter_dir: Path, dtype: str):
    """The adapter's base loaded afresh (full precision, unsharded) with the saved adapter merged in."""

    return AutoPeftModelForCausalLM.from_pretrained(adapter_dir, dtype=DTYPES[dtype]).merge_and_unload()
