"""Stage 2, sequence-level KD: the student is fine-tuned on the kept traces with TRL's SFTTrainer.

Loss on the assistant part only (prompt/completion rows, `completion_only_loss`), as the teacher's
warm-start is trained (`posttrain.models.warmstart`). Packing is TRL's padding-free BFD packing.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from datasets import Dataset
from trl import SFTConfig, SFTTrainer

from posttrain.config.distill_schema import DistillConfig
from posttrain.config.schema import LoraConfig
from posttrain.config.trl_fields import DISTILL_SFT, build, checkpointing_kwargs, warmup_kwargs
from posttrain.models.lora import peft_config
from posttrain.models.precision import trainer_kwargs
from posttrain.models.warmstart import sft_rows
from posttrain.telemetry.progress import quiet_trainer
from posttrain.telemetry.tracking import trackers_last
from posttrain.trl_adapter import atomic, restore_weights


def use_packing(setting: str, model) -> bool:
    """Whether packing helps: with varlen (flash) attention kernels it removes padding for free; with
    SDPA/eager attention (every CPU) transformers builds a block-diagonal mask over the whole packed
    row, which costs more than the little padding similar-length traces carry (tiny-dense student,
    arithmetic traces, 1 CPU thread: 11,000 tokens/s unpacked, 2,000 packed)."""
    if setting != "auto":
        return setting == "on"
    impl = getattr(model.config, "_attn_implementation", None) or ""
    return impl.startswith(("flash", "kernels-community/flash"))


def training_kwargs(
    cfg,
    out_dir: Path,
    *,
    logging_steps: int,
    precision: str,
    save_steps: int,
    save_total_limit: int,
    aux_loss_coef: float = 0.0,
    report_to: Sequence[str] = (),
) -> dict:
    """The Trainer arguments both distillation stages share (SFT and logit KD).

    `aux_loss_coef`: `balancing.aux_loss_coef(recipe.moe)`, explicit even at 0.0 so a config's own
    coefficient (Qwen3-MoE ships 0.001, which SFTTrainer would otherwise apply) never sneaks in.
    """
    return dict(
        report_to=list(report_to),
        router_aux_loss_coef=aux_loss_coef,
        output_dir=str(out_dir),
        max_steps=cfg.max_steps,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler_type,
        **warmup_kwargs(cfg.warmup_steps, 0.0),
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        logging_steps=logging_steps,
        save_strategy="steps",
        save_steps=save_steps or cfg.max_steps,
        save_total_limit=save_total_limit,
        # TRL turns checkpointing on by default; on small students it only costs time.
        **checkpointing_kwargs("SFTConfig", False),
        # explicit even for fp32: TRL defaults to bf16 autocast, several times slower on CPUs
        **trainer_kwargs(precision),
    )


def sft_args(
    cfg: DistillConfig,
    out_dir: Path,
    *,
    packing: bool,
    precision: str,
    save_steps: int,
    save_total_limit: int,
    aux_loss_coef: float = 0.0,
    report_to: Sequence[str] = (),
):

    ours = dict(
        **training_kwargs(
            cfg,
            out_dir,
            logging_steps=cfg.logging_steps,
            precision=precision,
            save_steps=save_steps,
            save_total_limit=save_total_limit,
            aux_loss_coef=aux_loss_coef,
            report_to=report_to,
        ),
        completion_only_loss=True,
        packing=packing,
        max_length=cfg.max_length,
        seed=cfg.seed,
    )
    return build(SFTConfig, DISTILL_SFT, ours, cfg.trl)


def train(
    model,
    tokenizer,
    traces: list[dict],
    cfg: DistillConfig,
    lora: LoraConfig,
    out_dir: Path,
    *,
    callbacks=(),
    resume_from: Path | None = None,
    precision: str = "fp32",
    save_steps: int = 0,
    save_total_limit: int = 2,
    aux_loss_coef: float = 0.0,
    report_to: Sequence[str] = (),
    runs_dir: Path | None = None,
    template_kwargs=None,
):
    """Fine-tune `model` on the traces; returns the trainer (its `.model` may be a PeftModel).
    `report_to`: trackers; TensorBoard writes to runs_dir/sequence_kd (default: out_dir's parent/runs).
    `template_kwargs`: `data.chat_template_kwargs`, rendered into every row as the teacher's prompts were."""

    rows = sft_rows([{"solution": t["completion"]} for t in traces], [t["prompt"] for t in traces], template_kwargs)
    args = sft_args(
        cfg,
        out_dir,
        packing=use_packing(cfg.packing, model),
        precision=precision,
        save_steps=save_steps,
        save_total_limit=save_total_limit,
        aux_loss_coef=aux_loss_coef,
        report_to=report_to,
    )
    trainer = atomic(SFTTrainer)(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        callbacks=list(callbacks),
        peft_config=peft_config(lora, model),
    )
    quiet_trainer(trainer)
    trackers_last(trainer, (runs_dir or Path(out_dir).parent / "runs") / "sequence_kd")
    if resume_from:
        restore_weights(trainer, resume_from, is_adapter=lora.enabled)
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    return trainer
