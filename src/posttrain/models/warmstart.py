"""Supervised warm-start: teach a (tiny) base model the task's worked solutions before RL.

A random-init model never produces a correct answer, so GRPO's group advantages are all zero.
A short SFT on generated worked examples (TRL's SFTTrainer, loss on the completion only)
gives the policy the format and some skill; RL then sharpens it. With `moe.balancing: loss_free`
an MoE warm-starts with loss-free balancing too (`balancing_callbacks`), as DeepSeek-V3 trains its
routing bias throughout pre-training: RL then starts from balanced experts, not from a zero bias.
"""

from __future__ import annotations

from pathlib import Path

from datasets import Dataset
from trl import SFTConfig, SFTTrainer

from posttrain.config.schema import MoEConfig, WarmstartConfig
from posttrain.config.trl_fields import WARMSTART, build, checkpointing_kwargs
from posttrain.distributed import shards_weights
from posttrain.errors import ConfigError
from posttrain.models.balancing import moe_callbacks
from posttrain.models.precision import trainer_kwargs
from posttrain.telemetry.progress import quiet_trainer


def sft_rows(rows: list[dict], prompts: list) -> list[dict]:
    """Prompt/completion pairs in the form SFTTrainer masks to completion-only loss."""
    return [
        {"prompt": prompt, "completion": _completion(prompt, row["solution"])} for row, prompt in zip(rows, prompts)
    ]


def _completion(prompt, solution: str):
    return [{"role": "assistant", "content": solution}] if isinstance(prompt, list) else solution


def balancing_callbacks(moe: MoEConfig, model) -> list:
    """The loss-free bias update for a warm-start when `moe.balancing` is loss_free, else [].

    The routers always train (the warm-start is where a random router learns to route, so
    `moe.freeze_router` is for the training after it) and log no `moe/*` rows of their own.
    """
    if moe.balancing != "loss_free":
        return []

    return moe_callbacks(moe.model_copy(update={"freeze_router": False, "telemetry": False}), model)


def refuse_sharded_engine(setting: str) -> None:
    """Warm-start trains the model in place and saves it: under ZeRO-3 or FSDP that would be shards."""

    if shards_weights():
        raise ConfigError(
            f"{setting}: warm-start is for small build: models in one process or under DDP; under DeepSpeed "
            "ZeRO-3 or FSDP it would save the weights as shards. Launch with recipes/accelerate/ddp.yaml, or start "
            f"from a trained checkpoint with {setting}.steps=0"
        )


def run_warmstart(
    model,
    tokenizer,
    rows: list[dict],
    prompts: list,
    cfg: WarmstartConfig,
    out_dir: Path,
    callbacks=(),
    precision: str = "fp32",
):
    """Train `model` in place on the rows' solutions for `cfg.steps` steps; returns the trainer's metrics.

    `precision`: a resolved `train.precision` (fp32, bf16, fp16, fp8), as the RL stage after it trains.
    """

    missing = [r.get("id") for r in rows if not r.get("solution")]
    if missing:
        raise ValueError(f"warm-start needs worked solutions; {len(missing)} rows have none (e.g. {missing[0]})")
    ours = dict(
        output_dir=str(out_dir),
        per_device_train_batch_size=cfg.batch_size,
        learning_rate=cfg.learning_rate,
        max_steps=cfg.steps,
        lr_scheduler_type="cosine",
        warmup_steps=cfg.warmup_steps,
        save_strategy="no",
        # TRL turns checkpointing on by default; on tiny models it only costs time.
        **checkpointing_kwargs("SFTConfig", False),
        # Explicit, because TRL defaults to bf16 autocast, which is several times slower on CPUs.
        **trainer_kwargs(precision),
        completion_only_loss=True,
        seed=cfg.seed,
    )
    args = build(SFTConfig, WARMSTART, ours, {"logging_steps": max(1, cfg.steps // 20), **cfg.trl})
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(sft_rows(rows, prompts)),
        processing_class=tokenizer,
        callbacks=list(callbacks),
    )

    quiet_trainer(trainer)
    result = trainer.train()
    return result.metrics
