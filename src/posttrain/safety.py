"""Crash safety for Trainer runs: stop cleanly on SIGINT/SIGTERM, and never train on NaN/inf.

Both are Trainer callbacks, so GRPO and distillation share them. A signal finishes the current
step, asks the Trainer to save a checkpoint and stop; the run then tells the user how to resume.
A non-finite loss or gradient raises `NonFiniteError` naming the step and the source before the
optimizer applies it, so the last checkpoint on disk is the last good one -- or, when the recipe
says `on_nonfinite: skip`, that one update is dropped (the optimizer sees no gradient, so neither
the weights nor Adam's moments move) and the run goes on, counting what it skipped.
"""

from __future__ import annotations

import logging
import math
import signal
from contextlib import contextmanager

import torch
from transformers import TrainerCallback

from posttrain.errors import Interrupted, PosttrainError

log = logging.getLogger(__name__)


class NonFiniteError(PosttrainError):
    """Training met NaN or inf; the message names the step and where it came from. Exit code 3:
    the input was fine, the training diverged (a script can tell the two apart)."""

    exit_code = 3


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

    @contextmanager
    def guarding(self, checkpoints_dir):
        """Handlers installed around training; afterwards a caught signal becomes `Interrupted`."""
        with self.installed():
            yield self
        if self.stopped_at is not None:
            raise Interrupted(
                f"{self.signal_name} at step {self.stopped_at}: checkpoint saved in {checkpoints_dir}; "
                "run the same command with --resume to continue"
            )

    def on_step_end(self, args, state, control, **kwargs):
        if self.signal_name is not None:
            self.stopped_at = state.global_step
            control.should_save = True
            control.should_training_stop = True
        return control


class NonFiniteGuard(TrainerCallback):
    """Checks gradients before each optimizer step and the logged loss, reward and gradient norm.

    Place it before the metrics logger: with `skip=True` it adds `nonfinite_skipped` (updates
    dropped so far) to each log.
    """

    def __init__(self, skip: bool = False) -> None:
        self.skip = skip
        self.skipped = 0

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        grads = [param.grad for param in model.parameters() if param.grad is not None]
        # One host sync for the whole model: a gradient holding an inf or a NaN has a non-finite L2 norm
        # (so all-finite norms clear every gradient); a huge finite gradient can overflow its norm too,
        # which only sends the check on to the exact per-parameter search. The L2 norm, not the max:
        # on CPU torch's foreach inf-norm runs ~13x slower (3.2 ms against 0.25 ms on bench_grpo's
        # 0.8M-parameter MoE), and a per-parameter isfinite cost ~0.1 ms per tensor.
        if not grads:
            return
        norms = [norm.float() for norm in torch._foreach_norm(grads, 2.0)]
        if len({norm.device for norm in norms}) == 1 and bool(torch.stack(norms).isfinite().all()):
            return
        for name, param in model.named_parameters():
            if param.grad is not None and not torch.isfinite(param.grad).all():
                step = state.global_step + 1
                if not self.skip:
                    raise NonFiniteError(
                        f"step {step}: non-finite gradient in {name}; the optimizer step was not applied and "
                        "the newest checkpoint is the last good one (lower the learning rate, check rewards, "
                        "or set on_nonfinite: skip to drop such updates)"
                    )
                # Optimizers skip parameters without a gradient: no weight or moment update at all.
                model.zero_grad(set_to_none=True)
                self.skipped += 1
                log.warning("step %d: non-finite gradient in %s; update skipped (%d so far)", step, name, self.skipped)
                return

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is None:
            return
        if self.skip:
            logs["nonfinite_skipped"] = self.skipped
            return
        for key in ("loss", "reward", "grad_norm"):
            value = logs.get(key)
            if isinstance(value, int | float) and not math.isfinite(value):
                raise NonFiniteError(
                    f"step {state.global_step}: {key} is {value}; the newest checkpoint is the last good one"
                )
