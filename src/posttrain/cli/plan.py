"""`posttrain plan RECIPE.yaml`: memory per GPU before renting one, from the model's config.json alone."""

from __future__ import annotations

from pathlib import Path

import typer

from posttrain.cli.common import SET_HELP, console, run_or_exit


def plan(
    recipe: Path = typer.Argument(..., help="GRPO recipe (see recipes/math.yaml).", dir_okay=False),
    set_: list[str] = typer.Option(None, "--set", help=SET_HELP),
    gpu: str = typer.Option("h100-80gb", "--gpu", help="GPU to check against (posttrain plan --help lists them)."),
    gpus: int = typer.Option(8, "--gpus", min=1, help="Data-parallel GPUs the ZeRO / FSDP engines shard over."),
    prompt_tokens: int = typer.Option(256, "--prompt-tokens", min=1, help="Longest prompt, in tokens."),
) -> None:
    """Memory per GPU for weights, gradients, optimizer, KL reference, activations and rollout KV cache,
    under DDP, ZeRO-2, ZeRO-3 and FSDP2, for full fine-tuning, LoRA and QLoRA; says which fit."""
    from rich.table import Table

    from posttrain.config import GRPORecipe, load_recipe
    from posttrain.errors import PosttrainError
    from posttrain.models.shape import model_shape
    from posttrain.telemetry.memory import DTYPE_BYTES, ENGINES, GPUS, SETUPS, USABLE, Workload, fits, gib, memory

    def check_gpu() -> None:
        if gpu not in GPUS:
            raise PosttrainError(f"--gpu {gpu!r}: known: {', '.join(GPUS)}")

    out = console()
    run_or_exit(check_gpu)
    cfg = run_or_exit(lambda: load_recipe(recipe, GRPORecipe, set_ or []))
    shape = run_or_exit(lambda: model_shape(cfg.model))
    g = cfg.grpo
    steps_per_generation = g.trl.get("steps_per_generation") or g.gradient_accumulation_steps
    work = Workload(
        weight_bytes=DTYPE_BYTES.get(cfg.model.dtype, 2),  # "auto": the Hub's large models ship in bf16
        beta=g.beta,
        micro_batch=g.per_device_train_batch_size,
        seq_len=prompt_tokens + g.max_completion_length,
        rollout_sequences=g.per_device_train_batch_size * steps_per_generation,
        gradient_checkpointing=g.gradient_checkpointing,
        nested_quant=cfg.model.use_bnb_nested_quant,
    )
    setup = "qlora" if cfg.model.load_in_4bit else "lora" if cfg.model.lora.enabled else "full"

    out.print(
        f"{cfg.model.name_or_path} ({shape.model_type}): {shape.total / 1e9:.3f}B parameters, "
        f"{shape.active / 1e9:.3f}B active; LoRA adapter {shape.lora / 1e6:.1f}M; {shape.layers} layers, "
        f"KV cache {shape.kv_per_token:,} values/token"
    )
    out.print(
        f"per device: micro-batch {work.micro_batch} x {work.seq_len} tokens ({prompt_tokens} prompt + "
        f"{g.max_completion_length} completion), rollouts of {work.rollout_sequences} sequences, "
        f"{cfg.model.dtype} weights, beta {g.beta}, gradient checkpointing {'on' if work.gradient_checkpointing else 'off'}"
    )
    table = Table(title=f"the recipe as written ({setup}), GiB per GPU, {gpus} GPUs")
    table.add_column("component")
    for engine in ENGINES:
        table.add_column(engine, justify="right")
    rows = {engine: memory(shape, work, setup, engine, gpus) for engine in ENGINES}
    for component in ("weights", "gradients", "optimizer", "reference", "activations", "kv_cache"):
        table.add_row(component, *(gib(getattr(rows[e], component)) for e in ENGINES))
    table.add_row("total", *(gib(rows[e].total) for e in ENGINES))
    out.print(table)

    verdicts = Table(title=f"total GiB per GPU, and whether it fits a {gpu} ({USABLE:.0%} of it usable)")
    verdicts.add_column("setup")
    for engine in ENGINES:
        verdicts.add_column(engine, justify="right")
    for each in SETUPS:
        totals = [memory(shape, work, each, engine, gpus).total for engine in ENGINES]
        verdicts.add_row(each, *(f"{gib(t)} {'fits' if fits(t, gpu) else 'no'}" for t in totals))
    out.print(verdicts)
    out.print(
        "weights, gradients and AdamW states are exact for these dtypes; activations and KV cache are estimates "
        "(src/posttrain/telemetry/memory.py). With vLLM rollouts the KV cache is vLLM's own reservation instead."
    )
