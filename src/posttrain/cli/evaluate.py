"""`posttrain eval`: not built yet — it says so and exits non-zero rather than pretend."""

from __future__ import annotations

import typer

from posttrain.cli.common import run_or_exit
from posttrain.errors import NotBuiltError


def eval_command(
    model: str = typer.Option(None, "--model", help="Checkpoint or Hub name to evaluate."),
    data: str = typer.Option(None, "--data", help="Built-in task, JSONL/Parquet file, or Hub dataset."),
) -> None:
    """Score a model or pre-generated completions: pass@k, maj@k, format rate, lengths."""

    def refuse():
        raise NotBuiltError("`posttrain eval` is not built yet in this version; see the project's issues")

    run_or_exit(refuse)
