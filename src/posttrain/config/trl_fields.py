"""Recipe sections -> TRL configs, in one place.

Each TRL config a run builds (GRPO, the distillation SFT and GKD stages, the warm-start SFT) has one
`TrlMapping` here: the TRL fields the recipe sets itself, each with the recipe key that sets it, and
the run defaults a recipe's `trl:` pass-through may override. Validation refuses a `trl:` key the
recipe owns, naming where to set it; `build` refuses to set a field the mapping does not declare, so
a field can never be set twice (once by the recipe, once through `trl:`).

Field names are read from TRL's dataclasses, which keeps this right across TRL releases; that costs
an import of trl's config module (no model code), only when a recipe uses `trl:`.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class TrlMapping:
    config: str  # the trl config class: GRPOConfig, SFTConfig, GKDConfig
    section: str  # the recipe section whose `trl:` passes through
    owned: Mapping[str, str]  # TRL field -> the recipe key (or posttrain rule) that sets it
    defaults: Mapping[str, Any] = field(default_factory=dict)  # run defaults `trl:` may override
    merged: tuple[str, ...] = ()  # dict fields combined key by key (the recipe's, then `trl:`'s)


def _same_names(section: str, *names: str) -> dict[str, str]:
    return {name: f"{section}.{name}" for name in names}


# What every run sets unless a recipe's `trl:` says otherwise.
_RUN_DEFAULTS = {
    "dataloader_pin_memory": False,  # nothing to pin to on CPU; accelerators gain little at this size
    "disable_tqdm": True,  # our rich progress replaces tqdm
}
_PRECISION = {"bf16": "train.precision", "fp16": "train.precision", "use_cpu": "train.precision"}
# Every stage reports to the recipe's trackers (TensorBoard: each stage in out/runs/<stage>).
_TRACKING = {"report_to": "output.report_to"}
_CHECKPOINTING = ("gradient_checkpointing", "activation_checkpointing")

GRPO = TrlMapping(
    config="GRPOConfig",
    section="grpo",
    owned={
        **_same_names(
            "grpo",
            "max_steps",
            "learning_rate",
            "lr_scheduler_type",
            "per_device_train_batch_size",
            "gradient_accumulation_steps",
            "num_generations",
            "max_completion_length",
            "temperature",
            "top_p",
            "loss_type",
            "beta",
            "epsilon",
            "epsilon_high",
            "scale_rewards",
            "num_iterations",
            "importance_sampling_level",
            "mask_truncated_completions",
            "seed",
            "logging_steps",
            "warmup_steps",
            "warmup_ratio",
        ),
        **dict.fromkeys(_CHECKPOINTING, "grpo.gradient_checkpointing"),
        **_PRECISION,
        **_TRACKING,
        "output_dir": "output.dir",
        "save_strategy": "output.save_steps",
        "save_steps": "output.save_steps",
        "save_total_limit": "output.save_total_limit",
        "save_only_model": "posttrain (checkpoints keep the optimizer state, so runs resume exactly)",
        "reward_weights": "rewards.functions[].weight",
        "chat_template_kwargs": "data.chat_template_kwargs",
        "router_aux_loss_coef": "moe.aux_loss_coef",
        "cache_implementation": "generation.cache",
        "use_vllm": "generation.backend",
        "vllm_mode": "generation.vllm_mode",
        "vllm_server_host": "generation.vllm_server_host",
        "vllm_server_port": "generation.vllm_server_port",
    },
    defaults=_RUN_DEFAULTS,
    merged=("generation_kwargs",),
)

# The Trainer arguments both distillation stages share (`distill.*` and `distill.logit_kd.*`).
_KD_COMMON = {
    **dict.fromkeys(_CHECKPOINTING, "posttrain (off: on small students it only costs time)"),
    **_PRECISION,
    **_TRACKING,
    "output_dir": "output.dir",
    "save_strategy": "output.save_steps",
    "save_steps": "output.save_steps",
    "save_total_limit": "output.save_total_limit",
    "router_aux_loss_coef": "moe.aux_loss_coef",
}
_KD_STEPS = (
    "max_steps",
    "learning_rate",
    "lr_scheduler_type",
    "warmup_steps",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
)

DISTILL_SFT = TrlMapping(
    config="SFTConfig",
    section="distill",
    owned={
        **_KD_COMMON,
        **_same_names("distill", *_KD_STEPS, "logging_steps", "max_length", "seed", "packing"),
        "completion_only_loss": "posttrain (the loss is on the trace, not the prompt)",
    },
    defaults={**_RUN_DEFAULTS, "dataset_num_proc": None},
)

DISTILL_GKD = TrlMapping(
    config="GKDConfig",
    section="distill.logit_kd",
    owned={
        **_KD_COMMON,
        **_same_names("distill.logit_kd", *_KD_STEPS, "lmbda", "temperature", "max_new_tokens"),
        "beta": "distill.logit_kd.divergence / distill.logit_kd.beta",
        "logging_steps": "distill.logging_steps",
        "seed": "distill.seed",
        "max_length": "distill.max_length",
        "remove_unused_columns": "posttrain (the collator reads prompt_len and index)",
        "dataset_kwargs": "posttrain (rows are tokenised once, for both teacher modes)",
    },
    defaults={**_RUN_DEFAULTS, "dataset_num_proc": None},
)

WARMSTART = TrlMapping(
    config="SFTConfig",
    section="model.warmstart",
    owned={
        **dict.fromkeys(_CHECKPOINTING, "posttrain (off: on tiny models it only costs time)"),
        **_PRECISION,
        **_TRACKING,
        "output_dir": "output.dir",
        "per_device_train_batch_size": "model.warmstart.batch_size",
        "learning_rate": "model.warmstart.learning_rate",
        "max_steps": "model.warmstart.steps",
        "warmup_steps": "model.warmstart.warmup_steps",
        "seed": "model.warmstart.seed",
        "lr_scheduler_type": "posttrain (cosine)",
        "save_strategy": "posttrain (the warm-start is saved once, as base/)",
        "completion_only_loss": "posttrain (the loss is on the solution, not the prompt)",
        "router_aux_loss_coef": "moe.aux_loss_coef",
    },
    defaults={**_RUN_DEFAULTS, "dataset_num_proc": None, "dataloader_num_workers": 0},
)


def trl_config_fields(name: str) -> set[str]:
    import trl

    return {f.name for f in dataclasses.fields(_config_class(trl, name))}


def _config_class(trl, name: str):
    if name == "GKDConfig":  # experimental in TRL; imported through its own module
        import warnings

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*trl.experimental.*")
            from trl.experimental.gkd import GKDConfig
        return GKDConfig
    return getattr(trl, name)


def check_passthrough(values: dict[str, Any], mapping: TrlMapping, section_fields: set[str] = frozenset()) -> None:
    """Raise ValueError naming every `trl:` key TRL does not know, or that the recipe sets elsewhere."""
    if not values:
        return
    known = trl_config_fields(mapping.config)
    problems = []
    for key in values:
        if key in mapping.owned:
            problems.append(f"{key!r} is set by {mapping.owned[key]}, not under {mapping.section}.trl")
        elif key in section_fields:
            problems.append(f"{key!r} is a recipe field: set {mapping.section}.{key}, not under {mapping.section}.trl")
        elif key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            problems.append(f"{key!r} is not a trl.{mapping.config} field{hint}")
    if problems:
        raise ValueError("; ".join(problems))


def build(config_cls, mapping: TrlMapping, recipe_values: dict[str, Any], passthrough: Mapping[str, Any]):
    """`config_cls` from the run defaults, then the recipe's `trl:`, then the fields the recipe owns.

    Every recipe value must be declared in `mapping.owned` -- that declaration is what validation
    refuses under `trl:` -- so no field can arrive twice.
    """
    undeclared = sorted(set(recipe_values) - set(mapping.owned) - set(mapping.merged))
    if undeclared:
        raise RuntimeError(
            f"posttrain bug: {mapping.config} fields {undeclared} are set by the recipe but not declared "
            f"in config/trl_fields.py, so {mapping.section}.trl could set them a second time"
        )
    clash = sorted(set(passthrough) & set(mapping.owned))
    if clash:  # validation refuses these; reaching here means the recipe skipped validation
        raise ValueError(
            f"{mapping.section}.trl: {clash} are set by the recipe ({', '.join(mapping.owned[k] for k in clash)})"
        )
    kwargs = {**mapping.defaults, **passthrough, **recipe_values}
    for key in mapping.merged:
        if key in recipe_values and key in passthrough:
            kwargs[key] = {**recipe_values[key], **passthrough[key]}
    return config_cls(**kwargs)


def checkpointing_kwargs(config_name: str, enabled: bool) -> dict[str, bool]:
    """Gradient checkpointing under the name this transformers release uses.

    transformers 5.x renamed `gradient_checkpointing` to `activation_checkpointing` and warns on
    the old name, which TRL sets by default; naming the new one keeps logs clean.
    """
    key = (
        "activation_checkpointing"
        if "activation_checkpointing" in trl_config_fields(config_name)
        else "gradient_checkpointing"
    )
    return {key: enabled}


def warmup_kwargs(warmup_steps: int, warmup_ratio: float) -> dict[str, float]:
    """transformers 5 folds the ratio into `warmup_steps` (a value below 1 is a fraction of steps)."""
    return {"warmup_steps": warmup_steps if warmup_steps > 0 else warmup_ratio}
