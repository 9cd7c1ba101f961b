"""Supervised warm-start: teach a (tiny) base model the task's worked solutions before RL.

A random-init model never produces a correct answer, so GRPO's group advantages are all zero.
A short SFT on generated worked examples (TRL's SFTTrainer, loss on the completion only)
gives the policy the format and some skill; RL then sharpens it. With `moe.balancing: loss_free`
an MoE warm-starts with loss-free balancing too (`balancing_callbacks`), as DeepSeek-V3 trains its
routing bias throughout pre-training: RL then starts from balanced experts, not from a zero bias.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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
from posttrain.telemetry.tracking import trackers_last


def sft_rows(rows: list[dict], prompts: list, template_kwargs=None) -> list[dict]:
    """Prompt/completion pairs in the form SFTTrainer masks to completion-only loss; `template_kwargs`
    (`data.chat_template_kwargs`) ride along per row, the way SFTTrainer takes them."""
    extra = {"chat_template_kwargs": dict(template_kwargs)} if template_kwargs else {}
    return [
        {"prompt": prompt, "completion": _completion(prompt, row["solution"]), **extra}
        for row, prompt in zip(rows, prompts)
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
    round_index: int = 0,
    report_to: Sequence[str] = (),
    stage: str = "warmstart",
    runs_dir: Path | None = None,
    *,
    aux_loss_coef: float = 0.0,
    template_kwargs=None,
    steps: int | None = None,
):
    """Train `model` in place on the rows' solutions for `steps` steps (default `cfg.steps`, or
    `cfg.extra_steps` for an extra round); returns the trainer's metrics.

    `precision`: a resolved `train.precision` (fp32, bf16, fp16, fp8), as the RL stage after it trains.
    `round_index` > 0: a later round (`warmstart_until`), its data in another order.
    `report_to`: `output.report_to`; TensorBoard writes to runs_dir (default: out_dir's parent/runs)
    /<stage>[_round<n>].
    `aux_loss_coef`: `balancing.aux_loss_coef(moe)`, explicit even at 0.0: TRL otherwise takes the model
    config's own coefficient (Qwen/Mixtral/Granite ship 0.001), which adds a loss nobody asked for and,
    on GraniteMoE, fails inside TRL (its fused loss reads `config.num_experts`).
    """

    missing = [r.get("id") for r in rows if not r.get("solution")]
    if missing:
        raise ValueError(f"warm-start needs worked solutions; {len(missing)} rows have none (e.g. {missing[0]})")
    ours = dict(
        output_dir=str(out_dir),
        per_device_train_batch_size=cfg.batch_size,
        learning_rate=cfg.learning_rate,
        max_steps=steps or (cfg.extra_steps if round_index else cfg.steps),
        lr_scheduler_type="cosine",
        warmup_steps=cfg.warmup_steps,
        save_strategy="no",
        # TRL turns checkpointing on by default; on tiny models it only costs time.
        **checkpointing_kwargs("SFTConfig", False),
        # Explicit, because TRL defaults to bf16 autocast, which is several times slower on CPUs.
        **trainer_kwargs(precision),
        completion_only_loss=True,
        router_aux_loss_coef=aux_loss_coef,
        seed=cfg.seed + round_index,
        report_to=list(report_to),
    )
    args = build(SFTConfig, WARMSTART, ours, {"logging_steps": max(1, ours["max_steps"] // 20), **cfg.trl})
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(sft_rows(rows, prompts, template_kwargs)),
        processing_class=tokenizer,
        callbacks=list(callbacks),
    )

    quiet_trainer(trainer)
    runs_dir = Path(runs_dir) if runs_dir else Path(out_dir).parent / "runs"
    trackers_last(trainer, runs_dir / (f"{stage}_round{round_index + 1}" if round_index else stage))
    result = trainer.train()
    return result.metrics


def warmstart_until(
    model,
    tokenizer,
    rows: list[dict],
    prompts: list,
    cfg: WarmstartConfig,
    out_dir: Path,
    check: Callable[[object], float] | None,
    say: Callable[[str], None],
    callbacks=(),
    precision: str = "fp32",
    report_to: Sequence[str] = (),
    stage: str = "warmstart",
    runs_dir: Path | None = None,
    *,
    aux_loss_coef: float = 0.0,
    template_kwargs=None,
    fresh: Callable[[int], object] | None = None,
    callbacks_for: Callable[[object], Sequence] | None = None,
) -> tuple[object, dict]:
    """The warm-start: `cfg.steps`, then, with `cfg.until_greedy`, more rounds until `check(model)` reaches it.

    Why rounds: with a fixed step count one seed's model has learned the worked method and another's
    has not (greedy 94.5% vs 57.5% after 400 steps, docs/efficacy.md), so what RL starts from, and
    what it can add, varied more between seeds than anything RL did. Each extra round does what
    `cfg.retry_plan()` names: `extend` trains the model `extra_steps` more (a fresh warmup and cosine,
    so the model RL starts from has always finished a decay; after restarts, the best attempt so far);
    `restart` calls `fresh(round)` for a new model and trains it `steps` from scratch. With any restart
    the attempt whose last check was best is kept. `callbacks_for(model)`: callbacks bound to one model
    (loss-free balancing), rebuilt for each fresh one.

    Returns (the model RL starts from, {"steps": SFT steps behind it, "checks": [{"steps", "greedy"}, ...]}),
    with "attempt" in each check and "kept" (the attempt kept) when a round restarted.
    """

    plan = cfg.retry_plan()
    if plan and check is None:
        raise ValueError("warm-start until_greedy needs a check of the model")
    restarts = "restart" in plan
    if restarts and fresh is None:
        raise ValueError("warm-start retry: restart needs a way to build a fresh model")
    checks = []
    best = None  # (greedy, attempt, model, steps) of the best attempt so far, with restarts
    attempt, total = 0, 0
    for index, action in enumerate(["first", *plan]):
        if action == "restart":
            model, attempt, total = fresh(index), index, 0
        elif action == "extend" and best is not None:
            _, attempt, model, total = best
        steps = cfg.steps if action in ("first", "restart") else cfg.extra_steps
        extra = list(callbacks_for(model)) if callbacks_for else []
        run_warmstart(
            model,
            tokenizer,
            rows,
            prompts,
            cfg,
            out_dir,
            [*extra, *callbacks],
            precision,
            index,
            report_to,
            stage,
            runs_dir,
            aux_loss_coef=aux_loss_coef,
            template_kwargs=template_kwargs,
            steps=steps,
        )
        total += steps
        if not plan:
            break
        greedy = check(model)
        checks.append({"steps": total, "greedy": greedy, **({"attempt": attempt} if restarts else {})})
        # an extended attempt replaces itself, even if the extension checked lower: its old weights are gone
        if restarts and (best is None or greedy > best[0] or best[1] == attempt):
            best = (greedy, attempt, model, total)
        if greedy >= cfg.until_greedy:
            say(f"warm-start: greedy {greedy:.3f} >= {cfg.until_greedy} after {total} steps")
            break
        if index < len(plan):
            what = plan[index]
            more = f"a fresh model, {cfg.steps} steps" if what == "restart" else f"{cfg.extra_steps} more"
            if what == "extend" and restarts and best is not None:
                more += f" for attempt {best[1] + 1} (greedy {best[0]:.3f}), the best check"
            say(f"warm-start: greedy {greedy:.3f} < {cfg.until_greedy} after {total} steps: {more}")
        else:
            say(f"warm-start: greedy {greedy:.3f} < {cfg.until_greedy} after {total} steps, the last round: RL starts")
    if not restarts:
        return model, {"steps": total, "checks": checks}
    greedy, kept, model, total = best
    if kept != checks[-1]["attempt"]:
        say(f"warm-start: keeping attempt {kept + 1} (greedy {greedy:.3f}), the best check")
    return model, {"steps": total, "checks": checks, "kept": kept}
