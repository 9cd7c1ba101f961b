"""Crash safety for Trainer runs: stop cleanly on SIGINT/SIGTERM, and never train on NaN/inf.

Both are Trainer callbacks, so GRPO and distillation share them. A signal finishes the current
step, asks the Trainer to save a checkpoint and stop; the run then tells the user how to resume.
A non-finite loss or gradient raises `NonFiniteError` naming the step and the source before the
optimizer applies it, so the last checkpoint on disk is the last good one.
"""

from __future__ import annotations

import math
import signal
from contextlib import contextmanager

from transformers import TrainerCallback

from posttrain.errors import PosttrainError


class NonFiniteError(PosttrainError):
    """Training met NaN or inf; the message names the step and where it came from."""


class GracefulStop(TrainerCallback):
    """Turns SIGINT/SIGTERM into 'save a checkpoint at the end of this step, then stop'."""

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self.stopped_at: int | None = None

    @contextmanager
    def installed(self):
        """Install the handlers for the duration of training (main thread only, as Python requires)."""
        previous = {}
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, self._handle)
        except ValueError:  # not the main thread (e.g. a notebook worker): run without handlers
            previous = {}
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _handle(self, signum, frame) -> None:
        if self.signal_name is not None:  # a second signal: the user insists
            raise KeyboardInterrupt
        self.signal_name = signal.Signals(signum).name

    def on_step_end(self, args, state, control, **kwargs):
        if self.signal_name is not None:
            self.stopped_at = state.global_step
            control.should_save = True
            control.should_training_stop = True
        return control


class NonFiniteGuard(TrainerCallback):
    """Checks gradients before each optimizer step and the loss at each log."""

    def __init__(self, model) -> None:
        self.model = model

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        import torch

        for name, param in self.model.named_parameters():
            if param.grad is not None and not torch.isfinite(param.grad).all():
                raise NonFiniteError(
                    f"step {state.global_step + 1}: non-finite gradient in {name}; the optimizer step was not "
                    "applied and the newest checkpoint is the last good one (lower the learning rate, or check rewards)"
                )

    def on_log(self, args, state, control, logs=None, **kwargs):
        for key in ("loss", "reward", "grad_norm"):
            value = (logs or {}).get(key)
            if isinstance(value, int | float) and not math.isfinite(value):
                raise NonFiniteError(f"step {state.global_step}: {key} is {value}; the newest checkpoint is the last good one")
