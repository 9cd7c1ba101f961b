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
- the KD trainers log `num_tokens` and `aux_loss` in `_metrics`, as SFTTrainer does;
- posttrain's decode loop (`OwnSampler`) replaces `generate` inside `_generate_single_turn`, under
  the same unwrapping and parameter gathering as TRL's own transformers path (`_dist`);
- routing replay (`ReplayRouting`): records the rollout inside `_generate_single_turn`, carries the
  experts with the batch out of `_generate_and_score_completions`, replays them in the log-prob
  passes of `_get_per_token_logps_and_entropies` and `_compute_loss` (through backward), and logs the
  mismatch.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import shutil
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import torch
import transformers
import trl
from peft.tuners.tuners_utils import BaseTunerLayer
from transformers import AutoModelForCausalLM
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from trl.models import unwrap_model_for_generation

from posttrain.checkpoints import STAGING, publish, rotate
from posttrain.errors import PosttrainError

# The multimodal inputs of TRL's log-prob pass; posttrain's policies are text-only.
_MULTIMODAL = (
    "pixel_values",
    "image_grid_thw",
    "num_images",
    "pixel_attention_mask",
    "spatial_shapes",
    "num_tiles",
    "image_sizes",
    "token_type_ids",
    "mm_token_type_ids",
    "image_position_ids",
)
# (module, class, method) -> the parameter names we call it with or override it by.
PRIVATE_METHODS: dict[tuple[str, str, str], tuple[str, ...]] = {
    ("transformers", "Trainer", "_save_checkpoint"): ("self", "model", "trial"),
    ("transformers", "Trainer", "_get_output_dir"): ("self", "trial"),
    ("transformers", "Trainer", "_load_from_checkpoint"): ("self", "resume_from_checkpoint", "model"),
    ("transformers", "Trainer", "get_batch_samples"): ("self", "epoch_iterator", "num_batches", "device"),
    ("trl", "GRPOTrainer", "_save_checkpoint"): ("self", "model", "trial"),
    ("trl", "GRPOTrainer", "_generate"): ("self", "prompts"),
    ("trl", "GRPOTrainer", "_calculate_rewards"): ("self", "inputs", "prompts", "completions", "completion_ids_list"),
    ("trl", "GRPOTrainer", "_generate_single_turn"): (
        "self",
        "prompt_ids",
        "images",
        "multimodal_fields",
        "num_generations",
        "has_tool_images",
    ),
    ("trl", "GRPOTrainer", "_generate_and_score_completions"): ("self", "inputs"),
    ("trl", "GRPOTrainer", "_get_per_token_logps_and_entropies"): (
        "self",
        "model",
        "input_ids",
        "attention_mask",
        "logits_to_keep",
        "batch_size",
        "compute_entropy",
        "compute_aux_loss",
        *_MULTIMODAL,
    ),
    ("trl", "GRPOTrainer", "_compute_loss"): ("self", "model", "inputs"),
}
# Attributes an SFTTrainer instance has after __init__, which the KD trainers write to.
PRIVATE_ATTRIBUTES = ("_metrics", "_total_train_tokens", "aux_loss_enabled")
# Attributes a GRPOTrainer instance has after __init__, which routing replay reads.
GRPO_ATTRIBUTES = (
    "_metrics",
    "ref_model",
    "use_vllm",
    "use_transformers_continuous_batching",
    "importance_sampling_level",
    "generation_config",
    "generation_kwargs",
    "_dist",
)
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


def check_attributes(trainer, names: tuple[str, ...] = PRIVATE_ATTRIBUTES) -> None:
    missing = [name for name in names if not hasattr(trainer, name)]
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


def atomic(trainer_cls: type, *mixins: type) -> type:
    """`trainer_cls` with atomic checkpoints (and `mixins`), under the same name (for logs and model cards)."""
    check_trainer_class(trainer_cls)
    return type(trainer_cls.__name__, (AtomicCheckpoints, *mixins, trainer_cls), {})


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


