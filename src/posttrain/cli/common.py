"""Pieces every command shares: the console, option types, and running a step with clean errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import typer
from rich.console import Console

from posttrain.errors import PosttrainError

T = TypeVar("T")

SET_HELP = "Override a recipe value, e.g. --set grpo.learning_rate=1e-5 (repeatable)."


def console() -> Console:
    return Console(stderr=False, highlight=False)


def run_or_exit(step: Callable[[], T]) -> T:
    """Run `step`; a PosttrainError becomes `error: ...` on stderr and its exit code.

    Commands call this themselves so the behaviour is the same under CliRunner (tests),
    the console script and `python -m posttrain`.
    """
    try:
        return step()
    except PosttrainError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(e.exit_code) from None
