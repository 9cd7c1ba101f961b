"""Trainer checkpoints that are either complete or absent.

The Trainer writes `checkpoint-N/` file by file, so a kill mid-save leaves a folder that looks
like a checkpoint and does not load. `AtomicCheckpoints` makes every Trainer (GRPO, SFT, GKD)
write into a hidden staging folder, fsync it, and rename it to `checkpoint-N` in one step; old
checkpoints are renamed away before they are deleted. A folder named `checkpoint-N` is
therefore always whole, and `latest_checkpoint` can trust it. A run resumed from the checkpoint of
its last step trains nothing more. `restore_weights` reads a full checkpoint's weights back the way
`from_pretrained` does, for MoE models whose experts the Trainer's own resume would drop.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

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


class AtomicCheckpoints:
    """Trainer mixin (put it before the Trainer class): checkpoints appear complete or not at all,
    and resuming a finished run trains no further.

    The Trainer writes the checkpoint into `.staging-N/checkpoint-N` (model, optimizer, scheduler,
    RNG states, trainer state -- everything it normally writes), then the main process fsyncs it
    and renames it into place. Every rank waits for the rename, as they wait for the Trainer's own
    save under DDP, DeepSpeed and FSDP.
    """

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        # transformers checks `max_steps` only after an optimizer step: resumed from the checkpoint
        # of the last step (a run killed between that save and its final outputs), the epoch loop
        # would train one step more whenever max_steps is not a whole number of epochs. No batches
        # means no step; the callbacks still see the training begin and end.
        if self.state.max_steps > 0 and self.state.global_step >= self.state.max_steps:
            return [], None
        return super().get_batch_samples(epoch_iterator, num_batches, device)

    def _save_checkpoint(self, model, trial):
        from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

        run_dir = Path(self._get_output_dir(trial=trial))
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        staging = run_dir / f"{STAGING}{self.state.global_step}"
        if self.args.should_save:
            shutil.rmtree(staging, ignore_errors=True)
        self.accelerator.wait_for_everyone()
        # The Trainer (and TRL's override) derive the checkpoint folder from `_get_output_dir`.
        self._get_output_dir = lambda trial=None: str(staging)
        try:
            super()._save_checkpoint(model, trial)
        finally:
            del self._get_output_dir
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            publish(staging / name, run_dir / name)
            shutil.rmtree(staging, ignore_errors=True)
            rotate(run_dir, self.args.save_total_limit)
        self.accelerator.wait_for_everyone()


def atomic(trainer_cls: type) -> type:
    """`trainer_cls` with atomic checkpoints, under the same name (for logs and model cards)."""
    return type(trainer_cls.__name__, (AtomicCheckpoints, trainer_cls), {})


def restore_weights(trainer, checkpoint: Path, is_adapter: bool) -> None:
    """Load a full checkpoint's weights through `from_pretrained`, then skip the Trainer's own load.

    transformers saves fused MoE expert tensors in the per-expert layout and converts them back
    only in `from_pretrained`; the Trainer's raw state-dict load would drop the experts silently
    (optimizer, scheduler and RNG states still come from the Trainer). Adapters load as usual.
    """
    if is_adapter:
        return
    from transformers import AutoModelForCausalLM

    loaded = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=next(trainer.model.parameters()).dtype)
    trainer.model.load_state_dict(loaded.state_dict())
    trainer._load_from_checkpoint = lambda *args, **kwargs: None  # weights are already in place