class ReplayRouting:
    """GRPOTrainer mixin (before the trainer class): MoE routing replay and the mismatch telemetry.

    `routing` (a `posttrain.models.replay.RoutingReplay`) and `routing_replay` ("none" | "rollout" |
    "old_policy") are set before training; with `routing` None the trainer is TRL's own. Per
    generation batch: the rollout's experts are recorded while TRL generates (transformers backend)
    and travel with the batch as `rollout_experts` (B, S, layers, k) through TRL's shuffle, split and
    `num_iterations` reuse; R2 records `old_experts` in the old-policy log-prob pass. In every
    policy-gradient forward the chosen experts are forced (R3: the rollout's, R2: the old policy's)
    and kept through backward, so gradient-checkpoint recomputation routes the same way.

    Logged per step: `routing/flip_rate` (of (token, MoE layer) pairs, the experts the trainer used
    vs the rollout's; 0 under rollout replay), `routing/token_flip_rate` (tokens with a flip in any
    layer), `routing/router_flip_rate` (the router's own choice vs the rollout's: what replay
    prevented), `mismatch/logp_abs_mean` and `mismatch/logp_abs_p99` (|sampler - trainer| log-prob of
    each completion token at the rollout's weights), and `mismatch/ratio_{mean,min,max}` (the
    importance ratio at TRL's `importance_sampling_level`; TRL logs its clip fractions beside them).
    `rollout_autocast` (a torch dtype) runs the rollouts under autocast, the way a bf16 inference
    engine samples for an fp32 trainer.
    """

    routing = None
    routing_replay = "none"
    rollout_autocast = None
    _rollout = None
    _old_experts = None
    _in_loss = False
    _loss_logps = None

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        generate = functools.partial(
            super()._generate_single_turn, prompt_ids, images, multimodal_fields, num_generations, has_tool_images
        )
        precision = (
            torch.autocast(self.accelerator.device.type, dtype=self.rollout_autocast)
            if self.rollout_autocast is not None
            else contextlib.nullcontext()
        )
        if self.routing is None or self.use_vllm or self.use_transformers_continuous_batching:
            with precision:
                return generate()
        with self.routing.recording() as record, precision:
            completion_ids, logprobs = generate()
        # The decode loop (`OwnSampler`) returns its log-probs; TRL's generate path returns None.
        self._rollout = self.routing.rollout(record, prompt_ids, completion_ids, logps=logprobs)
        # TRL keeps these as `sampling_per_token_logps`; with this backend it would have none.
        return completion_ids, self._rollout.logps if logprobs is None else logprobs

    def _generate_and_score_completions(self, inputs):
        self._rollout = self._old_experts = None
        output = super()._generate_and_score_completions(inputs)
        if self._rollout is not None:
            ids = torch.cat([output["prompt_ids"], output["completion_ids"]], dim=1)
            output["rollout_experts"] = self._rollout.aligned(ids, output["completion_ids"].size(1))
            if self._old_experts is not None:
                output["old_experts"] = self._old_experts
        return output

    def _get_per_token_logps_and_entropies(
        self,
        model,
        input_ids,
        attention_mask,
        logits_to_keep,
        batch_size=None,
        compute_entropy=False,
        compute_aux_loss=False,
        **multimodal,
    ):
        call = functools.partial(
            super()._get_per_token_logps_and_entropies,
            model,
            compute_entropy=compute_entropy,
            compute_aux_loss=compute_aux_loss,
            **multimodal,
        )
        old_pass = not (
            self.routing is None
            or self._in_loss
            or self._rollout is None
            or self.routing_replay == "none"
            or self._reference_pass(model)
        )
        if not old_pass:
            result = call(input_ids, attention_mask, logits_to_keep, batch_size=batch_size)
            if self._in_loss:
                self._loss_logps = result[0].detach()
            return result
        if any(value is not None for value in multimodal.values()):
            raise PosttrainError("moe.routing_replay: text-only policies (this batch has image inputs)")
        # The old policy's pass over a fresh rollout, chunk by chunk as TRL would: R3 replays the
        # rollout's experts in it; R2 records the experts it picks, to replay in every gradient step.
        rollout = self._rollout.aligned(input_ids, logits_to_keep)
        size = batch_size or input_ids.size(0)
        parts, captured = [], []
        for start in range(0, input_ids.size(0), size):
            rows = slice(start, start + size)
            if self.routing_replay == "old_policy":
                with self.routing.recording() as record:
                    parts.append(call(input_ids[rows], attention_mask[rows], logits_to_keep))
                captured.append(self.routing.captured(record))
            else:
                self.routing.target(rollout[rows], replay=True, reference=rollout[rows])
                try:
                    parts.append(call(input_ids[rows], attention_mask[rows], logits_to_keep))
                finally:
                    self.routing.clear()
        if captured:
            self._old_experts = torch.cat(captured).to(input_ids.device)
        logps = torch.cat([part[0] for part in parts])
        entropies = torch.cat([part[1] for part in parts]) if compute_entropy else None
        aux_loss = torch.stack([part[2] for part in parts]).mean() if compute_aux_loss else None
        return logps, entropies, aux_loss

    def _compute_loss(self, model, inputs):
        if self.routing is None:
            return super()._compute_loss(model, inputs)
        rollout = inputs.get("rollout_experts")
        forced = {"rollout": rollout, "old_policy": inputs.get("old_experts")}.get(self.routing_replay)
        # Left set after the forward: backward's gradient-checkpoint recomputation replays the same
        # experts; training_step clears it.
        self.routing.target(forced, replay=forced is not None, reference=rollout)
        self._in_loss, self._loss_logps = True, None
        try:
            loss = super()._compute_loss(model, inputs)
        finally:
            self._in_loss = False
        self._log_mismatch(inputs)
        return loss

    def training_step(self, model, inputs, num_items_in_batch):
        try:
            return super().training_step(model, inputs, num_items_in_batch)
        finally:
            if self.routing is not None:
                self.routing.clear()

    def _reference_pass(self, model) -> bool:
        """Whether this log-prob pass is the KL reference's (routed by its own router, never replayed)."""
        if self.ref_model is not None and model is self.ref_model:
            return True
        unwrapped = self.accelerator.unwrap_model(model)
        if not hasattr(unwrapped, "peft_config"):
            return False
        # TRL's `use_adapter`: the adapters disabled, or an adapter named "ref" active
        return getattr(unwrapped, "active_adapter", None) == "ref" or any(
            isinstance(m, BaseTunerLayer) and m.disable_adapters for m in unwrapped.modules()
        )

    def _log_mismatch(self, inputs) -> None:
        metrics = self._metrics["train" if self.model.training else "eval"]
        stats = self.routing.take_stats()
        if stats is not None:
            metrics["routing/flip_rate"].append(stats.flip_rate)
            metrics["routing/token_flip_rate"].append(stats.token_flip_rate)
            metrics["routing/router_flip_rate"].append(stats.router_flip_rate)
        mask = inputs["completion_mask"].bool()
        old = inputs.get("old_per_token_logps")
        at_rollout_weights = old if old is not None else self._loss_logps  # no old pass: the trainer is on-policy
        sampler = inputs.get("sampling_per_token_logps")
        if sampler is not None and at_rollout_weights is not None:
            delta = (sampler.float() - at_rollout_weights.float()).abs()[mask]
            if delta.numel():
                metrics["mismatch/logp_abs_mean"].append(delta.mean().item())
                metrics["mismatch/logp_abs_p99"].append(torch.quantile(delta, 0.99).item())
        if self._loss_logps is None or not mask.any():
            return
        log_ratio = self._loss_logps - (old if old is not None else self._loss_logps)
        if self.importance_sampling_level == "sequence":
            ratio = torch.exp((log_ratio * mask).sum(-1) / mask.sum(-1).clamp(min=1))
        else:
            ratio = torch.exp(log_ratio[mask])
        metrics["mismatch/ratio_mean"].append(ratio.mean().item())
        metrics["mismatch/ratio_min"].append(ratio.min().item())
        metrics["mismatch/ratio_max"].append(ratio.max().item())


