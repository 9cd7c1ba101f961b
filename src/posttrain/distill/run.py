"""`posttrain distill`: the run as a list of named steps.

prepare outputs -> rewards and trace filter -> data splits -> teacher and student sources (tokenizer
check) -> teacher warm-start (build: teachers) -> held-out eval of the teacher -> traces (sample,
score, filter, dedupe; offline top-k targets) -> held-out eval of the student before -> sequence KD
-> logit KD (optional) -> save the student -> held-out eval of the student after -> summary.json.
An MoE student trains under `moe:` (loss-free bias, aux loss, telemetry) in both KD stages, and the
run folder gets `expert_load.png` over both.

Every stage leaves its output in the run folder and is skipped when that output exists, so
`--resume` continues where a run stopped; `stages.json` keeps the seconds each stage took.

Under `accelerate launch` every process trains (the Trainer does the distribution) and shares the
sampling (evals, traces); only the main process writes files (`posttrain.distributed`).
"""

from __future__ import annotations

import gc
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from rich.console import Console
from transformers import AutoConfig, AutoModelForCausalLM, set_seed

from posttrain.checkpoints import checkpoint_step, resume_point
from posttrain.config.distill_schema import DistillRecipe
from posttrain.data.load import to_prompt
from posttrain.data.splits import make_splits
from posttrain.distill import logit_kd, roles, sequence_kd
from posttrain.distill.ledger import Ledger, evaluate_cached, recipe_changes
from posttrain.distill.logit_kd import check_shared_tokenizer
from posttrain.distill.outputs import write_cards_for, write_html
from posttrain.distill.topk import TopKTargets, capture, encode_trace
from posttrain.distill.traces import generate_traces, make_filter, select
from posttrain.distributed import gathered_state_dict, on_main, sum_counts
from posttrain.errors import PosttrainError
from posttrain.evaluate.heldout import HeldOut, eval_sampling, greedy_accuracy
from posttrain.evaluate.scoring import build_rewards, reward_errors, reward_name
from posttrain.hub import check_push, push
from posttrain.io import atomic_write_json, atomic_write_jsonl, read_jsonl
from posttrain.models.balancing import aux_loss_coef, check_moe_settings, moe_callbacks
from posttrain.models.loading import count_parameters, load_tokenizer
from posttrain.models.lora import peft_config
from posttrain.models.machine import check_machine
from posttrain.models.precision import resolve
from posttrain.models.warmstart import refuse_sharded_engine
from posttrain.outputs import prepare_output_dir, write_recipe
from posttrain.telemetry.callbacks import StageCallbacks, stage_callbacks
from posttrain.telemetry.heatmap import plot_expert_load
from posttrain.telemetry.progress import progress_task, quiet_libraries
from posttrain.telemetry.tracking import check_trackers, report_summary, summary_scalars
from posttrain.trl_adapter import restore_weights

# summary.json's figures that also go to the trackers (output.report_to) when the run ends
SUMMARY_SCALARS = (
    "teacher",
    "student",
    "student_before_accuracy",
    "student_before_greedy_accuracy",
    "accuracy_ratio",
    "wall_seconds",
    "stage_seconds",
)


class LazyModel:
    """Load a model on first use and drop it on `release()`: an offline teacher leaves memory
    before the student trains, and a fully resumed run never loads it."""

    def __init__(self, load) -> None:
        self._load, self._model = load, None

    def get(self):
        if self._model is None:
            self._model = self._load()
        return self._model

    def set(self, model) -> None:
        self._model = model

    def release(self) -> None:
        self._model = None
        gc.collect()


@dataclass(frozen=True)
class Job:
    """What every stage of one distillation run shares."""

    recipe: DistillRecipe
    out: Path
    console: Console
    resume: bool
    rewards: list
    correctness: Callable


