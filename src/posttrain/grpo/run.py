"""`posttrain grpo`: the run as a list of named steps.

prepare outputs -> load model and tokenizer -> data splits -> (warm-start) -> rewards ->
held-out eval of the base -> GRPO (TRL) -> save the policy -> held-out eval of the policy ->
summary.json + reward.png.

Under `accelerate launch` every process trains (the Trainer does the distribution) and shares the
held-out sampling; only the main process writes files (`posttrain.distributed`).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import replace
from pathlib import Path

import torch
from rich.console import Console
from transformers import set_seed
from trl.models import unwrap_model_for_generation

from posttrain.checkpoints import checkpoint_step, resume_point
from posttrain.config.schema import GRPORecipe
from posttrain.data.load import source_kind, to_prompt
from posttrain.data.splits import make_splits
from posttrain.distributed import gathered_state_dict, on_main, sum_counts, world_size
from posttrain.evaluate.browse import write_heldout_html
from posttrain.evaluate.heldout import HeldOut, eval_sampling, greedy_accuracy, heldout_accuracy, result_line
from posttrain.evaluate.sampling import render_prompt
from posttrain.evaluate.scoring import build_rewards, reward_errors
from posttrain.grpo.trainer import build_trainer
from posttrain.hub import check_push, push
from posttrain.io import atomic_write_json, atomic_write_jsonl
from posttrain.models.balancing import aux_loss_coef, check_moe_settings, moe_callbacks
from posttrain.models.loading import (
    count_parameters,
    hub_model_id,
    load_model,
    load_tokenizer,
    resolve_model_path,
    save_pretrained,
)
from posttrain.models.lora import merge_saved_adapter
from posttrain.models.machine import check_machine
from posttrain.models.precision import resolve
from posttrain.models.quantization import bnb_config
from posttrain.models.warmstart import balancing_callbacks, refuse_sharded_engine, warmstart_until
from posttrain.outputs import prepare_output_dir, write_recipe
from posttrain.rewards.format import warn_prefill
from posttrain.telemetry.callbacks import stage_callbacks
from posttrain.telemetry.cost import price
from posttrain.telemetry.heatmap import plot_expert_load
from posttrain.telemetry.model_card import grpo_card, routing_from_metrics, write_cards
from posttrain.telemetry.plots import plot_rewards
from posttrain.telemetry.progress import quiet_libraries
from posttrain.telemetry.tracking import check_trackers, report_summary, summary_scalars
from posttrain.telemetry.trainer_progress import RichProgressCallback
from posttrain.trl_adapter import restore_weights

WARMSTART_RECORD = "warmstart.json"  # in base/: the warm-start's steps and greedy checks
# `model.warmstart.retry: restart`: attempt k builds the model from init seed grpo.seed + k * stride, far
# from any seed a user would pass to a neighbouring run.
RESTART_SEED_STRIDE = 1_000_033
# summary.json's figures that also go to the trackers (output.report_to) when the run ends
SUMMARY_SCALARS = (
    "base_accuracy",
    "final_accuracy",
    "base_greedy_accuracy",
    "final_greedy_accuracy",
    "wall_seconds",
    "stage_seconds",
    "cost",
)


def run(
    recipe: GRPORecipe,
    console: Console,
    *,
    resume: bool = False,
    overwrite: bool = False,
    base_dir: Path | None = None,
    command: str = "posttrain grpo recipe.yaml",
) -> dict:
    """The whole run; `command` is how it was started, for the model card."""

    started = time.time()
    quiet_libraries()

    check_machine(recipe.train.precision, recipe.model, recipe.generation.cache, recipe.generation.backend)
    if recipe.output.push_to_hub:
        on_main(lambda: check_push(recipe.output.push_to_hub))
    check_trackers(recipe.output.report_to)
    if recipe.model.warmstart.steps:
        refuse_sharded_engine("model.warmstart")
    timings: dict[str, float] = {}
    out = prepare_output_dir(recipe.output.dir, resume=resume, overwrite=overwrite)
    set_seed(recipe.grpo.seed)

    t = time.time()
    model_path = on_main(lambda: resolve_model_path(recipe.model, out, seed=recipe.grpo.seed))
    tokenizer = load_tokenizer(
        recipe.model.tokenizer or model_path, recipe.model.revision, recipe.model.trust_remote_code
    )
    _warn_think_prefill(tokenizer, recipe)
    chat = tokenizer.chat_template is not None
    splits = make_splits(recipe.data, recipe.eval, recipe.model.warmstart)
    prompt = lambda row: to_prompt(row["question"], recipe.data.system_prompt, chat)  # noqa: E731
    console.print(
        f"data: {len(splits.train)} training problems, {len(splits.heldout)} held-out, source {recipe.data.source}"
    )
    rewards, correctness = build_rewards(
        recipe.rewards.functions, recipe.eval.correctness_reward, base_dir, strict=recipe.rewards.strict
    )
    # Only now does the folder hold a run: one that failed on its inputs can be re-run as it was.
    write_recipe(out, recipe)
    timings["setup"] = time.time() - t

    settings = eval_sampling(
        recipe.eval,
        cache=recipe.generation.cache,
        template_kwargs=recipe.data.chat_template_kwargs,
        sampler=recipe.generation.sampler,
    )
    t = time.time()
    heldout = HeldOut(splits.heldout, recipe.data.system_prompt, settings, rewards, correctness, console)
    check = replace(heldout, rows=splits.train[: recipe.model.warmstart.check_problems])  # never held-out problems
    model, warmed = _base_model(recipe, model_path, tokenizer, splits.warmstart, prompt, out, console, check)
    timings["warmstart"] = time.time() - t
    params = count_parameters(model)
    console.print(f"model: {recipe.model.name_or_path} ({params['total']:,} parameters, {params['active']:,} active)")

    t = time.time()
    base = _evaluate(model, tokenizer, heldout, "base", out)
    timings["eval_base"] = time.time() - t

    t = time.time()
    train_rows = [{**row, "prompt": prompt(row)} for row in splits.train]
    trainer = _train(recipe, model, tokenizer, rewards, train_rows, out, console, resume)
    timings["grpo"] = time.time() - t
    _save_policy(trainer, tokenizer, out, recipe)

    t = time.time()

    # The trained model whole on every process (ZeRO-3 gathers its shards; otherwise the model itself).
    with unwrap_model_for_generation(trainer.model_wrapped, trainer.accelerator) as policy:
        final = _evaluate(policy, tokenizer, heldout, "trained", out)
    timings["eval_final"] = time.time() - t

    summary = _summary(recipe, base, final, trainer, params, timings, time.time() - started)
    summary["warmstart"] = warmed
    values = summary_scalars(summary, SUMMARY_SCALARS)
    on_main(lambda: report_summary(recipe.output.report_to, out / "runs" / "summary", values, summary["steps"]))
    summary["reward_errors"] = sum_counts(reward_errors(rewards, correctness))  # rows scored None, training and eval
    on_main(lambda: _write_summary(summary, out, trainer.metrics_logger.rows if recipe.output.plots else None))
    on_main(lambda: _write_cards(recipe, summary, out, command, trainer.metrics_logger.rows))
    on_main(lambda: _write_html(recipe, summary, out, command, correctness, trainer.metrics_logger.rows))
    if recipe.output.push_to_hub:
        url = on_main(lambda: _push(recipe, summary, out))
        console.print(f"uploaded to the Hub: {url}")
    return summary


def _push(recipe: GRPORecipe, summary: dict, out: Path) -> str:
    line = f"posttrain GRPO, {summary['steps']} steps"
    if summary["final_accuracy"] is not None:
        line += f": held-out pass@1 {100 * summary['base_accuracy']:.1f}% -> {100 * summary['final_accuracy']:.1f}%"
    return push(out, recipe.output.push_to_hub, recipe.output.hub_private, line)


def _write_cards(recipe: GRPORecipe, summary: dict, out: Path, command: str, metric_rows: list[dict]) -> None:
    """README.md model cards for the policy (the run folder) and, with LoRA, the adapter."""
    kwargs = dict(
        command=command,
        base_model=hub_model_id(recipe.model),
        datasets=[recipe.data.source] if source_kind(recipe.data.source) == "hub" else [],
        routing=routing_from_metrics(metric_rows),
    )
    as_run = recipe.model_dump(mode="json")
    write_cards(out, lambda adapter: grpo_card(as_run, summary, adapter=adapter, **kwargs))


def _write_html(recipe: GRPORecipe, summary: dict, out: Path, command: str, correctness, metric_rows) -> None:
    """report.html: the held-out problems, base and trained answers side by side, with the run's figures."""
    pct = lambda value: "n/a" if value is None else f"{100 * value:.1f}%"  # noqa: E731
    facts = [
        ("command", command),
        ("model", recipe.model.name_or_path),
        ("data", f"{recipe.data.source}: {summary['eval']['num_problems']} held-out problems"),
        (
            "sampling",
            f"{recipe.eval.num_samples} samples per problem at temperature {recipe.eval.temperature}, and greedy",
        ),
        ("pass@1", f"base {pct(summary['base_accuracy'])} -> trained {pct(summary['final_accuracy'])}"),
        ("greedy", f"base {pct(summary['base_greedy_accuracy'])} -> trained {pct(summary['final_greedy_accuracy'])}"),
        ("steps", str(summary["steps"])),
    ]
    figures = {
        "rewards and accuracy during GRPO": out / "reward.png",
        "expert load over training (MoE routing)": plot_expert_load(metric_rows, out / "expert_load.png"),
    }
    title = f"posttrain GRPO: {out.name}"
    write_heldout_html(out, title, ["base", "trained"], facts, correctness, recipe.eval.num_samples, figures)


