"""Experiment trackers (`output.report_to`): TensorBoard, Weights & Biases, Trackio, MLflow.

The trackers are transformers' own integration callbacks, switched on through each stage's TRL config
(`report_to`). Three things are ours:
- where: TensorBoard writes each stage to run/runs/<stage> (warmstart, grpo, sequence_kd, logit_kd);
- order: the Trainer puts its trackers before the callbacks a run adds, so they would log TRL's keys
  but not the ones our callbacks add to the same logs (MoE routing, step split, memory, step time).
  `trackers_last` moves them behind ours, so a tracker records every key metrics.jsonl has;
- the run's own figures (held-out before/after, stage times, cost), which come after training ends:
  `report_summary` logs them as a `summary` run (runs/summary), to the trackers alone, so metrics.jsonl
  keeps one row per logged step.
"""

from __future__ import annotations

import netrc
import os
from collections.abc import Mapping, Sequence
from importlib.util import find_spec
from pathlib import Path

from transformers import TrainerControl, TrainerState, TrainingArguments
from transformers.integrations import TensorBoardCallback, get_reporting_integration_callbacks

from posttrain.errors import ConfigError

# tracker -> (module that must import, how to install it)
TRACKERS = {
    "tensorboard": ("tensorboard", "pip install tensorboard, or pip install 'posttrain[tensorboard]'"),
    "wandb": ("wandb", "pip install wandb"),
    "trackio": ("trackio", "pip install trackio"),
    "mlflow": ("mlflow", "pip install mlflow"),
}


def check_trackers(names: Sequence[str], key: str = "output.report_to") -> None:
    """Before any work: each tracker is installed, and W&B can log (a login, or offline mode)."""
    for name in names:
        module, install = TRACKERS[name]
        if find_spec(module) is None:
            raise ConfigError(f"{key}: {name} is not installed ({install})")
    if "wandb" in names and not _wandb_can_log():
        raise ConfigError(
            f"{key}: wandb has no login here and would fail after training starts; run `wandb login`, "
            "set WANDB_API_KEY, or log locally with WANDB_MODE=offline"
        )


def _wandb_can_log() -> bool:
    if os.environ.get("WANDB_MODE", "").lower() in {"offline", "disabled", "dryrun"} or os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def _trackers(trainer) -> list:
    kinds = tuple(get_reporting_integration_callbacks(trainer.args.report_to))
    return [cb for cb in trainer.callback_handler.callbacks if kinds and isinstance(cb, kinds)]


def trackers_last(trainer, log_dir: Path) -> None:
    """Run the trainer's trackers after every other callback, so they see the keys ours add to the logs;
    TensorBoard writes to `log_dir` (run/runs/<stage>: the stage's output_dir may be a scratch folder)."""
    for tracker in _trackers(trainer):
        if isinstance(tracker, TensorBoardCallback):
            tracker.logging_dir = str(log_dir)
        trainer.remove_callback(tracker)
        trainer.add_callback(tracker)


def report_summary(report_to: Sequence[str], log_dir: Path, values: Mapping[str, float], step: int) -> None:
    """Log a run's own figures (held-out before/after, times, cost: known only after training) to each tracker
    as a `summary` run of its own at `step`, then close it. Only the trackers get them: metrics.jsonl keeps
    one row per logged training step."""
    if not report_to:
        return
    numbers = {key: float(value) for key, value in values.items() if isinstance(value, int | float)}
    args = TrainingArguments(output_dir=str(log_dir), report_to=list(report_to))
    state, control = TrainerState(global_step=step), TrainerControl()
    for kind in get_reporting_integration_callbacks(list(report_to)):
        tracker = kind()
        if isinstance(tracker, TensorBoardCallback):
            tracker.logging_dir = str(log_dir)
        tracker.on_log(args, state, control, logs=dict(numbers))
        tracker.on_train_end(args, state, control)


def summary_scalars(summary: Mapping, keys: Sequence[str]) -> dict[str, float]:
    """The numbers under `keys` of a summary.json, flattened to 'key/sub/leaf' names (None and text left out)."""
    out: dict[str, float] = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, bool) or value is None:
            return
        if isinstance(value, int | float):
            out[prefix] = float(value)
        elif isinstance(value, Mapping):
            for sub, inner in value.items():
                walk(f"{prefix}/{sub}", inner)

    for key in keys:
        walk(key, summary.get(key))
    return out
