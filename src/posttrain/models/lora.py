"""The recipe's `lora` section as a peft `LoraConfig` (None when LoRA is off); grpo and distill share it."""

from __future__ import annotations

from posttrain.config.schema import LoraConfig


def peft_config(lora: LoraConfig):
    if not lora.enabled:
        return None
    from peft import LoraConfig as PeftLoraConfig

    return PeftLoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        task_type="CAUSAL_LM",
    )