def _write_summary(summary: dict, out: Path, metric_rows: list[dict] | None) -> None:
    atomic_write_json(out / "summary.json", summary)
    if metric_rows is not None:
        plot_rewards(metric_rows, out / "reward.png", heldout=summary)


def _warn_think_prefill(tokenizer, recipe: GRPORecipe) -> None:
    """Render one prompt the way training will and check it against the think/format rewards."""
    if tokenizer.chat_template:
        prompt = render_prompt(
            tokenizer, to_prompt("1+1=?", recipe.data.system_prompt, chat=True), recipe.data.chat_template_kwargs
        )
        warn_prefill(prompt, {r.name: r.kwargs for r in recipe.rewards.functions})


def _base_model(
    recipe: GRPORecipe,
    model_path: str,
    tokenizer,
    warm_rows: list[dict],
    prompt,
    out: Path,
    console,
    check: HeldOut | None = None,
):
    """(model, warm-start record or None): the model GRPO starts from, loaded as given, or warm-started
    once and cached in `out/base` (its record in base/warmstart.json, so a resumed run still reports it).
    `check`: the training problems an `until_greedy` warm-start decodes greedily between rounds."""
    warm = recipe.model.warmstart
    base_dir = out / "base"
    if warm.steps and (base_dir / "config.json").is_file():
        console.print(f"warm-start: reusing {base_dir}")
        record = base_dir / WARMSTART_RECORD
        return load_model(str(base_dir), recipe.model.dtype), json.loads(
            record.read_text()
        ) if record.is_file() else None

    def load(path: str):
        return load_model(
            path,
            recipe.model.dtype,
            recipe.model.revision,
            recipe.model.trust_remote_code,
            quantization=bnb_config(recipe.model),
        )

    def fresh(attempt: int):
        """`retry: restart`: a builder's model from another init seed; a checkpoint loaded afresh."""
        seed = recipe.grpo.seed + RESTART_SEED_STRIDE * attempt
        return load(on_main(lambda: resolve_model_path(recipe.model, out, seed=seed)))

    model = load(model_path)
    check_moe_settings(recipe.moe, model)  # before the warm-start: a refusal costs nothing yet
    if not warm.steps:
        return model, None

    console.print(f"warm-start: {warm.steps} SFT steps on {len(warm_rows)} worked examples")
    progress = RichProgressCallback(console, "warm-start SFT", accuracy_reward=None)
    model, warmed = warmstart_until(
        model,
        tokenizer,
        warm_rows,
        [prompt(r) for r in warm_rows],
        warm,
        out / "warmstart-tmp",
        check=None if check is None else lambda m: greedy_accuracy(m, tokenizer, check, "warm-start check: greedy"),
        say=console.print,
        callbacks=[progress],
        callbacks_for=lambda m: balancing_callbacks(recipe.moe, m),
        fresh=fresh,
        precision=resolve(recipe.train.precision, recipe.model.dtype),
        report_to=recipe.output.report_to,
        runs_dir=out / "runs",
        aux_loss_coef=aux_loss_coef(recipe.moe),
        template_kwargs=recipe.data.chat_template_kwargs,
    )
    on_main(lambda: _save_base(model, tokenizer, base_dir, out / "warmstart-tmp", warmed))
    # TRL builds the KL reference model from `config._name_or_path`: point it at the warm-started
    # weights, not the random init this model was loaded from.
    model.config._name_or_path = str(base_dir)
    return model, warmed


