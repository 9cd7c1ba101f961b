"""Trainer checkpoints that are either complete or absent.

The Trainer writes `checkpoint-N/` file by file, so a kill mid-save leaves a folder that looks
like a checkpoint and does not load. Every Trainer (GRPO, SFT, GKD) therefore writes into a hidden
staging folder (`trl_adapter.AtomicCheckpoints`), which `publish` fsyncs and renames to
`checkpoint-N` in one step; old checkpoints are renamed away before they are deleted. A folder named
`checkpoint-N` is therefore always whole, and `latest_checkpoint` can trust it.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from posttrain.distributed import on_main

STAGING = ".staging-"  # checkpoint being written: never resumed from, removed on the next start
TRASH = ".trash-"  # checkpoint being deleted
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def checkpoints(checkpoints_dir: Path) -> list[tuple[int, Path]]:
    """(step, folder) of every `checkpoint-N` with its trainer state, oldest first."""
    if not Path(checkpoints_dir).is_dir():
        return []
    found = []
    for child in Path(checkpoints_dir).iterdir():
        match = _CHECKPOINT.match(child.name)
        if match and (child / "trainer_state.json").is_file():
            found.append((int(match.group(1)), child))
    return sorted(found)


def latest_checkpoint(checkpoints_dir: Path) -> Path | None:
    """Newest complete `checkpoint-N`, or None."""
    found = checkpoints(checkpoints_dir)
    return found[-1][1] if found else None


def checkpoint_step(checkpoint: Path) -> int:
    return int(_CHECKPOINT.match(Path(checkpoint).name).group(1))


def remove_leftovers(checkpoints_dir: Path) -> None:
    """Delete staging and trash folders a killed run left behind."""
    if not Path(checkpoints_dir).is_dir():
        return
    for child in Path(checkpoints_dir).iterdir():
        if child.is_dir() and child.name.startswith((STAGING, TRASH)):
            shutil.rmtree(child, ignore_errors=True)


def _fsync_tree(root: Path) -> None:
    for folder, _, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(folder))


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # platforms without directory handles (Windows)
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _discard(folder: Path) -> None:
    """Rename first (atomic), delete second: a kill mid-delete never leaves a half checkpoint-N."""
    trash = folder.with_name(TRASH + folder.name)
    shutil.rmtree(trash, ignore_errors=True)
    folder.rename(trash)
    shutil.rmtree(trash, ignore_errors=True)


def publish(staged: Path, final: Path) -> None:
    """Make the fully written `staged` folder appear as `final` in one rename."""
    _fsync_tree(staged)
    if final.exists():  # saved twice at one step (a signal at a scheduled save)
        _discard(final)
    staged.rename(final)
    _fsync_dir(final.parent)


def rotate(checkpoints_dir: Path, keep: int | None) -> None:
    """Keep the newest `keep` checkpoints."""
    if not keep or keep <= 0:
        return
    for _, folder in checkpoints(checkpoints_dir)[:-keep]:
        _discard(folder)


def resume_point(checkpoints_dir: Path, resume: bool) -> Path | None:
    """The newest complete checkpoint when resuming, else None; clears what a killed save left either way."""
    on_main(lambda: remove_leftovers(checkpoints_dir))
    return latest_checkpoint(checkpoints_dir) if resume else None
