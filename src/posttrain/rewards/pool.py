"""Opt-in process pool for scoring large batches, so a slow batch never stalls the trainer.

Small batches run inline (a pool round trip costs more than ~100 us per pair of checking).
Large ones are split into chunks and scored by worker processes started with "spawn":
forking a trainer process that holds CUDA state is unsafe, and the workers only import
``posttrain.rewards`` (no torch).  A chunk that misses its deadline scores None and the
pool is replaced, so one pathological completion cannot block a training step.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import pickle
import threading
import warnings
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

DEFAULT_MIN_BATCH = 256
DEFAULT_TIMEOUT_S = 30.0

_lock = threading.Lock()
_executor: ProcessPoolExecutor | None = None
_executor_size = 0


def _get_executor(processes: int) -> ProcessPoolExecutor:
    global _executor, _executor_size
    with _lock:
        if _executor is None or _executor_size != processes:
            if _executor is not None:
                _executor.shutdown(wait=False, cancel_futures=True)
            context = multiprocessing.get_context("spawn")
            _executor = ProcessPoolExecutor(max_workers=processes, mp_context=context)
            _executor_size = processes
        return _executor


def _discard_executor() -> None:
    global _executor
    with _lock:
        if _executor is not None:
            _executor.shutdown(wait=False, cancel_futures=True)
        _executor = None


def shutdown() -> None:
    """Stop the worker processes (they are also stopped at interpreter exit)."""
    _discard_executor()


def _call(func: Callable, completions: list, columns: dict) -> list:
    return list(func(completions, **columns))


def _chunk_columns(columns: dict, n: int, start: int, stop: int) -> dict:
    out = {}
    for key, value in columns.items():
        if isinstance(value, (list, tuple)) and len(value) == n:
            out[key] = list(value[start:stop])
        else:
            out[key] = value
    return out


def _picklable(func: Callable) -> bool:
    try:
        pickle.dumps(func)
        return True
    except Exception:
        return False


def parallel(
    func: Callable,
    processes: int | None = None,
    min_batch: int = DEFAULT_MIN_BATCH,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    name: str | None = None,
) -> Callable:
    """*func* (TRL reward contract) scored in worker processes for batches >= *min_batch*.

    Rewards that need the whole group (``groupwise = True``, e.g. the Kimi length reward)
    and functions that cannot be pickled (file plug-ins) run inline.
    """
    processes = processes or max(1, min(8, (os.cpu_count() or 2) - 1))
    inline = getattr(func, "groupwise", False) or not _picklable(func)

    @functools.wraps(func)
    def reward(completions=None, **columns):
        n = len(completions)
        if inline or n < min_batch or processes < 2:
            return func(completions, **columns)
        size = -(-n // processes)
        bounds = [(i, min(n, i + size)) for i in range(0, n, size)]
        try:
            executor = _get_executor(processes)
            futures = [
                executor.submit(_call, func, list(completions[a:b]), _chunk_columns(columns, n, a, b))
                for a, b in bounds
            ]
        except Exception as exc:  # a broken pool must not stop training: score inline
            warnings.warn(f"reward pool unavailable ({exc}); scoring inline", RuntimeWarning, stacklevel=2)
            _discard_executor()
            return func(completions, **columns)
        scores: list = []
        for (a, b), future in zip(bounds, futures):
            try:
                scores.extend(future.result(timeout=timeout_s))
            except FutureTimeout:
                warnings.warn(
                    f"reward chunk timed out after {timeout_s}s; scoring it None", RuntimeWarning, stacklevel=2
                )
                _discard_executor()
                scores.extend([None] * (b - a))
            except Exception:
                scores.extend(func(completions[a:b], **_chunk_columns(columns, n, a, b)))
        return scores

    if name:
        reward.__name__ = reward.__qualname__ = name
    return reward
