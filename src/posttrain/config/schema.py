"""The recipe schema: every section a pydantic model with `extra="forbid"`, defaults a user can run.

Field descriptions double as documentation: validation errors and `posttrain grpo --dry-run` quote them.
Field names follow TRL's where a field maps onto one, so a recipe reads like TRL's or open-r1's.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from posttrain.config.builders import BUILDERS, check_choices, spec_fields
from posttrain.config.trl_fields import GRPO, WARMSTART, check_passthrough

BUILD_PREFIX = "build:"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def check_warmup_schedule(schedule: str, warmup_steps: int, warmup_ratio: float = 0.0) -> None:
    """transformers' `constant` schedule ignores warmup without a word; say so instead.

    Warmup matters most under Adam: its first steps are sign-like (every weight moves by the full
    learning rate), and one such GRPO step at lr 5e-5 took the tiny MoE's greedy accuracy from 72%
    to 35%.
    """
    if schedule == "constant" and (warmup_steps or warmup_ratio):
        given = f"warmup_steps={warmup_steps}" if warmup_steps else f"warmup_ratio={warmup_ratio}"
        raise ValueError(
            f"{given} has no effect with lr_scheduler_type 'constant'; use 'constant_with_warmup', "
            "or set the warmup to 0"
        )


class LoraConfig(Section):
    enabled: bool = Field(False, description="Train a LoRA adapter (peft) instead of all weights.")
    r: int = Field(16, gt=0, description="LoRA rank.")
    alpha: int = Field(32, gt=0, description="LoRA scaling (lora_alpha).")
    dropout: float = Field(0.0, ge=0, lt=1, description="LoRA dropout (must be 0 with target_parameters).")
    target_modules: list[str] | Literal["all-linear"] = Field(
        "all-linear", description="Module names to adapt, or 'all-linear'."
    )
    target_parameters: list[str] | Literal["experts"] | None = Field(
        None,
        description="Parameters (not modules) to adapt, peft's target_parameters: the fused 3-D expert weights "
        "of transformers MoE models are parameters, so 'all-linear' leaves the experts untouched. 'experts': every "
        "routed expert tensor (e.g. experts.gate_up_proj, experts.down_proj); or names like those.",
    )
    merge_on_save: bool = Field(
        True, description="Also save the merged model (a plain checkpoint) next to the adapter."
    )

    @model_validator(mode="after")
    def _parameters_need_no_dropout(self) -> LoraConfig:
        if self.target_parameters and self.dropout:
            raise ValueError("target_parameters: peft adapts parameters without dropout; set lora.dropout: 0")
        return self


class WarmstartConfig(Section):
    """Supervised warm-start on the task's worked solutions: a random-init model gives GRPO no
    signal, so tiny models first learn the format and some skill."""

    steps: int = Field(0, ge=0, description="SFT steps before RL; 0 disables the warm-start.")
    batch_size: int = Field(64, gt=0, description="Sequences per SFT step.")
    learning_rate: float = Field(2e-3, gt=0, description="Peak SFT learning rate (cosine decay).")
    warmup_steps: int = Field(20, ge=0, description="Linear warmup steps.")
    num_examples: int = Field(20000, gt=0, description="Generated worked examples to train on.")
    seed: int = Field(1234, description="Seed of the warm-start data (disjoint from RL and eval).")
    until_greedy: float | None = Field(
        None,
        gt=0,
        le=1,
        description="Target greedy accuracy on `check_problems` training problems: after `steps`, add rounds "
        "of `extra_steps` (warmup + cosine again) until the model reaches it. A fixed step count leaves some "
        "seeds' models without the method; null trains `steps` once; with steps 0 there is no warm-start at all.",
    )
    extra_steps: int = Field(100, gt=0, description="SFT steps of each extra round (until_greedy, retry: extend).")
    max_extra_rounds: int = Field(
        3, ge=1, description="Extra rounds at most (until_greedy); then RL starts anyway. A `retry` list sets it."
    )
    retry: Literal["extend", "restart"] | list[Literal["extend", "restart"]] = Field(
        "extend",
        description="Below until_greedy after a round: `extend` trains the model (after restarts, the best attempt) "
        "`extra_steps` more; `restart` warm-starts a fresh model (GRPO: a builder's next init seed; else the start "
        "reloaded) for `steps` with its data in another order, and keeps the attempt whose check was best. A list "
        "names each extra round's action in turn, e.g. [restart, extend]. Learning a chained method is a sudden, "
        "seed-dependent transition: a fresh init is a new draw of it, and a model part-way there finishes it with "
        "more steps (docs/efficacy.md).",
    )
    check_problems: int = Field(
        100, gt=0, description="Training problems (never held-out ones) the until_greedy check decodes greedily."
    )
    trl: dict[str, Any] = Field(
        default_factory=dict,
        description="Any other trl.SFTConfig field of the warm-start, passed through after a check.",
    )

    @field_validator("trl")
    @classmethod
    def _known_trl_fields(cls, value: dict[str, Any]) -> dict[str, Any]:
        check_passthrough(value, WARMSTART, set(cls.model_fields))
        return value

    @model_validator(mode="before")
    @classmethod
    def _retry_list(cls, data: Any) -> Any:
        retry = data.get("retry") if isinstance(data, dict) else None
        if not isinstance(retry, list):
            return data
        if not retry:
            raise ValueError("retry: an empty list retries nothing; name an action per extra round or drop it")
        rounds = data.get("max_extra_rounds", len(retry))
        if rounds != len(retry):
            raise ValueError(f"max_extra_rounds: {rounds}, but retry names {len(retry)} rounds; drop one")
        return {**data, "max_extra_rounds": len(retry)}

    def retry_plan(self) -> list[str]:
        """Each extra round's action, in order ([] without until_greedy: no check, no rounds)."""
        if self.until_greedy is None:
            return []
        return list(self.retry) if isinstance(self.retry, list) else [self.retry] * self.max_extra_rounds