def run(
    recipe: DistillRecipe,
    console: Console,
    *,
    resume: bool = False,
    overwrite: bool = False,
    base_dir: Path | None = None,
    command: str = "posttrain distill recipe.yaml",
) -> dict:
    """The whole run; `command` is how it was started, for the model card."""

    started = time.time()
    quiet_libraries()
    check_machine(recipe.train.precision, recipe.student, recipe.generation.cache)
    if recipe.output.push_to_hub:
        on_main(lambda: check_push(recipe.output.push_to_hub))
    check_trackers(recipe.output.report_to)
    if roles.needs_warmstart(recipe.teacher):
        refuse_sharded_engine("teacher.warmstart")
    out = prepare_output_dir(recipe.output.dir, resume=resume, overwrite=overwrite)
    _warn_if_recipe_changed(out, recipe, console)
    set_seed(recipe.distill.seed)
    ledger = Ledger(out / "stages.json")
    kd = recipe.distill.logit_kd

    rewards, correctness = build_rewards(
        recipe.rewards.functions, recipe.eval.correctness_reward, base_dir, strict=recipe.rewards.strict
    )
    trace_filter = make_filter(recipe.distill.traces, [reward_name(f) for f in rewards], recipe.eval.correctness_reward)
    splits = make_splits(
        recipe.data, recipe.eval, recipe.teacher.warmstart if roles.needs_warmstart(recipe.teacher) else None
    )
    console.print(
        f"data: {len(splits.train)} prompts for traces, {len(splits.heldout)} held-out, source {recipe.data.source}"
    )

    teacher_src = roles.teacher_source(recipe.teacher, out, seed=recipe.distill.seed)
    tokenizer = load_tokenizer(
        recipe.teacher.tokenizer or teacher_src, recipe.teacher.revision, recipe.teacher.trust_remote_code
    )
    chat = tokenizer.chat_template is not None
    prompt = lambda row: to_prompt(row["question"], recipe.data.system_prompt, chat)  # noqa: E731
    student_src = roles.student_source(recipe.student, out, tokenizer, seed=recipe.distill.seed)
    student_tok = load_tokenizer(
        recipe.student.tokenizer or student_src, recipe.student.revision, recipe.student.trust_remote_code
    )
    if kd.enabled:  # before any slow work: a mismatch would only surface at stage 3
        check_shared_tokenizer(
            tokenizer, student_tok, f"teacher {recipe.teacher.name_or_path}", f"student {recipe.student.name_or_path}"
        )
    _check_student_moe(recipe, student_src)
    # Only now does the folder hold a run: one that failed on its inputs can be re-run as it was.
    write_recipe(out, recipe)

    settings = eval_sampling(
        recipe.eval,
        cache=recipe.generation.cache,
        template_kwargs=recipe.data.chat_template_kwargs,
        sampler=recipe.generation.sampler,
    )
    heldout = HeldOut(splits.heldout, recipe.data.system_prompt, settings, rewards, correctness, console)
    check = replace(heldout, rows=splits.train[: recipe.teacher.warmstart.check_problems])  # never held-out problems
    with ledger.stage(
        "teacher",
        reused=not roles.needs_warmstart(recipe.teacher) or (out / roles.TEACHER_DIR / "config.json").is_file(),
    ):
        teacher_path, warmed = roles.warm_teacher(
            recipe.teacher,
            teacher_src,
            tokenizer,
            splits.warmstart,
            [prompt(r) for r in splits.warmstart],
            out,
            console,
            check=lambda model: greedy_accuracy(model, tokenizer, check, "teacher warm-start check: greedy"),
            report_to=recipe.output.report_to,
            template_kwargs=recipe.data.chat_template_kwargs,
        )
    teacher = LazyModel(lambda: roles.load(recipe.teacher, teacher_path))
    if warmed is not None:
        teacher.set(warmed)
    ledger.params_once("teacher", lambda: count_parameters(teacher.get()))

    job = Job(recipe, out, console, resume, rewards, correctness)

    def evaluate(model_fn, tok, label):
        return evaluate_cached(model_fn, tok, heldout, label, out, ledger)

    teacher_eval = evaluate(teacher.get, tokenizer, "teacher")

    with ledger.stage("traces", reused=(out / "traces.jsonl").is_file()):
        traces, trace_stats = _traces(job, teacher, tokenizer, splits.train, prompt, trace_filter)
    if _offline(recipe) and not (out / "topk.safetensors").is_file():
        with ledger.stage("topk", reused=False):  # one forward pass over the kept traces, on the main process
            ledger.info["topk"] = on_main(lambda: _capture_topk(job, teacher.get(), tokenizer, traces))
    if not (kd.enabled and kd.teacher == "online"):
        teacher.release()  # the student trains without it

    student = LazyModel(lambda: roles.load(recipe.student, student_src))
    ledger.params_once("student", lambda: count_parameters(student.get()))
    before = evaluate(student.get, student_tok, "student_before")

    with ledger.stage("sequence_kd", reused=roles.stage_done(out / "sequence_kd")):
        student.set(_sequence_kd(job, student, student_tok, student_src, traces))
    if kd.enabled:
        with ledger.stage("logit_kd", reused=roles.stage_done(out / "logit_kd")):
            student.set(_logit_kd(job, student, student_tok, student_src, teacher, traces))
    on_main(lambda: _plot_expert_load(out))
    teacher.release()
    final = roles.export_student(student.get(), student_tok, out, recipe.student)
    after = evaluate(lambda: final, student_tok, "student")

    summary = _summary(recipe, ledger, teacher_eval, before, after, trace_stats, time.time() - started)
    summary["reward_errors"] = sum_counts(reward_errors(rewards, correctness))  # rows scored None, traces and eval
    on_main(lambda: atomic_write_json(out / "summary.json", summary))
    values = summary_scalars(summary, SUMMARY_SCALARS)
    on_main(lambda: report_summary(recipe.output.report_to, out / "runs" / "summary", values, 0))
    on_main(lambda: write_cards_for(recipe, summary, out, command))
    on_main(lambda: write_html(recipe, summary, out, command, correctness))
    if recipe.output.push_to_hub:
        accuracy = summary["student"]["accuracy"]
        line = "posttrain distillation" + (
            "" if accuracy is None else f": student held-out pass@1 {100 * accuracy:.1f}%"
        )
        url = on_main(lambda: push(out, recipe.output.push_to_hub, recipe.output.hub_private, line))
        console.print(f"uploaded to the Hub: {url}")
    return summary


