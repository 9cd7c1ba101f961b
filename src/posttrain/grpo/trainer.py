"""Recipe -> `trl.GRPOConfig` and `trl.GRPOTrainer`. The loss, sampling and advantages are TRL's;
this module only maps our validated recipe onto TRL's arguments."""

from __future__ import annotations

import copy
import functools
import logging
from pathlib import Path

import torch
from datasets import Dataset
from trl import GRPOConfig, GRPOTrainer

from posttrain.config.schema import GRPORecipe
from posttrain.config.trl_fields import GRPO, build, checkpointing_kwargs, warmup_kwargs
from posttrain.distributed import shards_weights
from posttrain.models.balancing import aux_loss_coef, check_moe_settings
from posttrain.models.decoding import Decoding, decode, supported
from posttrain.models.generation import cache_kwargs
from posttrain.models.lora import peft_config
from posttrain.models.moe import UnsupportedMoEError, find_moe_layers, is_moe
from posttrain.models.padding import SkipPadding
from posttrain.models.precision import resolve, trainer_kwargs
from posttrain.models.replay import RoutingReplay
from posttrain.telemetry.progress import quiet_trainer
from posttrain.telemetry.step_split import attach
from posttrain.telemetry.tracking import trackers_last
from posttrain.trl_adapter import (
    GRPO_ATTRIBUTES,
    FilterNoSignal,
    OwnSampler,
    ReplayRouting,
    atomic,
    check_attributes,
)

log = logging.getLogger(__name__)


def grpo_args(recipe: GRPORecipe, output_dir: Path):
    """`trl.GRPOConfig` for the recipe: the fields mapped in `config.trl_fields.GRPO`, then `grpo.trl`."""

    g = recipe.grpo
    ours = dict(
        output_dir=str(output_dir),
        max_steps=g.max_steps,
        learning_rate=g.learning_rate,
        lr_scheduler_type=g.lr_scheduler_type,
        per_device_train_batch_size=g.per_device_train_batch_size,
        gradient_accumulation_steps=g.gradient_accumulation_steps,
        num_generations=g.num_generations,
        max_completion_length=g.max_completion_length,
        temperature=g.temperature,
        top_p=g.top_p,
        loss_type=g.loss_type,
        beta=g.beta,
        epsilon=g.epsilon,
        epsilon_high=g.epsilon_high,
        scale_rewards=g.scale_rewards,
        num_iterations=g.num_iterations,
        importance_sampling_level=g.importance_sampling_level,
        mask_truncated_completions=g.mask_truncated_completions,
        **checkpointing_kwargs("GRPOConfig", g.gradient_checkpointing),
        **warmup_kwargs(g.warmup_steps, g.warmup_ratio),
        reward_weights=[r.weight for r in recipe.rewards.functions],
        router_aux_loss_coef=aux_loss_coef(recipe.moe),
        seed=g.seed,
        logging_steps=g.logging_steps,
        save_strategy="steps",
        save_steps=recipe.output.save_steps or g.max_steps,
        save_total_limit=recipe.output.save_total_limit,
        save_only_model=False,
        **trainer_kwargs(resolve(recipe.train.precision, recipe.model.dtype)),
        **rollout_kwargs(recipe),
        report_to=list(recipe.output.report_to),
        chat_template_kwargs=dict(recipe.data.chat_template_kwargs) or None,
    )
    return build(GRPOConfig, GRPO, ours, g.trl)


def rollout_kwargs(recipe: GRPORecipe) -> dict:
    """`generation:` as TRL's rollout arguments: the KV cache for transformers, or vLLM."""
    gen = recipe.generation
    if gen.backend == "vllm":
        server = {
            k: v
            for k, v in (("vllm_server_host", gen.vllm_server_host), ("vllm_server_port", gen.vllm_server_port))
            if v is not None
        }
        if gen.cache != "dynamic":
            log.warning(
                "generation.cache=%s applies to the held-out evaluation only: vLLM rollouts use "
                "vLLM's own paged KV cache",
                gen.cache,
            )
        return {"use_vllm": True, "vllm_mode": gen.vllm_mode, **server}
    if gen.cache == "dynamic":
        return {}

    kwargs = cache_kwargs(gen.cache)
    out = {"cache_implementation": kwargs.pop("cache_implementation")}
    if kwargs:  # quantized: the backend reaches transformers' GenerationConfig through TRL
        out["generation_kwargs"] = kwargs  # merged with grpo.trl's generation_kwargs, which win
    return out