class ModelConfig(Section):
    name_or_path: str = Field(
        ...,
        description="Hub name (Qwen/Qwen3-30B-A3B), local checkpoint, or a builder: "
        "'build:tiny-moe' / 'build:tiny-dense'.",
    )
    builder_args: dict[str, Any] = Field(
        default_factory=dict, description="Overrides for a 'build:' model (hidden_size, num_layers, ...)."
    )
    tokenizer: str | None = Field(None, description="Tokenizer to load; defaults to the model's.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field("auto", description="Weights dtype when loading.")
    trust_remote_code: bool = Field(False, description="Allow Hub models with custom code.")
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit).")
    load_in_4bit: bool = Field(
        False, description="QLoRA: load the frozen base in 4 bits (bitsandbytes, posttrain[qlora]); needs lora.enabled."
    )
    bnb_4bit_quant_type: Literal["nf4", "fp4"] = Field("nf4", description="4-bit data type (QLoRA uses nf4).")
    use_bnb_nested_quant: bool = Field(False, description="Quantize the quantization constants too (double quant).")
    lora: LoraConfig = Field(default_factory=LoraConfig)
    warmstart: WarmstartConfig = Field(default_factory=WarmstartConfig)

    @property
    def builder(self) -> str | None:
        return self.name_or_path[len(BUILD_PREFIX) :] if self.name_or_path.startswith(BUILD_PREFIX) else None

    @field_validator("name_or_path")
    @classmethod
    def _known_builder(cls, value: str) -> str:
        if value.startswith(BUILD_PREFIX):
            kind = value[len(BUILD_PREFIX) :]
            if kind not in BUILDERS:
                raise ValueError(f"unknown builder {kind!r}; available: {', '.join(BUILDERS)}")
        return value

    @model_validator(mode="after")
    def _builder_args_fit(self) -> ModelConfig:
        if self.builder_args and not self.builder:
            raise ValueError("builder_args only apply to 'build:' models")
        if self.builder:
            unknown = sorted(set(self.builder_args) - set(spec_fields(self.builder)))
            if unknown:
                raise ValueError(
                    f"builder_args: unknown {unknown} for {self.builder}; known: {', '.join(spec_fields(self.builder))}"
                )
            check_choices(self.builder, self.builder_args)
        return self

    @model_validator(mode="after")
    def _quantization_fits(self) -> ModelConfig:
        if not self.load_in_4bit:
            for key in ("bnb_4bit_quant_type", "use_bnb_nested_quant"):
                if key in self.model_fields_set and getattr(self, key) != type(self).model_fields[key].default:
                    raise ValueError(f"{key} applies with load_in_4bit: true only")
            return self
        if self.warmstart.steps:
            raise ValueError(
                "load_in_4bit cannot warm-start (SFT of all weights); warm-start first, then load that "
                "checkpoint in 4 bits, or set warmstart.steps: 0"
            )
        return self

    def check_trainable_in_4bit(self) -> None:
        """A 4-bit base is frozen: only LoRA adapters on top of it train (QLoRA)."""
        if self.load_in_4bit and not self.lora.enabled:
            raise ValueError("load_in_4bit trains LoRA adapters on a frozen 4-bit base (QLoRA); set lora.enabled: true")


