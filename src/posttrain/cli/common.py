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
    # soft_wrap: paths and commands in messages stay on one line, so they can be copied.
    # Under `accelerate launch` only the main process prints; the others would repeat every line.
    from posttrain.distributed import launch_rank

    return Console(stderr=False, highlight=False, soft_wrap=True, quiet=launch_rank() != 0)


def run_or_exit(step: Callable[[], T]) -> T:
    """Run `step`; a PosttrainError becomes `error: ...` on stderr and its exit code.

    Commands call this themselves so the behaviour is the same under CliRunner (tests),
    the console script and `python -m posttrain`.
    """
    from posttrain.distributed import launch_rank

    try:
        return step()
    except PosttrainError as e:
        rank = launch_rank()
        if rank == 0:
            typer.echo(f"error: {e}", err=True)
        elif not getattr(e, "shown_by_main", False):  # this process's own problem (a path missing on its node)
            typer.echo(f"error (rank {rank}): {e}", err=True)
        raise typer.Exit(e.exit_code) from None


def check_rewards(rewards) -> None:
    """Recipe reward entries must resolve (names, plug-ins, kwargs) before any model loads."""
    from pathlib import Path

    from posttrain.errors import ConfigError
    from posttrain.rewards.registry import validate

    problems = validate(rewards, base_dir=Path.cwd())
    if problems:
        lines = "\n".join(f"  - rewards: {p}" for p in problems)
        raise ConfigError(f"recipe is not valid, found {len(problems)} problem(s):\n{lines}")


def show_reward_errors(out: Console, summary: dict) -> None:
    """After a run: which rewards failed on how many rows (each reward's first error was logged)."""
    errors = {name: n for name, n in (summary.get("reward_errors") or {}).items() if n}
    if errors:
        listed = ", ".join(f"{name} on {n} row(s)" for name, n in errors.items())
        out.print(
            f"[yellow]warning:[/yellow] rewards failed and scored None: {listed} (each first error is logged "
            "above; `rewards.strict: true` makes them fatal)"
        )


def show_resolved(out: Console, cfg, label: str) -> None:
    """`--dry-run`: the recipe as it will run, overrides applied."""
    import yaml

    out.print(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    out.print(f"[green]{label}: recipe is valid[/green]")