def build_trainer(
    recipe: GRPORecipe, model, tokenizer, reward_funcs, train_rows: list[dict], output_dir: Path, callbacks=()
):

    trainer = atomic(GRPOTrainer, FilterNoSignal, ReplayRouting, OwnSampler)(
        model=model,
        reward_funcs=list(reward_funcs),
        args=grpo_args(recipe, output_dir),
        train_dataset=Dataset.from_list(train_rows),
        processing_class=tokenizer,
        callbacks=list(callbacks),
        peft_config=peft_config(recipe.model.lora, model),
    )
    attach_routing(trainer, recipe, model)
    skip_padding(trainer)
    trainer.sampler, trainer.rollout_route = rollout_sampler(trainer, recipe, model)
    trainer.dynamic_sampling = recipe.grpo.dynamic_sampling
    quiet_trainer(trainer)
    trackers_last(trainer, Path(recipe.output.dir) / "runs" / "grpo")
    attach(trainer)  # a StepSplit among the callbacks times this trainer's generation and rewards
    return trainer


AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


def skip_padding(trainer) -> None:
    """MoE experts leave pad tokens out of the policy's and the reference's log-prob passes
    (`models.padding`: no real token's output or gradient changes). Off under activation checkpointing,
    whose recomputation in backward could see another forward's mask."""
    trainer.skip_padding = []
    args = trainer.args
    if getattr(args, "activation_checkpointing", False) or getattr(args, "gradient_checkpointing", False):
        return
    for model in (trainer.model, trainer.ref_model):
        if model is not None and is_moe(trainer.accelerator.unwrap_model(model)):
            trainer.skip_padding.append(SkipPadding(model).attach())


def rollout_sampler(trainer, recipe: GRPORecipe, model):
    """(sampler, route): `generation.sampler: posttrain` sends the rollouts through
    `models.decoding.decode`, with the settings TRL's generate would sample with
    (`trainer.generation_config`, and the model's own generation config under TRL's overrides, as
    `unwrap_model_for_generation` applies them); sampler None keeps TRL's generate -- when asked,
    for vLLM, under a sharded engine, or for a setting the loop does not implement. `route` says
    which, and why, for the run's console."""
    gen = recipe.generation
    if gen.backend != "transformers":
        return None, f"{gen.backend} (generation.backend)"
    if gen.sampler != "posttrain":
        return None, "transformers generate (generation.sampler: generate)"
    if shards_weights():
        return None, "transformers generate (ZeRO-3/FSDP run every forward on every rank in step)"
    config = trainer.generation_config
    effective = copy.deepcopy(model.generation_config)
    effective.update(**trainer.generation_kwargs)
    reason = supported(config, effective)
    if reason is not None:
        return None, f"transformers generate (the decode loop does not implement {reason})"
    eos = config.eos_token_id
    decoding = Decoding(
        max_new_tokens=config.max_new_tokens,
        eos_token_ids=tuple(eos if isinstance(eos, list | tuple) else [eos]),
        pad_token_id=config.pad_token_id,
        temperature=config.temperature if config.do_sample else 0.0,
        top_p=1.0 if config.top_p is None else config.top_p,
        top_k=config.top_k or 0,
    )
    return functools.partial(decode, settings=decoding), "posttrain decode loop (shared prefill, finished rows pruned)"


def attach_routing(trainer, recipe: GRPORecipe, model) -> None:
    """Routing replay and mismatch telemetry (`moe.routing_replay`, `moe.telemetry`) on an MoE policy,
    and the rollouts' autocast (`generation.rollout_autocast`)."""
    check_attributes(trainer, GRPO_ATTRIBUTES)
    trainer.rollout_autocast = AUTOCAST.get(recipe.generation.rollout_autocast)
    replay = recipe.moe.routing_replay
    check_moe_settings(recipe.moe, model)  # replay on a dense model, or an MoE family we cannot route, is refused
    if not is_moe(model):
        return
    if replay == "none" and not recipe.moe.telemetry:
        return
    if recipe.generation.backend == "vllm":  # telemetry only; replay was refused with the recipe
        log.warning("MoE mismatch telemetry needs the transformers backend; vLLM rollouts are not recorded")
        return
    try:
        layers = find_moe_layers(model)
    except UnsupportedMoEError as e:
        if replay != "none":
            raise
        log.warning("MoE mismatch telemetry off: %s", e)
        return
    trainer.routing = RoutingReplay(model, temperature=recipe.grpo.temperature, layers=layers)
    trainer.routing_replay = replay
    g = recipe.grpo
    if (
        replay == "old_policy"
        and g.num_iterations == 1
        and g.trl.get("steps_per_generation") in (None, g.gradient_accumulation_steps)
    ):
        log.warning(
            "moe.routing_replay=old_policy: with num_iterations 1 every gradient step is on-policy, so the "
            "training forward is the old policy's own and there is nothing to replay"
        )