class DataConfig(Section):
    source: str = Field(
        ...,
        description="Built-in task name (arithmetic, countdown), a local .jsonl/.json/.parquet file, "
        "or a Hub dataset name.",
    )
    config_name: str | None = Field(None, description="Hub dataset configuration (e.g. 'main' for gsm8k).")
    split: str = Field("train", description="Split to train on (Hub datasets).")
    preset: Literal["auto", "none", "gsm8k", "math500"] = Field(
        "auto", description="Column conventions; 'auto' recognises GSM8K and MATH-500 columns."
    )
    prompt_column: str | None = Field(None, description="Column holding the problem text.")
    answer_column: str | None = Field(None, description="Column holding the gold answer.")
    system_prompt: str | None = Field(None, description="System message put before every problem.")
    chat_template_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="Extra variables of the tokenizer's chat template wherever a prompt is rendered (rollouts, "
        "warm-start, eval, traces, KD), e.g. {enable_thinking: false} for Qwen3.",
    )
    task_args: dict[str, Any] = Field(default_factory=dict, description="Arguments of a built-in task.")
    num_train: int | None = Field(None, gt=0, description="Use at most this many training rows.")
    seed: int = Field(0, description="Seed for generated tasks and shuffling.")
    skip_bad_rows: bool = Field(False, description="Skip (and count) malformed rows instead of failing.")


class EvalConfig(Section):
    """Held-out evaluation the run does before and after training."""

    enabled: bool = Field(True, description="Evaluate the base model and the trained policy.")
    source: str | None = Field(
        None, description="Held-out data; default: fresh problems of the built-in task, or the test split."
    )
    split: str = Field("test", description="Split of a Hub/file eval source.")
    num_problems: int = Field(200, gt=0, description="Held-out problems (never seen in training).")
    num_samples: int = Field(4, gt=0, description="Samples per problem for pass@1 (the mean).")
    temperature: float = Field(1.0, ge=0, description="Sampling temperature for pass@1.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling for pass@1.")
    max_new_tokens: int = Field(64, gt=0, description="Generation budget per completion.")
    batch_size: int = Field(256, gt=0, description="Sequences generated together (KV cache, padded).")
    seed: int = Field(7, description="Seed for held-out problem generation and sampling.")
    correctness_reward: str = Field(
        "accuracy", description="Reward that decides whether a sample is correct (1.0 = correct)."
    )


class RewardConfig(Section):
    name: str = Field(..., description="Built-in reward name, 'rewards/x.py:fn' or 'package.module:fn'.")
    weight: float = Field(1.0, description="Weight in the summed reward.")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments of the reward.")


class RewardsConfig(Section):
    """The reward functions, and what a reward that fails does. A plain list is shorthand for
    `functions:` with `strict: false`, so `rewards: [{name: accuracy}]` stays valid."""

    list_shorthand: ClassVar[str] = "functions"  # the loader maps `rewards.0` <-> `rewards.functions.0`

    functions: list[RewardConfig] = Field(..., min_length=1, description="Entries {name, weight, kwargs}.")
    strict: bool = Field(
        False,
        description="A reward that raises, or returns NaN or the wrong number of scores, stops the run; "
        "by default the failing rows score None and the errors are counted (reward_errors).",
    )

    @model_validator(mode="before")
    @classmethod
    def _list_is_functions(cls, data: Any) -> Any:
        if isinstance(data, list):
            return {cls.list_shorthand: data}
        if not isinstance(data, dict | BaseModel):
            # ValueError, not TypeError: pydantic reports only the former as a validation error.
            raise ValueError(
                "expected a list of {name, weight, kwargs} entries, or a mapping {functions: [...], strict: true|false}"
            )
        return data


