"""The distillation recipe: teacher -> traces -> sequence KD -> (logit KD) -> student.

Sections `teacher`, `student`, `data`, `rewards`, `eval` and `output` are the GRPO recipe's own
classes; `distill` holds the three stages. A builder student may carry its arguments in the name,
`build:tiny-dense?hidden_size=64&num_layers=2`, the same as `student.builder_args`.
`teacher.warmstart` applies to `build:` teachers only (a checkpoint teacher is used as it is);
the student never warm-starts -- it learns from the teacher. `moe` is the GRPO recipe's section and
applies to the student's training stages (sequence and logit KD), not to the teacher's warm-start.
"""

from __future__ import annotations

from typing import Any, Literal

import yaml
from pydantic import Field, field_validator, model_validator

from posttrain.config.schema import (
    BUILD_PREFIX,
    DataConfig,
    EvalConfig,
    GenerationConfig,
    ModelConfig,
    MoEConfig,
    OutputConfig,
    RewardConfig,
    RewardsConfig,
    Section,
    TrainConfig,
    check_warmup_schedule,
)
from posttrain.config.trl_fields import DISTILL_GKD, DISTILL_SFT, check_passthrough

DEFAULT_REWARDS = ({"name": "accuracy", "weight": 1.0}, {"name": "format", "weight": 1.0})


class DistillRewardsConfig(RewardsConfig):
    """The GRPO recipe's `rewards`, with accuracy + format when the recipe lists none."""

    functions: list[RewardConfig] = Field(
        default_factory=lambda: [RewardConfig(**r) for r in DEFAULT_REWARDS],
        min_length=1,
        description="Entries {name, weight, kwargs}; default accuracy and format.",
    )


class TracesConfig(Section):
    """Stage 1: the teacher answers every training prompt `num_samples` times; rewards filter."""

    num_samples: int = Field(4, gt=0, description="Completions the teacher samples per prompt.")
    temperature: float = Field(1.0, ge=0, description="Teacher sampling temperature (0 = greedy, one sample).")
    top_p: float = Field(1.0, gt=0, le=1, description="Teacher nucleus sampling.")
    max_new_tokens: int = Field(64, gt=0, description="Generation budget per trace.")
    batch_size: int = Field(256, gt=0, description="Sequences generated together (KV cache, padded).")
    chunk_prompts: int = Field(512, gt=0, description="Prompts per resumable chunk of traces_raw.jsonl.")
    require: dict[str, float] | None = Field(
        None,
        description="Minimum score per reward name for a trace to be kept; default: every recipe "
        "reward must reach 1.0 (correct and well formatted). A reward returning None does not veto.",
    )
    keep: Literal["all", "shortest"] = Field(
        "all", description="Among a prompt's accepted traces keep all, or the shortest first."
    )
    keep_per_prompt: int | None = Field(None, gt=0, description="Keep at most this many traces per prompt.")
    drop_truncated: bool = Field(True, description="Reject traces that hit max_new_tokens.")
    seed: int = Field(0, description="Seed of teacher sampling.")


class LogitKDConfig(Section):
    """Stage 3 (optional): match the teacher's next-token distributions, not only its samples."""

    enabled: bool = Field(False, description="Run logit-level KD after sequence-level KD.")
    teacher: Literal["offline", "online"] = Field(
        "offline",
        description="offline: the teacher's top-k log-probs are stored with the traces, so training "
        "needs no teacher in memory; online: the teacher runs beside the student (full vocabulary).",
    )
    divergence: Literal["forward_kl", "reverse_kl", "jsd"] = Field(
        "forward_kl",
        description="forward_kl = KL(teacher||student), reverse_kl = KL(student||teacher), jsd = generalised JSD(beta).",
    )
    beta: float = Field(0.5, gt=0, lt=1, description="Generalised JSD interpolation (only with divergence: jsd).")
    lmbda: float = Field(
        0.0,
        ge=0,
        le=1,
        description="On-policy fraction (GKD): share of batches the student samples itself (online only).",
    )
    topk: int = Field(16, gt=0, description="Teacher log-probs stored per token in offline mode.")
    max_steps: int = Field(100, gt=0, description="Optimizer steps.")
    learning_rate: float = Field(2e-4, gt=0, description="Peak learning rate.")
    lr_scheduler_type: Literal["cosine", "linear", "constant", "constant_with_warmup"] = Field("cosine")
    warmup_steps: int = Field(0, ge=0, description="Linear warmup steps.")
    per_device_train_batch_size: int = Field(32, gt=0, description="Sequences per device per micro-step.")
    gradient_accumulation_steps: int = Field(1, gt=0, description="Micro-steps per optimizer step.")
    temperature: float = Field(1.0, gt=0, description="Student sampling temperature for on-policy batches.")
    max_new_tokens: int | None = Field(
        None, gt=0, description="On-policy generation budget; default traces.max_new_tokens."
    )
    trl: dict[str, Any] = Field(
        default_factory=dict, description="Any other trl GKDConfig field, passed through after a check."
    )

    @field_validator("trl")
    @classmethod
    def _known_trl_fields(cls, value: dict[str, Any]) -> dict[str, Any]:
        check_passthrough(value, DISTILL_GKD, set(cls.model_fields))
        return value

    @property
    def jsd_beta(self) -> float:
        """TRL's beta: 0 is forward KL, 1 is reverse KL, in between the generalised JSD."""
        return {"forward_kl": 0.0, "reverse_kl": 1.0}.get(self.divergence, self.beta)

    @model_validator(mode="after")
    def _consistent(self) -> LogitKDConfig:
        if "beta" in self.model_fields_set and self.divergence != "jsd":
            raise ValueError(f"beta applies to divergence 'jsd' only; divergence is {self.divergence!r}")
        if self.teacher == "offline" and self.lmbda > 0:
            raise ValueError(
                "lmbda > 0 needs the teacher to score the student's own samples, but an offline teacher is "
                "not in memory; set distill.logit_kd.lmbda=0 or distill.logit_kd.teacher=online"
            )
        check_warmup_schedule(self.lr_scheduler_type, self.warmup_steps)
        return self


