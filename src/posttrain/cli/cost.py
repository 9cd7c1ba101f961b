"""`posttrain cost`: what a planned run will cost, before it starts (FLOPs -> device-hours -> dollars)."""

from __future__ import annotations

import typer

from posttrain.cli.common import console, run_or_exit


def cost(
    stage: list[str] = typer.Option(
        ..., "--stage", help="NAME:TRAIN_TOKENS[:GENERATED_TOKENS], e.g. grpo:2e9:6e9 (repeatable)."
    ),
    active_params: float = typer.Option(
        None, "--active-params", help="Parameters active per token (MoE: shared + top-k experts)."
    ),
    model: str = typer.Option(
        None, "--model", help="Count parameters from this checkpoint's config instead (no weights loaded)."
    ),
    hardware: str = typer.Option("h100", "--hardware", help="Peak FLOP/s of: h100, h800, h200, a100, l40s, b200."),
    precision: str = typer.Option("bf16", "--precision", help="bf16 or fp8 peak."),
    utilisation: float = typer.Option(0.35, "--utilisation", min=0.001, max=1.0, help="Assumed training MFU."),
    generation_utilisation: float = typer.Option(
        0.10, "--generation-utilisation", min=0.001, max=1.0, help="Assumed MFU while sampling."
    ),
    usd_per_gpu_hour: float = typer.Option(2.0, "--usd-per-gpu-hour", min=0.0, help="Price of one GPU-hour."),
) -> None:
    """Estimate GPU-hours and dollars per stage from model size, tokens and an assumed utilisation."""
    from rich.table import Table

    from posttrain.telemetry.cost import HARDWARE_PEAK, estimate

    def plan():
        from posttrain.errors import PosttrainError

        peaks = HARDWARE_PEAK.get(hardware.lower())
        if peaks is None or precision not in peaks:
            raise PosttrainError(
                f"no {precision} peak for {hardware!r}; known: "
                + ", ".join(f"{h} ({'/'.join(p)})" for h, p in HARDWARE_PEAK.items())
            )
        n_active = active_params or _count_active(model)
        return n_active, estimate(
            n_active,
            [_parse_stage(s) for s in stage],
            peaks[precision],
            utilisation,
            generation_utilisation,
            usd_per_gpu_hour,
        )

    n_active, costs = run_or_exit(plan)
    table = Table(
        title=f"{n_active / 1e9:.2f}B active params on {hardware} {precision}, MFU {utilisation:.0%} (generation {generation_utilisation:.0%}), ${usd_per_gpu_hour}/GPU-h"
    )
    for col in ("stage", "PFLOPs", "GPU-hours", "USD"):
        table.add_column(col, justify="right" if col != "stage" else "left")
    for c in costs:
        table.add_row(c.name, f"{c.flops / 1e15:,.1f}", f"{c.device_hours:,.1f}", f"{c.usd:,.0f}")
    table.add_row(
        "total",
        f"{sum(c.flops for c in costs) / 1e15:,.1f}",
        f"{sum(c.device_hours for c in costs):,.1f}",
        f"{sum(c.usd for c in costs):,.0f}",
    )
    console().print(table)


def _parse_stage(text: str):
    from posttrain.errors import PosttrainError
    from posttrain.telemetry.cost import Stage

    parts = text.split(":")
    try:
        if not 2 <= len(parts) <= 3 or not parts[0]:
            raise ValueError
        return Stage(parts[0], float(parts[1]), float(parts[2]) if len(parts) == 3 else 0.0)
    except ValueError:
        raise PosttrainError(
            f"--stage {text!r}: expected NAME:TRAIN_TOKENS[:GENERATED_TOKENS], e.g. grpo:2e9:6e9"
        ) from None


def _count_active(model: str | None) -> float:
    from posttrain.errors import PosttrainError

    if not model:
        raise PosttrainError("give --active-params or --model")
    from posttrain.config.schema import ModelConfig
    from posttrain.models.shape import model_shape  # the config alone, as `posttrain plan` reads it

    return float(model_shape(ModelConfig(name_or_path=model)).active)