GSPO_EPSILON, GSPO_EPSILON_HIGH = 3e-4, 4e-4
TOKEN_SUM_LOSSES = ("bnpo", "dr_grpo", "dapo", "cispo")


class GRPOConfig(Section):
    max_steps: int = Field(100, gt=0, description="Optimizer steps.")
    learning_rate: float = Field(1e-6, gt=0, description="Peak learning rate.")
    lr_scheduler_type: Literal["cosine", "linear", "constant", "constant_with_warmup"] = Field(
        "cosine", description="Learning-rate schedule after warmup."
    )
    warmup_ratio: float = Field(0.0, ge=0, lt=1, description="Fraction of steps spent warming up.")
    warmup_steps: int = Field(0, ge=0, description="Warmup steps (overrides warmup_ratio when > 0).")
    per_device_train_batch_size: int = Field(
        8, gt=0, description="Completions per device per micro-step (prompts x num_generations)."
    )
    gradient_accumulation_steps: int = Field(1, gt=0, description="Micro-steps per optimizer step.")
    num_generations: int = Field(8, ge=2, description="Completions sampled per prompt (the group).")
    max_completion_length: int = Field(256, gt=0, description="Tokens generated per completion.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature during rollouts.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling during rollouts.")
    loss_type: Literal["grpo", "bnpo", "dr_grpo", "dapo", "cispo", "sapo"] = Field(
        "dapo", description="TRL loss aggregation ('dr_grpo' = Dr. GRPO, 'dapo' = token-level)."
    )
    beta: float = Field(0.0, ge=0, description="KL coefficient to the reference model (0 = no ref model).")
    epsilon: float = Field(0.2, gt=0, description="Lower clipping range.")
    epsilon_high: float | None = Field(None, gt=0, description="Upper clipping range (DAPO clip-higher).")
    scale_rewards: Literal["group", "batch", "none"] = Field(
        "group", description="Advantage scaling: by group std, batch std, or none (Dr. GRPO)."
    )
    num_iterations: int = Field(1, gt=0, description="Optimisation passes per generated batch (mu).")
    importance_sampling_level: Literal["token", "sequence"] = Field(
        "token",
        description="Importance ratio per token (GRPO) or per sequence (GSPO: the length-normalised sequence "
        "likelihood ratio, robust to MoE routing noise). sequence defaults loss_type to grpo and the clipping "
        f"range to the GSPO paper's (epsilon {GSPO_EPSILON}, epsilon_high {GSPO_EPSILON_HIGH}).",
    )
    mask_truncated_completions: bool = Field(False, description="Drop truncated completions from the loss.")
    dynamic_sampling: Literal["none", "filter"] = Field(
        "none",
        description="filter: drop the completions with zero advantage (groups whose rewards are all equal) before "
        "the gradient step, as DAPO's dynamic sampling filters them: no forward/backward is spent on them and the "
        "loss averages over the completions with signal (TRL logs their share as frac_reward_zero_std).",
    )
    gradient_checkpointing: bool = Field(False, description="Recompute activations to save memory.")
    on_nonfinite: Literal["stop", "skip"] = Field(
        "stop", description="NaN/inf loss or gradient: stop naming the step (stop) or drop that update (skip)."
    )
    seed: int = Field(0, description="Seed for sampling and initialisation.")
    logging_steps: int = Field(1, gt=0, description="Log metrics every N steps.")
    trl: dict[str, Any] = Field(
        default_factory=dict, description="Any other trl.GRPOConfig field, passed through after a check."
    )

    @field_validator("trl")
    @classmethod
    def _known_trl_fields(cls, value: dict[str, Any]) -> dict[str, Any]:
        check_passthrough(value, GRPO, set(cls.model_fields))
        return value

    @model_validator(mode="after")
    def _gspo_defaults(self) -> GRPOConfig:
        # A sequence ratio is a geometric mean over tokens: its natural spread is ~1e-3, so token-level
        # ranges (0.2) would never clip (GSPO, Zheng et al. 2025, sec. 5.1).
        if self.importance_sampling_level != "sequence":
            return self
        if "epsilon" not in self.model_fields_set:
            self.epsilon = GSPO_EPSILON
        if "epsilon_high" not in self.model_fields_set:
            self.epsilon_high = GSPO_EPSILON_HIGH
        if "loss_type" not in self.model_fields_set:
            self.loss_type = "grpo"
        elif self.loss_type in TOKEN_SUM_LOSSES:
            raise ValueError(
                f"importance_sampling_level: sequence with loss_type: {self.loss_type} sums per-token terms, weighting "
                "each sequence by its length instead of the GSPO objective; use loss_type: grpo (or sapo)"
            )
        return self

    @model_validator(mode="after")
    def _batch_fits_groups(self) -> GRPOConfig:
        total = self.per_device_train_batch_size * self.gradient_accumulation_steps
        if total % self.num_generations:
            raise ValueError(
                f"per_device_train_batch_size x gradient_accumulation_steps ({total}) must be a "
                f"multiple of num_generations ({self.num_generations})"
            )
        check_warmup_schedule(self.lr_scheduler_type, self.warmup_steps, self.warmup_ratio)
        return self