def _warn_if_recipe_changed(out: Path, recipe: DistillRecipe, console: Console) -> None:
    """Stages are reused by their outputs, not by the settings that made them: say what changed."""
    changed = recipe_changes(out / "recipe.yaml", recipe.model_dump(mode="json"))
    if changed:
        console.print(
            f"[yellow]warning:[/yellow] the recipe differs from the one this run started with ({', '.join(changed[:8])}); "
            "finished stages are reused as they are -- use --overwrite to redo them"
        )


def _offline(recipe: DistillRecipe) -> bool:
    return recipe.distill.logit_kd.enabled and recipe.distill.logit_kd.teacher == "offline"


def _traces(job: Job, teacher: LazyModel, tokenizer, rows, prompt, trace_filter):
    """traces.jsonl (kept) and its statistics, from traces_raw.jsonl (every scored sample)."""
    recipe, out, console = job.recipe, job.out, job.console
    kept_path, stats_path = out / "traces.jsonl", out / "traces_stats.json"
    if kept_path.is_file() and stats_path.is_file():
        console.print(f"traces: reusing {kept_path}")
        return read_jsonl(kept_path), json.loads(stats_path.read_text(encoding="utf-8"))
    records = generate_traces(
        teacher.get(),
        tokenizer,
        rows,
        [prompt(r) for r in rows],
        recipe.distill.traces,
        job.rewards,
        job.correctness,
        out / "traces_raw.jsonl",
        console,
        cache=recipe.generation.cache,
        template_kwargs=recipe.data.chat_template_kwargs,
        sampler=recipe.generation.sampler,
    )
    kept, stats = select(records, trace_filter)
    if not kept:
        raise PosttrainError(
            f"the filter kept no trace out of {stats['samples']} samples (rejected by: {stats['rejected_by']}); "
            "the teacher needs more training, or distill.traces.require a lower bar"
        )

    def write() -> None:
        atomic_write_jsonl(kept_path, kept)
        atomic_write_json(stats_path, stats)

    on_main(write)
    console.print(
        f"traces: kept {stats['kept']} of {stats['samples']} samples (acceptance {stats['acceptance_rate']:.1%}, "
        f"{stats['duplicates']} duplicates dropped), {stats['prompts_with_trace']}/{stats['prompts']} prompts "
        f"covered, {stats['tokens_kept']} tokens"
    )
    return kept, stats


def _capture_topk(job: Job, teacher, tokenizer, traces: list[dict]) -> dict:
    """topk.safetensors: the teacher's top-k log-probs on every kept trace, for offline logit KD."""
    recipe, out, console = job.recipe, job.out, job.console

    k = recipe.distill.logit_kd.topk
    kwargs = job.recipe.data.chat_template_kwargs
    encoded = [encode_trace(tokenizer, t["prompt"], t["completion"], kwargs) for t in traces]
    with progress_task(console, f"teacher top-{k} log-probs", total=len(encoded)) as advance:
        targets, gap = capture(teacher, encoded, k, tokenizer.pad_token_id, on_batch=advance)
    targets.save(out / "topk.safetensors")
    console.print(
        f"top-{k} targets: {gap.get('teacher_mass', 0):.4f} of the teacher's mass kept, KL gap to full "
        f"vocabulary {gap.get('kl_gap_nats', 0):.5f} nats/token ({gap['tokens']} tokens)"
    )
    return gap


