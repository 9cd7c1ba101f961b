"""Training metrics as one JSON object per logged step (`metrics.jsonl`), written as they arrive.

A Trainer callback, so it works for any TRL trainer (GRPO, SFT, GKD). It adds what TRL does
not log: wall time per step and throughput (tokens/s). A resumed stage first drops its rows past
the checkpoint it resumes from (steps a killed run logged but did not checkpoint are re-run), so
every step appears exactly once and belongs to the trajectory that produced the final model.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from transformers import TrainerCallback

from posttrain.io import append_jsonl, atomic_write_text, repair_torn_tail, sync_file

# TRL's names -> the names our metrics.jsonl documents. Anything else is kept as TRL named it.
RENAMES = {
    "learning_rate": "lr",
    "completions/mean_length": "completion_length",
    "reward": "reward_mean",
}


def truncate_stage(path: Path, stage: str, start_step: int) -> list[dict]:
    """Drop `stage`'s rows after `start_step` from `path` (atomically); return the rows it keeps.

    Rows of other stages (distillation writes several into one file) are left alone, as is a
    malformed line anywhere but at the torn end (`repair_torn_tail` handles that one).
    """
    if not path.is_file():
        return []
    out, kept, changed = [], [], False
    for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            out.append(line)
            continue
        if isinstance(row, dict) and row.get("stage") == stage:
            if int(row.get("step", 0)) > start_step:
                changed = True
                continue
            kept.append(row)
        out.append(line)
    if changed:
        atomic_write_text(path, "".join(out))
    return kept


class StepTimer(TrainerCallback):
    """Measures each optimizer step's wall time; other callbacks read `last_step_seconds`."""

    def __init__(self) -> None:
        self.last_step_seconds = 0.0
        self._started = 0.0
        self._since_log = 0.0
        self.steps_since_log = 0

    def on_step_begin(self, args, state, control, **kwargs):
        self._started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.last_step_seconds = time.perf_counter() - self._started
        self._since_log += self.last_step_seconds
        self.steps_since_log += 1

    def take_interval(self) -> tuple[float, int]:
        """Seconds and steps since the previous log, then reset."""
        out = (self._since_log, self.steps_since_log)
        self._since_log, self.steps_since_log = 0.0, 0
        return out


class MetricsLogger(TrainerCallback):
    """Append each training log (not the final summary) to `metrics.jsonl` with timing added."""

    def __init__(self, path: Path, timer: StepTimer, stage: str = "grpo", start_step: int = 0) -> None:
        """`start_step`: the step training starts from (the resumed checkpoint's, 0 when fresh)."""
        self.path = Path(path)
        self.timer = timer
        self.stage = stage
        self.start_step = start_step
        self._last_tokens: float | None = None
        self.rows: list[dict] = []
        self._prepared = False

    def on_train_begin(self, args, state, control, **kwargs):
        # Only the main process touches the file (the others would race on the rewrite).
        if state.is_world_process_zero and not self._prepared:
            repair_torn_tail(self.path)
            self.rows = truncate_stage(self.path, self.stage, self.start_step)
        self._prepared = True

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or "train_runtime" in logs:  # the end-of-training summary is not a step
            return
        seconds, steps = self.timer.take_interval()
        row = to_row(logs, state.global_step, seconds / max(steps, 1), self.stage)
        tokens = logs.get("num_tokens")
        if tokens is not None and self._last_tokens is not None and seconds > 0:
            row["tokens_per_second"] = (float(tokens) - self._last_tokens) / seconds
        if tokens is not None:
            self._last_tokens = float(tokens)
        # The trackers (output.report_to) run after this callback and log what is in `logs`.
        logs.update({key: row[key] for key in ("step_seconds", "tokens_per_second") if key in row})
        self.rows.append(row)
        if state.is_world_process_zero and state.global_step > self.start_step:
            # Fsynced (~1 ms a line) only when a checkpoint follows this log: a resume truncates every
            # row past its checkpoint anyway, so rows must be durable only by the time a checkpoint is.
            append_jsonl(self.path, row, sync=control is None or bool(control.should_save))

    def on_step_end(self, args, state, control, **kwargs):
        if (
            control is not None and control.should_save and state.is_world_process_zero
        ):  # rows of steps that logged before this one
            sync_file(self.path)

    def on_train_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            sync_file(self.path)


def to_row(logs: dict, step: int, step_seconds: float, stage: str) -> dict:
    row: dict = {"step": step, "stage": stage, "time": time.time(), "step_seconds": step_seconds}
    for key, value in logs.items():
        try:
            row[RENAMES.get(key, key)] = float(value)
        except (TypeError, ValueError):
            row[RENAMES.get(key, key)] = value
    return row