class OwnSampler:
    """GRPOTrainer mixin (after `ReplayRouting`, before the trainer class): rollouts through posttrain's
    decode loop (`posttrain.models.decoding`) instead of `model.generate`.

    `sampler(model, prompt_ids, record=...)` -> `Decoded` is set before training (None: TRL's own path).
    It runs where TRL's transformers path runs `generate` -- on the model unwrapped for generation with
    TRL's generation kwargs, without gradients, FSDP's parameters summoned -- and returns the same
    (completion_ids, logprobs): completions up to and including EOS, and the sampler's log-prob of each
    token (TRL keeps them as `sampling_per_token_logps`). vLLM, paged generation and multimodal prompts
    keep TRL's path. An open routing recording (`routing.active`) is told the loop's batches.
    """

    sampler = None

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        own = not (
            self.sampler is None
            or self.use_vllm
            or self.use_transformers_continuous_batching
            or images is not None
            and any(image is not None for image in images)
            or multimodal_fields
        )
        if not own:
            return super()._generate_single_turn(
                prompt_ids, images, multimodal_fields, num_generations, has_tool_images
            )
        routing = getattr(self, "routing", None)
        with (
            unwrap_model_for_generation(
                self.model_wrapped,
                self.accelerator,
                gather_deepspeed3_params=self.args.ds3_gather_for_generation,
                generation_kwargs=self.generation_kwargs,
                gradient_checkpointing_kwargs=self.args.gradient_checkpointing_kwargs,
            ) as unwrapped,
            torch.no_grad(),
            self._dist.summon_full_params(self.model_wrapped, recurse=False),
        ):
            decoded = self.sampler(unwrapped, prompt_ids, record=None if routing is None else routing.active)
        return decoded.completions, decoded.logps