def _trainer_callbacks(job: Job, stage: str, title: str, checkpoint: Path | None, model) -> StageCallbacks:
    # No out_dir for the MoE callbacks: the heat-map spans both stages (`_plot_expert_load`), where one per stage
    # would overwrite the other.
    return stage_callbacks(
        job.out / "metrics.jsonl",
        stage,
        job.console,
        title,
        start_step=checkpoint_step(checkpoint) if checkpoint else 0,
        on_nonfinite=job.recipe.distill.on_nonfinite,
        routing=moe_callbacks(job.recipe.moe, model),
    )


def _check_student_moe(recipe: DistillRecipe, student_src: str) -> None:
    """`moe:` settings the student cannot take (balancing a dense model, aux_loss on a DeepSeek-V3 router) fail
    now, on a weightless (meta-device) copy, not after the teacher has sampled its traces."""
    if recipe.moe.balancing == "none" and not recipe.moe.freeze_router:
        return  # telemetry alone fits any student

    cfg = recipe.student
    try:
        config = AutoConfig.from_pretrained(student_src, revision=cfg.revision, trust_remote_code=cfg.trust_remote_code)
    except (OSError, ValueError) as e:
        raise PosttrainError(
            f"could not read the student's config from {student_src!r}: {str(e).strip().splitlines()[0]}"
        ) from None
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=cfg.trust_remote_code)
    check_moe_settings(recipe.moe, model)


def _plot_expert_load(out: Path) -> None:
    """expert_load.png from metrics.jsonl over both KD stages, logit-KD steps numbered on from sequence KD's
    (metrics.jsonl, unlike a callback's memory, also holds the steps before a resume). Nothing for a dense student."""

    rows = read_jsonl(out / "metrics.jsonl") if (out / "metrics.jsonl").is_file() else []
    offset = max((row["step"] for row in rows if row.get("stage") == "sequence_kd"), default=0)
    rows = [{**row, "step": row["step"] + offset} if row.get("stage") == "logit_kd" else row for row in rows]
    plot_expert_load(rows, out / "expert_load.png")


def _sequence_kd(job: Job, student: LazyModel, tokenizer, student_src: str, traces):
    """Stage 2: SFT on the kept traces (or the student a finished stage 2 saved)."""
    recipe, out, console = job.recipe, job.out, job.console

    stage_dir = out / "sequence_kd"
    if roles.stage_done(stage_dir):
        console.print(f"sequence KD: reusing {stage_dir / 'model'}")
        return roles.load_stage(recipe.student, student_src, stage_dir)
    cfg = recipe.distill
    console.print(f"sequence KD: {cfg.max_steps} SFT steps on {len(traces)} traces")
    checkpoint = resume_point(stage_dir / "checkpoints", job.resume)
    model = student.get()
    stage = _trainer_callbacks(job, "sequence_kd", "sequence KD", checkpoint, model)
    with stage.stop.guarding(stage_dir / "checkpoints"):
        trainer = sequence_kd.train(
            model,
            tokenizer,
            traces,
            cfg,
            recipe.student.lora,
            stage_dir / "checkpoints",
            callbacks=stage.callbacks,
            resume_from=checkpoint,
            precision=resolve(recipe.train.precision, recipe.student.dtype),
            save_steps=recipe.output.save_steps,
            save_total_limit=recipe.output.save_total_limit,
            aux_loss_coef=aux_loss_coef(recipe.moe),
            report_to=recipe.output.report_to,
            runs_dir=out / "runs",
            template_kwargs=recipe.data.chat_template_kwargs,
        )
    roles.save_stage(trainer.model, tokenizer, stage_dir, gathered_state_dict(trainer))
    return trainer.model


