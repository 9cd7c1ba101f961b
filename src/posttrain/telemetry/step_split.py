"""Where a GRPO step's time goes: generation, reward scoring and optimisation, per logged step.

TRL's `GRPOTrainer` samples and scores completions inside `training_step`, so the Trainer only
sees one number per step. `StepSplit.watch(trainer)` wraps two methods of that one trainer
instance (the class, and any other trainer in the process, are untouched):

- generation: `_generate`: sampling the rollouts, decoding them, TRL's completion bookkeeping;
- reward: `_calculate_rewards`: every reward function on the batch (and TRL's gather of scores);
- optimisation: the rest of the optimizer step: the old-policy and reference log-prob passes,
  forward, backward and the optimizer update.

Each logged row gets `time/<stage>_s` (mean seconds per optimizer step since the previous log,
like `step_seconds`) and `time/<stage>_frac` (share of the step). With `steps_per_generation > 1`
TRL generates on some steps only; the means over a log interval spread that out.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from transformers import TrainerCallback

from posttrain.trl_adapter import GRPO_STAGES, watch_grpo_stages

log = logging.getLogger(__name__)

WATCHED = tuple(GRPO_STAGES)  # the stages timed inside TRL's GRPO step (methods in trl_adapter)
STAGES = ("generation", "reward", "optimisation")


class StageClock:
    """Seconds spent inside `clock.stage(name)` blocks, per stage, since the last `take()`."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.clock = clock
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = self.clock()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + self.clock() - start

    def take(self) -> dict[str, float]:
        out, self.seconds = self.seconds, {}
        return out


class StepSplit(TrainerCallback):
    """Adds `time/{generation,reward,optimisation}_s` and `_frac` to each training log.

    Put it before the metrics logger in the callbacks list (it adds to `logs`), and call
    `watch(trainer)` once the trainer exists (`grpo.trainer.build_trainer` does).
    """

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.stages = StageClock(clock)
        self._clock = clock
        self._started = 0.0
        self._reset()

    def watch(self, trainer) -> None:
        for name in watch_grpo_stages(trainer, self.stages.stage):
            log.warning(
                "time split: %s has no %s (TRL changed?); its time counts as optimisation", type(trainer).__name__, name
            )

    def _reset(self) -> None:
        self._sums = dict.fromkeys(WATCHED, 0.0)
        self._step_seconds = 0.0
        self._steps = 0

    def on_step_begin(self, args, state, control, **kwargs):
        self.stages.take()  # time spent between steps (an evaluation) is not a step's
        self._started = self._clock()

    def on_step_end(self, args, state, control, **kwargs):
        self._step_seconds += self._clock() - self._started
        self._steps += 1
        for stage, seconds in self.stages.take().items():
            self._sums[stage] += seconds

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is None or "train_runtime" in logs or not self._steps:
            return
        logs.update(split_logs(self._sums, self._step_seconds, self._steps))
        self._reset()


def split_logs(stage_seconds: dict[str, float], step_seconds: float, steps: int) -> dict[str, float]:
    """Mean seconds per step and share of the step for each stage; optimisation is the remainder.

    >>> split_logs({"generation": 6.0, "reward": 1.0}, 10.0, 2)["time/optimisation_s"]
    1.5
    """
    steps = max(steps, 1)
    seconds = {stage: stage_seconds.get(stage, 0.0) / steps for stage in WATCHED}
    step = step_seconds / steps
    seconds["optimisation"] = max(step - sum(seconds.values()), 0.0)
    out = {}
    for stage in STAGES:
        out[f"time/{stage}_s"] = seconds[stage]
        out[f"time/{stage}_frac"] = seconds[stage] / step if step > 0 else 0.0
    return out


def split_line(logs: dict) -> str:
    """The progress-bar fragment, e.g. "gen 62% rew 3% opt 35%"; "" when the logs hold no split.

    >>> split_line({"time/generation_frac": 0.62, "time/reward_frac": 0.031, "time/optimisation_frac": 0.349})
    'gen 62% rew 3% opt 35%'
    """
    if "time/generation_frac" not in logs:
        return ""
    short = {"generation": "gen", "reward": "rew", "optimisation": "opt"}
    return " ".join(f"{short[s]} {float(logs.get(f'time/{s}_frac', 0.0)):.0%}" for s in STAGES)


def attach(trainer) -> None:
    """Let every `StepSplit` among the trainer's callbacks time this trainer's methods."""
    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, StepSplit):
            callback.watch(trainer)
