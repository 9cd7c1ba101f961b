"""Recipe -> `trl.GRPOConfig` and `trl.GRPOTrainer`. The loss, sampling and advantages are TRL's;
this module only maps our validated recipe onto TRL's arguments."""

from __future__ import annotations

from pathlib import Path

from posttrain.config.schema import GRPORecipe
from posttrain.config.trl_fields import checkpointing_kwargs, warmup_kwargs
from posttrain.models.balancing import aux_loss_coef
from posttrain.models.lora import peft_config


def grpo_args(recipe: GRPORecipe, output_dir: Path, resume_dir: Path | None = None):
    from trl import GRPOConfig

    g = recipe.grpo
    save_steps = recipe.output.save_steps or g.max_steps
    return GRPOConfig(
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
        mask_truncated_completions=g.mask_truncated_completions,
        **checkpointing_kwargs("GRPOConfig", g.gradient_checkpointing),
        **warmup_kwargs(g.warmup_steps, g.warmup_ratio),
        reward_weights=[r.weight for r in recipe.rewards.functions],
        router_aux_loss_coef=aux_loss_coef(recipe.moe),
        seed=g.seed,
        logging_steps=g.logging_steps,
        save_strategy="steps",
        save_steps=save_steps,
        save_total_limit=recipe.output.save_total_limit,
        save_only_model=False,
        report_to=[],
        dataloader_pin_memory=False,  # nothing to pin to on CPU; accelerators gain little at this size
        disable_tqdm=True,  # our rich progress replaces tqdm
        bf16=recipe.model.dtype == "bfloat16",
        fp16=recipe.model.dtype == "float16",
        **g.trl,
    )



def build_trainer(recipe: GRPORecipe, model, tokenizer, reward_funcs, train_rows: list[dict], output_dir: Path, callbacks=()):
    from datasets import Dataset
    from trl import GRPOTrainer

    from posttrain.checkpoints import atomic
    from posttrain.telemetry.step_split import attach

    trainer = atomic(GRPOTrainer)(
        model=model,
        reward_funcs=list(reward_funcs),
        args=grpo_args(recipe, output_dir),
        train_dataset=Dataset.from_list(train_rows),
        processing_class=tokenizer,
        callbacks=list(callbacks),
        peft_config=peft_config(recipe.model.lora),
    )
    quiet(trainer)
    attach(trainer)  # a StepSplit among the callbacks times this trainer's generation and rewards
    return trainer


def quiet(trainer) -> None:
    """Our rich progress and metrics.jsonl replace the Trainer's printed dicts and tqdm bar."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