class TrainConfig(Section):
    """How the weights are trained (posttrain.models.precision)."""

    precision: Literal["auto", "fp32", "bf16", "fp16", "fp8"] = Field(
        "auto",
        description="Training precision; auto follows model.dtype (bfloat16 -> bf16, float16 -> fp16, else fp32). "
        "fp16 needs a CUDA GPU; fp8 needs compute capability 8.9+ (Hopper/Ada) and torchao.",
    )


class GenerationConfig(Section):
    """How completions are decoded (posttrain.models.generation): held-out eval, traces."""

    cache: Literal["dynamic", "static", "quantized"] = Field(
        "dynamic",
        description="KV cache: dynamic (default), static (preallocated) or quantized (4-bit; optimum-quanto or hqq).",
    )
    sampler: Literal["posttrain", "generate"] = Field(
        "posttrain",
        description="posttrain: our decode loop (each prompt prefilled once for its samples, finished rows leave "
        "the batch; same distribution); generate: transformers' generate. Static/quantized caches and settings "
        "the loop lacks use generate either way.",
    )


class GRPOGenerationConfig(GenerationConfig):
    """Generation for GRPO: our sampling (eval) and TRL's rollouts."""

    backend: Literal["transformers", "vllm"] = Field(
        "transformers", description="Rollout engine: transformers generate, or vLLM (CUDA GPU, posttrain[vllm])."
    )
    vllm_mode: Literal["colocate", "server"] = Field(
        "colocate", description="vLLM beside the trainer on the same GPUs, or a `trl vllm-serve` server."
    )
    vllm_server_host: str | None = Field(
        None, description="vllm_mode server: host of the server (TRL default 0.0.0.0)."
    )
    vllm_server_port: int | None = Field(
        None, gt=0, description="vllm_mode server: port of the server (TRL default 8000)."
    )
    rollout_autocast: Literal["none", "bf16", "fp16"] = Field(
        "none",
        description="transformers backend: sample the rollouts under autocast to this dtype while training keeps "
        "train.precision, as a bf16 inference engine samples for an fp32 trainer (faster rollouts on GPUs; "
        "the sampler-trainer mismatch that moe.routing_replay and GSPO address).",
    )

    @model_validator(mode="after")
    def _vllm_fields_fit(self) -> GRPOGenerationConfig:
        # By value, not by keys set: a dumped recipe.yaml (defaults written out) must load back.
        server = [k for k in ("vllm_server_host", "vllm_server_port") if getattr(self, k) is not None]
        if self.backend != "vllm" and (server or self.vllm_mode == "server"):
            raise ValueError("vllm_mode: server and vllm_server_* apply to backend: vllm only")
        if server and self.vllm_mode != "server":
            raise ValueError(f"{', '.join(server)} apply to vllm_mode: server only")
        if self.backend == "vllm" and self.rollout_autocast != "none":
            raise ValueError("rollout_autocast applies to backend: transformers (vLLM samples in its own dtype)")
        return self


