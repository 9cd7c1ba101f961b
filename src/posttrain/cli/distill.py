"""`posttrain distill`: not built yet — it says so and exits non-zero rather than pretend."""

from __future__ import annotations

from pathlib import Path

import typer

from posttrain.cli.common import run_or_exit
from posttrain.errors import NotBuiltError


def distill(
    recipe: Path = typer.Argument(None, help="YAML recipe with a distill: section."),
    teacher: str = typer.Option(None, "--teacher", help="Teacher checkpoint or Hub name."),
    student: str = typer.Option(None, "--student", help="Student checkpoint, Hub name or builder (build:tiny-dense)."),
) -> None:
    """Distil a teacher's reasoning into a smaller student (traces, rejection sampling, KD)."""

    def refuse():
        raise NotBuiltError("`posttrain distill` is not built yet in this version; see the project's issues")

    run_or_exit(refuse)
