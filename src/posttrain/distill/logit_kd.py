"""Stage 3, logit-level KD: the student matches the teacher's next-token distributions on the traces.

online: the teacher runs beside the student (TRL's GKDTrainer): full vocabulary, and a fraction
lambda of batches is sampled by the student itself (on-policy, GKD). offline: the teacher's top-k
log-probs stored by the traces stage stand in for it, so a teacher that does not fit beside the
student never has to. Divergence: forward KL, reverse KL or generalised JSD(beta), TRL's loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from datasets import Dataset

from posttrain.config.distill_schema import LogitKDConfig
from posttrain.config.trl_fields import DISTILL_GKD, build
from posttrain.distill.kd_trainers import OnlineKDTrainer, TopKDistillTrainer, TraceCollator
from posttrain.distill.sequence_kd import training_kwargs
from posttrain.distill.topk import TopKTargets, encode_trace, gkd_classes
from posttrain.errors import PosttrainError
from posttrain.telemetry.progress import quiet_trainer
from posttrain.telemetry.tracking import trackers_last


class TokenizerMismatch(PosttrainError):
    """Logit KD compares distributions token by token: teacher and student must share a vocabulary."""


def check_shared_tokenizer(teacher_tok, student_tok, teacher_name: str, student_name: str) -> None:
    """Raise, naming both sides and the way out, unless the two tokenizers map text to the same ids."""
    t_vocab, s_vocab = teacher_tok.get_vocab(), student_tok.get_vocab()
    if t_vocab == s_vocab:
        return
    differs = sorted(set(t_vocab.items()) ^ set(s_vocab.items()))[:3]
    example = ", ".join(f"{tok!r}->{i}" for tok, i in differs)
    raise TokenizerMismatch(
        f"logit-level KD needs one tokenizer for teacher and student, but {teacher_name} has "
        f"{len(t_vocab)} tokens and {student_name} has {len(s_vocab)} (they differ at e.g. {example}). "
        "Use a student with the teacher's tokenizer (a build: student gets it automatically), or "
        "distil at the sequence level only: --set distill.logit_kd.enabled=false"
    )


def encode_rows(tokenizer, traces: list[dict], max_length: int, template_kwargs=None) -> list[dict]:
    """Training rows for the collator; a trace longer than `max_length` is cut, one whose prompt
    alone fills it is skipped (nothing left to learn from)."""
    rows = []
    for i, trace in enumerate(traces):
        ids, prompt_len = encode_trace(tokenizer, trace["prompt"], trace["completion"], template_kwargs)
        if prompt_len < max_length:
            rows.append(
                {
                    "input_ids": ids[:max_length],
                    "prompt_len": prompt_len,
                    "index": i,
                    "completion_len": len(ids) - prompt_len,
                }
            )
    if not rows:
        raise PosttrainError(f"logit KD: every trace's prompt is longer than distill.max_length ({max_length})")
    return rows


def check_targets(rows: list[dict], traces: list[dict], targets: TopKTargets, path: Path) -> None:
    """Stored targets must line up with today's tokenisation of the same traces."""
    if len(targets.offsets) - 1 != len(traces):
        raise PosttrainError(
            f"{path} holds targets for {len(targets.offsets) - 1} traces, traces.jsonl has {len(traces)}; rerun with --overwrite"
        )
    for row in rows:
        i = row["index"]
        stored = int(targets.offsets[i + 1] - targets.offsets[i])
        if stored != row["completion_len"]:
            raise PosttrainError(
                f"{path}: trace {i} has {stored} stored targets but tokenises to {row['completion_len']} "
                "completion tokens; the tokenizer changed since the traces were written -- rerun with --overwrite"
            )


def kd_args(
    cfg: LogitKDConfig,
    out_dir: Path,
    *,
    max_new_tokens: int,
    max_length: int,
    precision: str,
    seed: int,
    logging_steps: int,
    save_steps: int,
    save_total_limit: int,
    aux_loss_coef: float = 0.0,
    report_to: Sequence[str] = (),
):
    GKDConfig, _ = gkd_classes()
    ours = dict(
        **training_kwargs(
            cfg,
            out_dir,
            logging_steps=logging_steps,
            precision=precision,
            save_steps=save_steps,
            save_total_limit=save_total_limit,
            aux_loss_coef=aux_loss_coef,
            report_to=report_to,
        ),
        max_length=max_length,
        seed=seed,
        remove_unused_columns=False,  # the collator needs prompt_len and index
        dataset_kwargs={"skip_prepare_dataset": True},  # rows are tokenised here, once, for both modes
        beta=cfg.jsd_beta,
        lmbda=cfg.lmbda,
        temperature=cfg.temperature,
        max_new_tokens=max_new_tokens,
    )
    return build(GKDConfig, DISTILL_GKD, ours, cfg.trl)


def build_trainer(
    model,
    tokenizer,
    rows: list[dict],
    cfg: LogitKDConfig,
    args,
    *,
    teacher=None,
    targets: TopKTargets | None = None,
    callbacks=(),
    peft_config=None,
    runs_dir: Path | None = None,
):
    """The online (teacher given) or offline (targets given) trainer over the same batches.
    TensorBoard (`report_to`) writes to runs_dir/logit_kd (default: the output_dir's grandparent/runs)."""

    common = dict(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        data_collator=TraceCollator(tokenizer.pad_token_id, targets),
        callbacks=list(callbacks),
        peft_config=peft_config,
    )
    if cfg.teacher == "online":
        if teacher is None:
            raise ValueError("online logit KD needs the teacher model")
        trainer = OnlineKDTrainer(teacher_model=teacher, **common)
    else:
        if targets is None:
            raise ValueError("offline logit KD needs the stored top-k targets")
        trainer = TopKDistillTrainer(beta=cfg.jsd_beta, **common)
    quiet_trainer(trainer)
    trackers_last(trainer, (runs_dir or Path(args.output_dir).parent.parent / "runs") / "logit_kd")
    return trainer