class OutputConfig(Section):
    dir: str = Field("outputs/run", description="Where the run writes (checkpoints, metrics, summary).")
    save_steps: int = Field(0, ge=0, description="Checkpoint every N steps (0: only at the end).")
    save_total_limit: int = Field(2, gt=0, description="Keep the newest N checkpoints.")
    plots: bool = Field(True, description="Write reward.png.")
    push_to_hub: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][\w.-]*/[\w.-]+$",
        description="Hub repo (user/name) that gets the trained model, its card and recipe when the run ends; "
        "checked before any work.",
    )
    hub_private: bool = Field(True, description="Create the push_to_hub repo as private.")
    report_to: list[Literal["tensorboard", "wandb", "trackio", "mlflow"]] = Field(
        default_factory=list,
        description="Experiment trackers for every training stage (warm-start, GRPO, each distillation stage), "
        "each stage in out/runs/<stage>; our metrics (routing, step split, held-out, cost) beside TRL's. "
        "[] or 'none': no tracker.",
    )

    @field_validator("report_to", mode="before")
    @classmethod
    def _none_or_list(cls, value):
        if value is None or value == "none" or value == ["none"]:
            return []
        return [v.strip() for v in value.split(",")] if isinstance(value, str) else value


class MoEConfig(Section):
    """Mixture-of-Experts routing during training (see posttrain.models.moe)."""

    balancing: Literal["loss_free", "aux_loss", "none"] = Field(
        "none",
        description="loss_free: DeepSeek-V3 bias update; aux_loss: Switch loss; none. "
        "With loss_free, model.warmstart of an MoE balances too (DeepSeek-V3 trains the bias throughout pre-training).",
    )
    bias_update_speed: float = Field(1e-3, gt=0, description="gamma of the loss-free bias update.")
    aux_loss_coef: float = Field(1e-3, ge=0, description="Weight of the auxiliary load-balancing loss.")
    freeze_router: bool = Field(False, description="Keep router weights fixed during training.")
    telemetry: bool = Field(
        True,
        description="Log per-layer expert load, MaxVio and routing entropy; in GRPO also the sampler-trainer "
        "mismatch (routing flip rate, log-prob gap, importance ratios).",
    )
    routing_replay: Literal["none", "rollout", "old_policy"] = Field(
        "none",
        description="GRPO: force the experts chosen while sampling (rollout, R3) or in the old-policy pass "
        "(old_policy, R2) in every training forward; gate weights stay live, so the router still learns.",
    )


class CostConfig(Section):
    usd_per_gpu_hour: float = Field(
        2.0, ge=0, description="Price of one device-hour; summary.json reports dollars per stage (DeepSeek used $2)."
    )


class GRPORecipe(Section):
    """A GRPO recipe: model -> data -> rewards -> trainer -> outputs."""

    model: ModelConfig
    data: DataConfig
    rewards: RewardsConfig
    grpo: GRPOConfig = Field(default_factory=GRPOConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    generation: GRPOGenerationConfig = Field(default_factory=GRPOGenerationConfig)
    moe: MoEConfig = Field(default_factory=MoEConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    cost: CostConfig = Field(default_factory=CostConfig)

    @field_validator("model")
    @classmethod
    def _policy_trains(cls, value: ModelConfig) -> ModelConfig:
        value.check_trainable_in_4bit()
        return value

    @model_validator(mode="after")
    def _replay_has_a_recorder(self) -> GRPORecipe:
        if self.moe.routing_replay == "none":
            return self
        if self.generation.backend == "vllm":
            raise ValueError(
                "moe.routing_replay needs generation.backend: transformers: TRL's vLLM client returns no routed "
                "experts (vLLM's enable_return_routed_experts does not reach the trainer); use GSPO "
                "(grpo.importance_sampling_level: sequence) with vLLM"
            )
        if self.grpo.trl.get("use_transformers_paged"):
            raise ValueError(
                "moe.routing_replay cannot record transformers' paged (continuous-batching) generation; "
                "drop grpo.trl.use_transformers_paged"
            )
        return self
