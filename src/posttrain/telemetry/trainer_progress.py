"""Rich progress for Trainer runs: replaces tqdm with step, reward, accuracy, tokens/s and ETA."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import Progress
from transformers import TrainerCallback

from posttrain.telemetry.progress import format_stats, make_progress
from posttrain.telemetry.routing_stats import routing_line
from posttrain.telemetry.step_split import split_line


class RichProgressCallback(TrainerCallback):
    """Replaces the Trainer's tqdm bar; shows the latest reward/accuracy and tokens/s."""

    def __init__(self, console: Console, description: str, accuracy_reward: str | None = "accuracy") -> None:
        self.console = console
        self.description = description
        self.accuracy_key = f"rewards/{accuracy_reward}/mean" if accuracy_reward else None
        self.progress: Progress | None = None
        self.task = None
        self._stats = ""
        self._last_tokens: float | None = None
        self._last_time: float | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        self.progress = make_progress(self.console)
        self.progress.start()
        self.task = self.progress.add_task(
            self.description, total=state.max_steps, completed=state.global_step, stats=""
        )

    def on_step_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.update(self.task, completed=state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.progress is None or not logs:
            return
        stats = format_stats(logs, self.accuracy_key)
        moe = routing_line(logs)
        if moe:
            stats += f"  {moe}"
        split = split_line(logs)
        if split:
            stats += f"  {split}"
        now, tokens = time.perf_counter(), logs.get("num_tokens")
        if tokens is not None and self._last_tokens is not None and now > self._last_time:
            stats += f"  {(float(tokens) - self._last_tokens) / (now - self._last_time):,.0f} tok/s"
        if tokens is not None:
            self._last_tokens, self._last_time = float(tokens), now
        if stats:
            self.progress.update(self.task, stats=stats)

    def on_train_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
