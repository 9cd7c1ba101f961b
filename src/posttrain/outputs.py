"""The run directory: refuse to clobber a finished run, record the resolved recipe (main process only)."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from posttrain.distributed import on_main
from posttrain.errors import PosttrainError
from posttrain.io import atomic_write_text

# Files whose presence means a run already wrote here.
RUN_MARKERS = ("metrics.jsonl", "summary.json", "recipe.yaml")


def prepare_output_dir(path: str | Path, *, resume: bool, overwrite: bool) -> Path:
    """Create `path`; an existing run there needs `--resume` (continue) or `--overwrite` (replace).

    Under `accelerate launch` the main process checks and prepares the folder; the others wait for it.
    """
    return on_main(lambda: _prepare(Path(path), resume=resume, overwrite=overwrite))


def _prepare(out: Path, *, resume: bool, overwrite: bool) -> Path:
    if resume and overwrite:
        raise PosttrainError("--resume and --overwrite contradict each other; choose one")
    has_run = out.is_dir() and any((out / m).exists() for m in RUN_MARKERS)
    if has_run and overwrite:
        shutil.rmtree(out)
    elif has_run and not resume:
        raise PosttrainError(
            f"{out} already holds a run; pass --resume to continue it, --overwrite to replace it, "
            "or --set output.dir=ANOTHER_DIR"
        )
    out.mkdir(parents=True, exist_ok=True)
    return out


def write_recipe(out: Path, recipe) -> None:
    """The validated recipe, overrides applied, so the run can be reproduced from its folder."""
    data = recipe.model_dump(mode="json")
    on_main(lambda: atomic_write_text(out / "recipe.yaml", yaml.safe_dump(data, sort_keys=False)))
