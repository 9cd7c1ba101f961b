"""Rich progress for training and sampling: step, reward, accuracy, tokens/s and ETA on one line."""

from __future__ import annotations

from contextlib import contextmanager

import datasets
from huggingface_hub.utils import disable_progress_bars
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from transformers.trainer_callback import PrinterCallback, ProgressCallback
from transformers.utils import logging as hf_logging


def make_progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[stats]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


@contextmanager
def progress_task(console: Console, description: str, total: int):
    """A one-off progress bar; yields `advance(k)` for loops outside a Trainer (sampling)."""
    with make_progress(console) as progress:
        task = progress.add_task(description, total=total, stats="")
        yield lambda k=1: progress.advance(task, k)


def format_stats(logs: dict, accuracy_key: str | None) -> str:
    parts = []
    if "reward" in logs:
        parts.append(f"reward {float(logs['reward']):.3f}")
    if accuracy_key and accuracy_key in logs:
        parts.append(f"acc {float(logs[accuracy_key]):.2f}")
    if "loss" in logs:
        parts.append(f"loss {float(logs['loss']):.4f}")
    return "  ".join(parts)


def quiet_libraries() -> None:
    """Silence the libraries' own tqdm bars (dataset maps, shard writes): ours say what matters."""

    datasets.disable_progress_bars()
    disable_progress_bars()
    hf_logging.disable_progress_bar()


def quiet_trainer(trainer) -> None:
    """Our rich progress and metrics.jsonl replace the Trainer's printed dicts and tqdm bar."""

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
