"""Every contact with the private API of TRL's and transformers' trainers, in one module.

We override or wrap a few underscored methods and read a few underscored attributes; each one is in
`PRIVATE_METHODS` / `PRIVATE_ATTRIBUTES` with the shape we rely on. `check_private_api` compares that
shape with the installed releases (tests/unit/test_trl_adapter.py runs it for every entry, and
`atomic` runs it when a trainer class is built), so an upgrade that changes one fails loudly, naming
the versions, instead of training quietly with a patch that no longer applies.

- atomic checkpoints: `_save_checkpoint` writes into a staging folder (through `_get_output_dir`),
  `get_batch_samples` yields nothing once `max_steps` is reached, `_load_from_checkpoint` is skipped
  after `restore_weights` loaded the weights the way `from_pretrained` does;
- the GRPO step's time split wraps `_generate` and `_calculate_rewards` of one trainer instance;
- the KD trainers log `num_tokens` and `aux_loss` in `_metrics`, as SFTTrainer does.
"""

from __future__ import annotations

import functools
import inspect
import shutil
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import transformers
import trl
from transformers import AutoModelForCausalLM
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from posttrain.checkpoints import STAGING, publish, rotate
from posttrain.errors import PosttrainError

# (module, class, method) -> the parameter names we call it with or override it by.
PRIVATE_METHODS: dict[tuple[str, str, str], tuple[str, ...]] = {
    ("transformers", "Trainer", "_save_checkpoint"): ("self", "model", "trial"),
    ("transformers", "Trainer", "_get_output_dir"): ("self", "trial"),
    ("transformers", "Trainer", "_load_from_checkpoint"): ("self", "resume_from_checkpoint", "model"),
    ("transformers", "Trainer", "get_batch_samples"): ("self", "epoch_iterator", "num_batches", "device"),
    ("trl", "GRPOTrainer", "_save_checkpoint"): ("self", "model", "trial"),
    ("trl", "GRPOTrainer", "_generate"): ("self", "prompts"),
    ("trl", "GRPOTrainer", "_calculate_rewards"): ("self", "inputs", "prompts", "completions", "completion_ids_list"),
}
# Attributes an SFTTrainer instance has after __init__, which the KD trainers write to.
PRIVATE_ATTRIBUTES = ("_metrics", "_total_train_tokens", "aux_loss_enabled")
GRPO_STAGES = {"generation": "_generate", "reward": "_calculate_rewards"}


class TrainerAPIChanged(PosttrainError):
    """An installed TRL/transformers release changed a private method posttrain relies on."""


def versions() -> str:

    return f"trl {trl.__version__}, transformers {transformers.__version__}"


def _class(module: str, name: str):
    return getattr(__import__(module), name)


def check_private_api(module: str, cls: str, method: str) -> None:
    """Raise TrainerAPIChanged unless `module.cls.method` has the parameters in PRIVATE_METHODS."""
    expected = PRIVATE_METHODS[(module, cls, method)]
    found = getattr(_class(module, cls), method, None)
    if found is None:
        raise TrainerAPIChanged(
            f"{module}.{cls}.{method} no longer exists ({versions()}); update posttrain/trl_adapter.py"
        )
    params = tuple(inspect.signature(found).parameters)
    if params != expected:
        raise TrainerAPIChanged(
            f"{module}.{cls}.{method} changed shape ({versions()}): posttrain relies on ({', '.join(expected)}), "
            f"found ({', '.join(params)}); update posttrain/trl_adapter.py"
        )


def check_trainer_class(trainer_cls: type) -> None:
    """Check every private method posttrain touches on `trainer_cls` (a TRL trainer or its subclass)."""
    for module, cls, method in PRIVATE_METHODS:
        if issubclass(trainer_cls, _class(module, cls)):
            check_private_api(module, cls, method)


def check_attributes(trainer) -> None:
    missing = [name for name in PRIVATE_ATTRIBUTES if not hasattr(trainer, name)]
    if missing:
        raise TrainerAPIChanged(
            f"{type(trainer).__name__} has no {', '.join(missing)} ({versions()}); update posttrain/trl_adapter.py"
        )


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
    check_trainer_class(trainer_cls)
    return type(trainer_cls.__name__, (AtomicCheckpoints, trainer_cls), {})


def restore_weights(trainer, checkpoint: Path, is_adapter: bool) -> None:
    """Load a full checkpoint's weights through `from_pretrained`, then skip the Trainer's own load.

    transformers saves fused MoE expert tensors in the per-expert layout and converts them back
    only in `from_pretrained`; the Trainer's raw state-dict load would drop the experts silently
    (optimizer, scheduler and RNG states still come from the Trainer). Adapters load as usual.
    """
    if is_adapter:
        return

    loaded = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=next(trainer.model.parameters()).dtype)
    trainer.model.load_state_dict(loaded.state_dict())
    trainer._load_from_checkpoint = lambda *args, **kwargs: None  # weights are already in place


def watch_grpo_stages(trainer, timed: Callable[[str], AbstractContextManager]) -> list[str]:
    """Run each GRPO stage method of this one trainer instance inside `timed(stage)`; the class and
    other trainers are untouched. Returns the methods this trainer lacks (their time is not split)."""
    missing = []
    for stage, name in GRPO_STAGES.items():
        method = getattr(trainer, name, None)
        if method is None:
            missing.append(name)
            continue
        setattr(trainer, name, _inside(method, functools.partial(timed, stage)))
    return missing


def _inside(method, context):
    @functools.wraps(method)
    def wrapped(*args, **kwargs):
        with context():
            return method(*args, **kwargs)

    return wrapped


def count_tokens(trainer, attention_mask) -> None:
    """num_tokens as SFTTrainer logs it, so metrics.jsonl gets tokens/s for every stage."""
    mode = "train" if trainer.model.training else "eval"
    if mode == "train":
        trainer._total_train_tokens += int(attention_mask.sum())
    trainer._metrics[mode]["num_tokens"] = [trainer._total_train_tokens]


def log_metric(trainer, key: str, value: float) -> None:
    """Append to the metrics TRL averages into the next log row."""
    mode = "train" if trainer.model.training else "eval"
    trainer._metrics[mode][key].append(value)


def with_aux_loss(trainer, loss, outputs, num_items_in_batch):
    """`loss` plus the router's load-balancing loss when `router_aux_loss_coef` enables it.

    SFTTrainer's `__init__` sets `output_router_logits` in the student's config, so its forward
    returns `aux_loss`; but it adds it only to the NLL of its own `compute_loss`, which the KD losses
    replace. Weighted and averaged over accumulation steps as SFTTrainer does.
    """
    if not trainer.aux_loss_enabled:
        return loss
    steps = trainer.current_gradient_accumulation_steps if num_items_in_batch is not None else 1
    log_metric(trainer, "aux_loss", trainer.accelerator.gather_for_metrics(outputs.aux_loss.detach()).mean().item())
    return loss + trainer.router_aux_loss_coef * outputs.aux_loss / steps
