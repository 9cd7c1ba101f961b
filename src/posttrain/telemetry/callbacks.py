"""The Trainer callbacks every training stage runs with (GRPO, sequence KD, logit KD), in their order.

Timing first (the step clock, and for GRPO the generation/reward/optimisation split), memory/GPU
readings, the stage's routing callbacks (MoE balancing and telemetry add `moe/*` keys to the logs),
the NaN/inf guard, then the metrics.jsonl writer and the progress line, which read what the others
added, and last the SIGINT/SIGTERM stop (returned too: training runs inside `stop.guarding(...)`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from posttrain.safety import GracefulStop, NonFiniteGuard
from posttrain.telemetry.metrics_log import MetricsLogger, StepTimer
from posttrain.telemetry.resources import ResourceMonitor
from posttrain.telemetry.step_split import StepSplit
from posttrain.telemetry.trainer_progress import RichProgressCallback


@dataclass
class StageCallbacks:
    callbacks: list
    stop: GracefulStop
    logger: MetricsLogger


def stage_callbacks(
    metrics_path: Path,
    stage: str,
    console: Console,
    title: str,
    *,
    start_step: int = 0,
    on_nonfinite: str = "stop",
    routing: Sequence = (),
    accuracy_reward: str | None = None,
    split_step: bool = False,
) -> StageCallbacks:
    """The callbacks of one stage writing `metrics_path` from `start_step`."""
    timer, stop = StepTimer(), GracefulStop()
    timing = [timer, StepSplit()] if split_step else [timer]
    logger = MetricsLogger(metrics_path, timer, stage=stage, start_step=start_step)
    guard = NonFiniteGuard(skip=on_nonfinite == "skip")
    progress = RichProgressCallback(console, title, accuracy_reward=accuracy_reward)
    return StageCallbacks([*timing, ResourceMonitor(), *routing, guard, logger, progress, stop], stop, logger)
