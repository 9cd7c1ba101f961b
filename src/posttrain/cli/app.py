"""`posttrain` entry point: mounts each command and turns user errors into one message + exit code."""

from __future__ import annotations

import sys

import typer

from posttrain import __version__
from posttrain.cli import cost, distill, evaluate, grpo, plan
from posttrain.errors import PosttrainError

app = typer.Typer(
    name="posttrain",
    help="GRPO and reasoning distillation for Mixture-of-Experts models, with rule-based rewards.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,  # posttrain --install-completion (bash, zsh, fish, PowerShell)
)
app.command("grpo")(grpo.grpo)
app.command("distill")(distill.distill)
app.command("eval")(evaluate.eval_command)
app.command("cost")(cost.cost)
app.command("plan")(plan.plan)


def _mount_rewards() -> None:
    from posttrain.cli.rewards import app as rewards_app

    app.add_typer(rewards_app, name="rewards", help="List reward functions and score completions.")


_mount_rewards()


def _version(value: bool) -> None:
    if value:
        typer.echo(f"posttrain {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """GRPO and reasoning distillation for Mixture-of-Experts models."""


def main() -> None:
    """Console-script entry: a PosttrainError ends as `error: ...` on stderr, not a traceback.

    Commands already render their errors through `run_or_exit`; this catch is the safety net for
    anything raised outside it. Click keeps handling usage errors and exit codes (standalone mode).
    """
    try:
        app()
    except PosttrainError as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(e.exit_code)