class DistillConfig(Section):
    """Stage 2 (sequence-level KD, TRL's SFTTrainer on the kept traces) and the other stages."""

    max_steps: int = Field(500, gt=0, description="Sequence-KD optimizer steps.")
    learning_rate: float = Field(2e-3, gt=0, description="Peak sequence-KD learning rate.")
    lr_scheduler_type: Literal["cosine", "linear", "constant", "constant_with_warmup"] = Field("cosine")
    warmup_steps: int = Field(20, ge=0, description="Linear warmup steps.")
    per_device_train_batch_size: int = Field(64, gt=0, description="Sequences per device per micro-step.")
    gradient_accumulation_steps: int = Field(1, gt=0, description="Micro-steps per optimizer step.")
    packing: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Pack traces into full rows (padding-free). auto: on with flash-attention kernels; "
        "off on CPU/SDPA, where the block-diagonal mask costs more than the padding it saves.",
    )
    max_length: int = Field(512, gt=0, description="Longest training sequence (prompt + trace) in tokens.")
    on_nonfinite: Literal["stop", "skip"] = Field(
        "stop", description="NaN/inf loss or gradient: stop naming the step (stop) or drop that update (skip)."
    )
    seed: int = Field(0, description="Seed of student initialisation and data order.")
    logging_steps: int = Field(10, gt=0, description="Log metrics every N steps.")
    trl: dict[str, Any] = Field(
        default_factory=dict, description="Any other trl.SFTConfig field, passed through after a check."
    )
    traces: TracesConfig = Field(default_factory=TracesConfig)
    logit_kd: LogitKDConfig = Field(default_factory=LogitKDConfig)

    @field_validator("trl")
    @classmethod
    def _known_trl_fields(cls, value: dict[str, Any]) -> dict[str, Any]:
        check_passthrough(value, DISTILL_SFT, set(cls.model_fields))
        return value

    @model_validator(mode="after")
    def _warmup_applies(self) -> DistillConfig:
        check_warmup_schedule(self.lr_scheduler_type, self.warmup_steps)
        return self


class DistillRecipe(Section):
    """A distillation recipe: teacher + student -> data -> rewards (filter) -> distill -> outputs."""

    teacher: ModelConfig
    student: ModelConfig
    data: DataConfig
    rewards: DistillRewardsConfig = Field(default_factory=DistillRewardsConfig)
    distill: DistillConfig = Field(default_factory=DistillConfig)
    train: TrainConfig = Field(
        default_factory=TrainConfig, description="Student training precision (auto: student.dtype)."
    )
    moe: MoEConfig = Field(
        default_factory=MoEConfig, description="Routing of an MoE student while it trains (both KD stages)."
    )
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    output: OutputConfig = Field(default_factory=lambda: OutputConfig(dir="outputs/distill"))

    @model_validator(mode="before")
    @classmethod
    def _compact_builder_args(cls, data: Any) -> Any:
        """`build:tiny-dense?hidden_size=64` -> name `build:tiny-dense`, builder_args {hidden_size: 64}."""
        if not isinstance(data, dict):
            return data
        for role in ("teacher", "student"):
            section = data.get(role)
            if isinstance(section, str):
                section = data[role] = {"name_or_path": section}
            if isinstance(section, dict):
                data[role] = split_builder_spec(section)
        return data

    # Field validators, not one model validator: they run alongside the other fields' checks, so a
    # recipe with several problems hears about all of them at once.
    @field_validator("moe")
    @classmethod
    def _no_replay(cls, value: MoEConfig) -> MoEConfig:
        if value.routing_replay != "none":
            raise ValueError("routing_replay applies to GRPO (distillation samples no rollouts to replay); drop it")
        return value

    @field_validator("student")
    @classmethod
    def _student_learns_from_traces(cls, value: ModelConfig) -> ModelConfig:
        if value.warmstart.steps:
            raise ValueError("the student learns from the teacher's traces; set student.warmstart.steps=0")
        value.check_trainable_in_4bit()
        return value

    @field_validator("teacher")
    @classmethod
    def _teacher_is_frozen(cls, value: ModelConfig) -> ModelConfig:
        if value.lora.enabled:
            raise ValueError("the teacher is not trained; LoRA applies to the student (student.lora)")
        if value.load_in_4bit:
            # Its token distributions are what logit KD copies: quantization error would be distilled too.
            raise ValueError("load_in_4bit applies to the student (QLoRA); the teacher loads in its own dtype")
        return value


def split_builder_spec(section: dict) -> dict:
    """Move `?k=v&k2=v2` from a `build:` name into builder_args; the name's values win, so
    `--student build:tiny-dense?hidden_size=64` overrides a recipe's student.builder_args."""
    name = section.get("name_or_path")
    if not isinstance(name, str) or not name.startswith(BUILD_PREFIX) or "?" not in name:
        return section

    base, _, query = name.partition("?")
    parsed = {}
    for pair in filter(None, query.split("&")):
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"{name!r}: builder arguments read like build:tiny-dense?hidden_size=64&num_layers=2")
        try:
            parsed[key] = yaml.safe_load(raw)
        except yaml.YAMLError:
            parsed[key] = raw
    return {**section, "name_or_path": base, "builder_args": {**(section.get("builder_args") or {}), **parsed}}