def _save_base(model, tokenizer, base_dir: Path, scratch: Path, warmed: dict) -> None:
    save_pretrained(model, tokenizer, base_dir)
    atomic_write_json(base_dir / WARMSTART_RECORD, warmed)
    shutil.rmtree(scratch, ignore_errors=True)  # SFTTrainer's scratch folder


def _evaluate(model, tokenizer, heldout: HeldOut, label: str, out: Path) -> dict | None:
    if not heldout.rows:
        return None
    result = heldout_accuracy(model, tokenizer, heldout, label)
    records = result.pop("records")
    on_main(lambda: atomic_write_jsonl(out / f"heldout_{label}.jsonl", records))
    heldout.console.print(result_line(result, heldout.settings, label))
    return result


def _train(recipe: GRPORecipe, model, tokenizer, rewards, train_rows: list[dict], out: Path, console: Console, resume):

    checkpoint = resume_point(out / "checkpoints", resume)
    stage = stage_callbacks(
        out / "metrics.jsonl",
        "grpo",
        console,
        "GRPO",
        start_step=checkpoint_step(checkpoint) if checkpoint else 0,
        on_nonfinite=recipe.grpo.on_nonfinite,
        routing=moe_callbacks(recipe.moe, model, out),
        accuracy_reward=recipe.eval.correctness_reward,
        split_step=True,
    )
    trainer = build_trainer(
        recipe, model, tokenizer, rewards, train_rows, out / "checkpoints", callbacks=stage.callbacks
    )
    trainer.metrics_logger = stage.logger
    console.print(f"rollouts: {trainer.rollout_route}")
    if checkpoint:
        console.print(f"resuming from {checkpoint}")
        restore_weights(trainer, checkpoint, recipe.model.lora.enabled)
    with stage.stop.guarding(out / "checkpoints"):
        trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    return trainer


