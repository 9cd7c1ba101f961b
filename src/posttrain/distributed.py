"""Rank awareness under `accelerate launch`: which process writes, and how the others wait for it.

accelerate and the Trainer do the distribution (process group, DDP / DeepSpeed / FSDP); this module
only lets a run's own steps behave under several processes: work whose result is a file (the run
folder, built models, recipe.yaml, summary.json, plots) runs on the main process while the others
wait, and sampling (held-out evals, teacher traces) is shared out and gathered back in order. In a
single process every function here is a plain call: no process group, nothing waits.

accelerate is imported inside the functions that use it: the CLI reads its rank from this module,
and `--help` and `--dry-run` answer in a fraction of a second without accelerate's 2 s import.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import TypeVar

T = TypeVar("T")

# The Trainer's default `ddp_timeout`: the process group is created here, before any Trainer, so
# this is the longest one process's own work (a save, a top-k pass) may keep the others waiting.
TIMEOUT = timedelta(minutes=30)


def state():
    """accelerate's `PartialState`, created on first use from the launcher's environment.

    CPU processes (`ACCELERATE_USE_CPU`) get gloo, as the Trainer decides for the same environment.
    """
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"), timeout=TIMEOUT)


def world_size() -> int:
    return state().num_processes


def is_main() -> bool:
    """True in a single process, and on rank 0 of a launch."""
    return state().is_main_process


def launch_rank() -> int:
    """This process's rank as the launcher set it, read without importing torch (for the CLI's
    console, which exists before any model code runs). The variables accelerate itself reads."""
    for name in ("RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK"):
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 0


def shards_weights() -> bool:
    """Whether the launch's engine splits the parameters themselves across processes (DeepSpeed
    ZeRO-3, FSDP), as `accelerate launch` tells its processes; False in a plain process."""
    if os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true":
        return True
    deepspeed = os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true"
    return deepspeed and os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE") == "3"


def barrier() -> None:
    """Wait until every process gets here (a no-op in one process)."""
    state().wait_for_everyone()


def on_main(step: Callable[[], T]) -> T:
    """Run `step` on the main process only; every process returns its result once it is done.

    For steps that write (prepare the run folder, build a model, save one): the others wait, then
    find the files in place. A `PosttrainError` raised by `step` is raised on every process, so all
    of them stop with the same message and exit code (printed once, by the main process). Any other
    exception is a bug: it ends the main process with its traceback, and the launcher stops the rest.
    """
    from posttrain.errors import PosttrainError

    if world_size() == 1:
        return step()
    from accelerate.utils import broadcast_object_list

    payload: list = [None]
    error: PosttrainError | None = None
    if is_main():
        try:
            payload = [("ok", step())]
        except PosttrainError as e:
            error, payload = e, [("error", (str(e), e.exit_code))]
    broadcast_object_list(payload, from_process=0)
    kind, value = payload[0]
    if kind == "ok":
        return value
    if error is None:  # not the main process: the same message and exit code
        error = PosttrainError(value[0])
        error.exit_code = value[1]
        error.shown_by_main = True  # `run_or_exit` leaves the printing to the main process
    raise error


def share(n: int) -> list[int]:
    """This process's indices of `n` items: a contiguous block, all blocks equally long (the last item
    repeats as padding), so engines that run in lockstep (FSDP) call the model as often on every rank."""
    if world_size() == 1 or n == 0:
        return list(range(n))
    with state().split_between_processes(list(range(n)), apply_padding=True) as mine:
        return list(mine)


def gather_shares(indices: Sequence[int], items: Sequence) -> list:
    """Every process's `items` (made for its `share` `indices`), back in index order, padding dropped."""
    if world_size() == 1:
        return list(items)
    from accelerate.utils import gather_object

    by_index = dict(gather_object(list(zip(indices, items))))
    return [by_index[i] for i in sorted(by_index)]


def sum_counts(counts: dict[str, int]) -> dict[str, int]:
    """Per-name counts added up over processes (each counts only what it scored)."""
    if world_size() == 1:
        return counts
    from accelerate.utils import gather_object

    total: dict[str, int] = {}
    for part in gather_object([counts]):
        for name, n in part.items():
            total[name] = total.get(name, 0) + n
    return total


def gathered_state_dict(trainer) -> dict | None:
    """A trained model's full weights where the engine shards them across processes (DeepSpeed
    ZeRO-3, FSDP), via accelerate: every process must call it. None where each process already holds
    them all (one process, DDP, ZeRO-1/2), so the model saves its own weights as usual."""
    plugin = trainer.accelerator.state.deepspeed_plugin
    if not (trainer.is_fsdp_enabled or (plugin is not None and plugin.zero_stage == 3)):
        return None
    return trainer.accelerator.get_state_dict(trainer.model_wrapped)
