"""The recipe's `lora` section as a peft `LoraConfig` (None when LoRA is off), and merging a saved
adapter into its base; grpo and distill share both."""

from __future__ import annotations

from pathlib import Path

from peft import AutoPeftModelForCausalLM
from peft import LoraConfig as PeftLoraConfig

from posttrain.config.schema import LoraConfig
from posttrain.errors import PosttrainError
from posttrain.models.loading import DTYPES


def peft_config(lora: LoraConfig, model=None):
    """`model`: needed to resolve `target_parameters: experts` to the model's expert tensor names."""
    if not lora.enabled:
        return None

    return PeftLoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        target_parameters=target_parameters(lora, model),
        task_type="CAUSAL_LM",
    )


def target_parameters(lora: LoraConfig, model) -> list[str] | None:
    if lora.target_parameters != "experts":
        return lora.target_parameters
    names = expert_parameters(model) if model is not None else []
    if not names:
        kind = type(model).__name__ if model is not None else "the model"
        raise PosttrainError(
            f"lora.target_parameters=experts: {kind} has no fused expert weights (3-D parameters under "
            "'.experts.'); name the parameters, or drop target_parameters and adapt modules only"
        )
    return names


def expert_parameters(model) -> list[str]:
    """Suffixes such as 'experts.gate_up_proj' naming each fused (experts, out, in) weight, for peft."""
    return sorted(
        {".".join(name.split(".")[-2:]) for name, p in model.named_parameters() if ".experts." in name and p.dim() == 3}
    )


def merge_saved_adapter(adapter_dir: Path, dtype: str):
    """The adapter's base loaded afresh (full precision, unsharded) with the saved adapter merged in."""

    return AutoPeftModelForCausalLM.from_pretrained(adapter_dir, dtype=DTYPES[dtype]).merge_and_unload()