def _save_policy(trainer, tokenizer, out: Path, recipe: GRPORecipe) -> None:
    """The policy at the top of the run folder: `from_pretrained(out)` loads it (adapter or full).

    Every process takes part (ZeRO-3 and FSDP gather the weights from all of them); the main one
    writes. A LoRA adapter is merged in memory by every process, which then evaluates the merged
    policy -- or, where the engine holds only shards, by the main process from the saved adapter.
    """
    model, lora = trainer.model, recipe.model.lora
    state_dict = gathered_state_dict(trainer)
    if not (lora.enabled and lora.merge_on_save):
        on_main(lambda: _publish_policy(model, tokenizer, out, state_dict))
        return
    on_main(lambda: save_pretrained(model, tokenizer, out / "adapter", state_dict=state_dict))
    if state_dict is None and not recipe.model.load_in_4bit:
        merged = model.merge_and_unload()
        on_main(lambda: _publish_policy(merged, tokenizer, out, None))
    else:
        # Sharded weights, or a 4-bit base (merging there would re-quantize): merge onto the base
        # loaded afresh in full precision. The in-memory policy stays as trained for the final eval.
        on_main(lambda: _publish_policy(merge_saved_adapter(out / "adapter", recipe.model.dtype), tokenizer, out, None))


def _publish_policy(model, tokenizer, out: Path, state_dict) -> None:
    save_pretrained(model, tokenizer, out / "policy.tmp-final", state_dict=state_dict)
    for child in (out / "policy.tmp-final").iterdir():
        child.replace(out / child.name)
    (out / "policy.tmp-final").rmdir()


def _cost(timings: dict[str, float], usd_per_gpu_hour: float) -> dict:
    """Device-hours and dollars per stage: wall time times the devices this run held."""

    devices = max(1, torch.cuda.device_count()) if torch.cuda.is_available() else 1
    if world_size() > 1:  # one device per launched process, on every node
        devices = world_size()
    report = price(timings, devices, usd_per_gpu_hour)
    report["device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    return report


def _summary(recipe, base, final, trainer, params, timings, wall) -> dict:
    pick = lambda result, key: None if result is None else result[key]  # noqa: E731
    return {
        "base_accuracy": pick(base, "accuracy"),
        "final_accuracy": pick(final, "accuracy"),
        "base_greedy_accuracy": pick(base, "greedy_accuracy"),
        "final_greedy_accuracy": pick(final, "greedy_accuracy"),
        "steps": trainer.state.global_step,
        "wall_seconds": round(wall, 1),
        "stage_seconds": {k: round(v, 1) for k, v in timings.items()},
        "torch_threads": torch.get_num_threads(),  # CPU timings depend on it
        "model": recipe.model.name_or_path,
        "params_total": params["total"],
        "params_active": params["active"],
        "data": recipe.data.source,
        "cost": _cost(timings, recipe.cost.usd_per_gpu_hour),
        "eval": {
            "num_problems": pick(base or final, "num_problems"),
            "num_samples": recipe.eval.num_samples,
            "temperature": recipe.eval.temperature,
            "base": base,
            "final": final,
        },
    }
