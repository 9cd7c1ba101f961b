"""Cost accounting: estimate a planned run from FLOPs, and price a finished one from device-hours.

Training FLOPs follow the usual 6 · N_active · tokens (forward 2, backward 4 per parameter per
token; for an MoE only the parameters a token activates count). Generation is a forward pass
only, 2 · N_active · tokens, but decoding runs far below peak, so it gets its own utilisation.
Device-hours = FLOPs / (peak FLOP/s · utilisation · 3600); dollars = device-hours · price.
"""

from __future__ import annotations

from dataclasses import dataclass

# Dense bf16 / fp8 tensor peaks in FLOP/s, from vendor datasheets (no sparsity).
HARDWARE_PEAK: dict[str, dict[str, float]] = {
    "h100": {"bf16": 989e12, "fp8": 1979e12},
    "h800": {"bf16": 989e12, "fp8": 1979e12},
    "h200": {"bf16": 989e12, "fp8": 1979e12},
    "a100": {"bf16": 312e12},
    "l40s": {"bf16": 362e12, "fp8": 733e12},
    "b200": {"bf16": 2250e12, "fp8": 4500e12},
}


@dataclass(frozen=True)
class Stage:
    name: str
    train_tokens: float = 0.0
    generated_tokens: float = 0.0


@dataclass(frozen=True)
class StageCost:
    name: str
    flops: float
    device_hours: float
    usd: float


def stage_flops(active_params: float, stage: Stage) -> tuple[float, float]:
    """(training FLOPs, generation FLOPs) for one stage."""
    return 6.0 * active_params * stage.train_tokens, 2.0 * active_params * stage.generated_tokens


def estimate(
    active_params: float,
    stages: list[Stage],
    peak_flops: float,
    utilisation: float = 0.35,
    generation_utilisation: float = 0.1,
    usd_per_device_hour: float = 2.0,
) -> list[StageCost]:
    """Device-hours and dollars per stage for a model with `active_params` per token."""
    if not 0 < utilisation <= 1 or not 0 < generation_utilisation <= 1:
        raise ValueError("utilisation must be in (0, 1]")
    out = []
    for stage in stages:
        train, gen = stage_flops(active_params, stage)
        seconds = train / (peak_flops * utilisation) + gen / (peak_flops * generation_utilisation)
        hours = seconds / 3600.0
        out.append(StageCost(stage.name, train + gen, hours, hours * usd_per_device_hour))
    return out


def implied_utilisation(active_params: float, tokens: float, device_hours: float, peak_flops: float) -> float:
    """Model FLOPs utilisation a reported figure implies: 6·N·D / (hours · 3600 · peak)."""
    return 6.0 * active_params * tokens / (device_hours * 3600.0 * peak_flops)


def price(device_seconds: dict[str, float], num_devices: int, usd_per_device_hour: float) -> dict:
    """What a finished run cost: device-hours and dollars per stage (wall seconds × devices)."""
    stages = {
        name: {
            "device_hours": round(s * num_devices / 3600.0, 6),
            "usd": round(s * num_devices / 3600.0 * usd_per_device_hour, 6),
        }
        for name, s in device_seconds.items()
    }
    total_hours = sum(v["device_hours"] for v in stages.values())
    return {
        "usd_per_device_hour": usd_per_device_hour,
        "num_devices": num_devices,
        "stages": stages,
        "device_hours": round(total_hours, 6),
        "usd": round(total_hours * usd_per_device_hour, 6),
    }