class FilterNoSignal:
    """GRPOTrainer mixin (before the trainer class): `grpo.dynamic_sampling: filter`.

    A completion whose advantage is exactly 0 -- every completion of a group whose rewards are all
    equal, the case TRL counts in `frac_reward_zero_std` -- adds nothing to the policy gradient but
    still costs its forward and backward, and dilutes the loss's average. This drops those rows from
    the generation batch before any gradient step, as DAPO's dynamic sampling filters groups (without
    its over-sampling: the step trains on fewer rows). Enough zero rows are kept to split the batch
    into `steps_per_generation` equal parts, and all of them when none has signal. `num_items_in_batch`
    is recounted over the kept rows. Logs `dynamic_sampling/kept_frac`.
    """

    dynamic_sampling = "none"

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        if self.dynamic_sampling != "filter" or not self.model.training:
            return output
        advantages = output["advantages"]
        signal = advantages != 0 if advantages.dim() == 1 else (advantages != 0).any(dim=-1)
        rows, chunks = signal.numel(), self.args.steps_per_generation
        keep = signal.clone()
        if not keep.any():
            keep[:] = True  # nothing to learn from: train on the batch as it is (zero policy gradient)
        elif missing := (-int(keep.sum())) % chunks:
            keep[torch.nonzero(~keep).flatten()[:missing]] = True
        self._metrics["train"]["dynamic_sampling/kept_frac"].append(float(keep.float().mean()))
        if bool(keep.all()):
            return output
        kept = {
            key: value[keep]
            if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == rows
            else value
            for key, value in output.items()
        }
        mask = kept["completion_mask"] * kept["tool_mask"] if "tool_mask" in kept else kept["completion_mask"]
        kept["num_items_in_batch"] = self.accelerator.gather(mask.sum()).sum()
        return kept