def _logit_kd(job: Job, student: LazyModel, tokenizer, student_src: str, teacher: LazyModel, traces):
    """Stage 3: match the teacher's distributions, online (teacher in memory) or offline (top-k)."""
    recipe, out, console = job.recipe, job.out, job.console

    stage_dir = out / "logit_kd"
    if roles.stage_done(stage_dir):
        console.print(f"logit KD: reusing {stage_dir / 'model'}")
        return roles.load_stage(recipe.student, student_src, stage_dir)
    cfg, d = recipe.distill.logit_kd, recipe.distill
    rows = logit_kd.encode_rows(tokenizer, traces, d.max_length, recipe.data.chat_template_kwargs)
    targets = None
    if cfg.teacher == "offline":
        targets = TopKTargets.load(out / "topk.safetensors")
        logit_kd.check_targets(rows, traces, targets, out / "topk.safetensors")
    args = logit_kd.kd_args(
        cfg,
        stage_dir / "checkpoints",
        max_new_tokens=cfg.max_new_tokens or d.traces.max_new_tokens,
        max_length=d.max_length,
        precision=resolve(recipe.train.precision, recipe.student.dtype),
        seed=d.seed,
        logging_steps=d.logging_steps,
        save_steps=recipe.output.save_steps,
        save_total_limit=recipe.output.save_total_limit,
        aux_loss_coef=aux_loss_coef(recipe.moe),
        report_to=recipe.output.report_to,
    )
    checkpoint = resume_point(stage_dir / "checkpoints", job.resume)
    model = student.get()
    already_adapted = hasattr(model, "peft_config")  # stage 2's adapter keeps training
    title = f"logit KD ({cfg.teacher}, {cfg.divergence})"
    stage = _trainer_callbacks(job, "logit_kd", title, checkpoint, model)
    trainer = logit_kd.build_trainer(
        model,
        tokenizer,
        rows,
        cfg,
        args,
        teacher=teacher.get() if cfg.teacher == "online" else None,
        targets=targets,
        callbacks=stage.callbacks,
        peft_config=None if already_adapted else peft_config(recipe.student.lora, model),
        runs_dir=out / "runs",
    )
    console.print(
        f"logit KD: {cfg.max_steps} steps, {cfg.divergence}, teacher {cfg.teacher}, on-policy fraction {cfg.lmbda}"
    )
    if checkpoint:
        restore_weights(trainer, checkpoint, is_adapter=recipe.student.lora.enabled)
    with stage.stop.guarding(stage_dir / "checkpoints"):
        trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    roles.save_stage(trainer.model, tokenizer, stage_dir, gathered_state_dict(trainer))
    return trainer.model


def _summary(
    recipe: DistillRecipe, ledger: Ledger, teacher_eval, before, after, trace_stats: dict, wall: float
) -> dict:
    pick = lambda result, key: None if result is None else result[key]  # noqa: E731
    t_params, s_params = ledger.info["teacher_params"], ledger.info["student_params"]
    role = lambda cfg, params, result: {  # noqa: E731
        "name_or_path": cfg.name_or_path,
        "params_total": params["total"],
        "params_active": params["active"],
        "accuracy": pick(result, "accuracy"),
        "greedy_accuracy": pick(result, "greedy_accuracy"),
        "format_rate": pick(result, "format_rate"),
    }
    teacher_acc, student_acc = pick(teacher_eval, "accuracy"), pick(after, "accuracy")
    kd = recipe.distill.logit_kd
    return {
        "teacher": role(recipe.teacher, t_params, teacher_eval),
        "student": role(recipe.student, s_params, after),
        "student_before_accuracy": pick(before, "accuracy"),
        "student_before_greedy_accuracy": pick(before, "greedy_accuracy"),
        "accuracy_ratio": student_acc / teacher_acc if teacher_acc and student_acc is not None else None,
        "params_ratio": s_params["total"] / t_params["total"],
        "traces": trace_stats,
        "logit_kd": {
            "enabled": kd.enabled,
            "teacher": kd.teacher,
            "divergence": kd.divergence,
            "beta": kd.jsd_beta,
            "lmbda": kd.lmbda,
        }
        if kd.enabled
        else {"enabled": False},
        "topk": ledger.info.get("topk"),
        "stage_seconds": ledger.seconds,
        "stages_reused": [name for name, reused in ledger.reused.items() if reused],
        "wall_seconds": round(wall, 1),
        "data": recipe.data.source,
        "eval": {
            "num_problems": pick(teacher_eval or after, "num_problems"),
            "num_samples": recipe.eval.num_samples,
            "temperature": recipe.eval.temperature,
            "teacher": teacher_eval,
            "student_before": before,
            "student": after,
        },
    }
