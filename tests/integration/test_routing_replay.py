"""Routing replay through TRL's GRPO step: which experts each policy-gradient forward is given, for
none / rollout (R3) / old_policy (R2), across shuffling, gradient accumulation and num_iterations;
the mismatch telemetry; GSPO's mapping; and the refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from posttrain.config.loader import load_recipe
from posttrain.config.schema import GRPOConfig as GRPOSection
from posttrain.config.schema import GRPORecipe
from posttrain.data.load import to_prompt
from posttrain.data.splits import make_splits
from posttrain.errors import PosttrainError
from posttrain.grpo.trainer import build_trainer, grpo_args
from posttrain.models.builders import build_model
from posttrain.models.replay import RoutingReplay
from posttrain.models.tokenizer import build_char_tokenizer
from posttrain.rewards.registry import build
from posttrain.telemetry.metrics_log import MetricsLogger, StepTimer

REPO = Path(__file__).resolve().parents[2]
# tiny-math.yaml sets loss_type: dr_grpo, which sums token terms: GSPO there names its loss.
GSPO = ("grpo.importance_sampling_level=sequence", "grpo.loss_type=grpo")
TINY = json.loads((REPO / "tests" / "fixtures" / "tiny_models.json").read_text())["tiny_moe"]


def recipe(out: Path, quick_overrides: list[str], *extra: str) -> GRPORecipe:
    sets = [
        *quick_overrides,
        f"output.dir={out}",
        "eval.enabled=false",
        "grpo.beta=0.0",
        "data.num_train=24",
        "grpo.max_steps=2",
        "grpo.per_device_train_batch_size=4",
        "grpo.gradient_accumulation_steps=2",
        "grpo.learning_rate=0.05",  # big steps: the second pass's router differs from the old policy's
        "generation.rollout_autocast=bf16",
        "rewards.functions=[{name: length, kwargs: {unit: chars}}]",
        *extra,
    ]
    return load_recipe(REPO / "recipes/tiny-math.yaml", GRPORecipe, sets)


def train(r: GRPORecipe, out: Path, spy: list | None = None):
    tokenizer = build_char_tokenizer()
    model = build_model("tiny-moe", tokenizer, seed=0, **r.model.builder_args)
    rows = [
        {**x, "prompt": to_prompt(x["question"], r.data.system_prompt, True)} for x in make_splits(r.data, r.eval).train
    ]
    timer = StepTimer()
    trainer = build_trainer(
        r,
        model,
        tokenizer,
        build(r.rewards.functions)[0],
        rows,
        out / "ck",
        [timer, MetricsLogger(out / "m.jsonl", timer)],
    )
    if spy is not None:
        _spy(trainer, spy)
    trainer.train()
    return trainer, [json.loads(line) for line in (out / "m.jsonl").read_text().splitlines()]


def _spy(trainer, calls: list) -> None:
    """Record, per policy-gradient forward, the experts forced and the batch's recorded tensors."""
    compute_loss = trainer._compute_loss

    def spied(model, inputs):
        target = trainer.routing.target

        def capture(experts, *, replay, reference=None):
            calls.append({"forced": experts, "replay": replay, "inputs": dict(inputs)})
            return target(experts, replay=replay, reference=reference)

        trainer.routing.target = capture
        try:
            return compute_loss(model, inputs)
        finally:
            del trainer.routing.target

    trainer._compute_loss = spied


def _rows(t: torch.Tensor) -> set[bytes]:
    return {row.numpy().tobytes() for row in t.cpu()}


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["none", "rollout", "old_policy"])
def test_each_gradient_step_gets_the_experts_its_mode_names(mode, quick_overrides, tmp_path):
    r = recipe(tmp_path, quick_overrides, f"moe.routing_replay={mode}", "grpo.num_iterations=2")
    calls: list = []
    trainer, rows = train(r, tmp_path, calls)
    # 2 optimizer steps x 2 micro-batches; the generation batch is reused for the second pass
    assert len(calls) == 4
    for call in calls:
        inputs = call["inputs"]
        rollout = inputs["rollout_experts"]
        width = inputs["prompt_ids"].shape[1] + inputs["completion_ids"].shape[1]
        assert rollout.shape == (4, width, TINY["num_layers"], TINY["num_experts_per_tok"])
        if mode == "none":
            assert call["forced"] is None and not call["replay"]
        elif mode == "rollout":
            assert call["replay"] and call["forced"] is rollout
        else:
            old = inputs["old_experts"]  # recorded in the old-policy pass, shuffled and split with the batch
            assert call["replay"] and call["forced"] is old and old.shape == rollout.shape
            attention = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], 1).bool()
            assert (old[~attention] == -1).all() and (old[attention] >= 0).all()  # a full forward: every token
    if mode == "old_policy":  # both passes over one batch replay the same old-policy experts
        first, second = calls[0]["inputs"]["old_experts"], calls[2]["inputs"]["old_experts"]
        assert _rows(first) | _rows(calls[1]["inputs"]["old_experts"]) == _rows(second) | _rows(
            calls[3]["inputs"]["old_experts"]
        )
    flips = [row["routing/flip_rate"] for row in rows]
    router = [row["routing/router_flip_rate"] for row in rows]
    if mode == "rollout":
        assert flips == [0.0, 0.0] and all(x >= 0 for x in router)
    if mode == "none":
        assert flips == router  # nothing forced: the experts used are the router's own
    assert all(row["mismatch/logp_abs_p99"] >= row["mismatch/logp_abs_mean"] > 0 for row in rows)  # bf16 sampler
    assert all(row["mismatch/ratio_min"] <= row["mismatch/ratio_mean"] <= row["mismatch/ratio_max"] for row in rows)


def test_gspo_maps_onto_trl_with_its_clipping_range(quick_overrides, tmp_path):
    section = GRPOSection(importance_sampling_level="sequence")  # nothing else set: the GSPO paper's setup
    assert (section.loss_type, section.epsilon, section.epsilon_high) == ("grpo", 3e-4, 4e-4)
    r = recipe(tmp_path, quick_overrides, *GSPO)
    args = grpo_args(r, tmp_path)
    assert (args.importance_sampling_level, args.loss_type) == ("sequence", "grpo")
    assert (args.epsilon, args.epsilon_high) == (3e-4, 4e-4)
    own = recipe(tmp_path, quick_overrides, *GSPO, "grpo.epsilon=1e-3")
    assert (own.grpo.epsilon, own.grpo.epsilon_high) == (1e-3, 4e-4)  # a range set in the recipe stays
    token = recipe(tmp_path, quick_overrides)
    assert grpo_args(token, tmp_path).importance_sampling_level == "token" and token.grpo.epsilon == 0.2
    with pytest.raises(PosttrainError, match="loss_type: dapo sums per-token terms"):
        recipe(tmp_path, quick_overrides, "grpo.importance_sampling_level=sequence", "grpo.loss_type=dapo")


@pytest.mark.slow
def test_gspo_with_replay_trains_and_reports_sequence_ratios(quick_overrides, tmp_path):
    r = recipe(
        tmp_path,
        quick_overrides,
        *GSPO,
        "moe.routing_replay=rollout",
        "grpo.num_iterations=2",
    )
    trainer, rows = train(r, tmp_path)
    assert trainer.importance_sampling_level == "sequence"
    assert all(row["routing/flip_rate"] == 0.0 for row in rows)
    assert all(
        "clip_ratio/region_mean" in row and row["mismatch/ratio_max"] >= row["mismatch/ratio_min"] for row in rows
    )


def test_refusals_name_the_fix(quick_overrides, tmp_path):
    with pytest.raises(PosttrainError, match="moe.routing_replay needs generation.backend: transformers"):
        recipe(
            tmp_path,
            quick_overrides,
            "moe.routing_replay=rollout",
            "generation.backend=vllm",
            "generation.rollout_autocast=none",
        )
    with pytest.raises(PosttrainError, match="paged"):
        recipe(tmp_path, quick_overrides, "moe.routing_replay=rollout", "grpo.trl={use_transformers_paged: true}")
    with pytest.raises(PosttrainError, match="rollout_autocast applies to backend: transformers"):
        recipe(tmp_path, quick_overrides, "generation.backend=vllm")
    dense = recipe(
        tmp_path,
        quick_overrides,
        "moe.routing_replay=rollout",
        "model.name_or_path=build:tiny-dense",
        "model.builder_args={}",
        "moe.telemetry=false",
    )
    tokenizer = build_char_tokenizer()
    model = build_model("tiny-dense", tokenizer, seed=0)
    with pytest.raises(PosttrainError, match="moe.routing_replay=rollout: .* has no MoE layers"):
        build_trainer(dense, model, tokenizer, build(dense.rewards.functions)[0], [{"prompt": "1+1="}] * 8, tmp_path)


def test_telemetry_off_records_nothing(quick_overrides, tmp_path):
    r = recipe(tmp_path, quick_overrides, "moe.telemetry=false")
    tokenizer = build_char_tokenizer()
    model = build_model("tiny-moe", tokenizer, seed=0, **r.model.builder_args)
    trainer = build_trainer(r, model, tokenizer, build(r.rewards.functions)[0], [{"prompt": "1+1="}] * 8, tmp_path)
    assert trainer.routing is None and trainer.rollout_autocast is torch.bfloat16
    on = recipe(tmp_path, quick_overrides)
    trainer = build_trainer(on, model, tokenizer, build(on.rewards.functions)[0], [{"prompt": "1+1="}] * 8, tmp_path)
    assert isinstance(trainer.routing, RoutingReplay) and trainer.routing_replay == "none"


@pytest.mark.slow
def test_lora_reference_pass_is_recognised_and_never_replayed(quick_overrides, tmp_path):
    """With LoRA, TRL's KL reference is the same model with its adapters off: that pass routes itself."""
    r = recipe(
        tmp_path,
        quick_overrides,
        "moe.routing_replay=old_policy",
        "grpo.num_iterations=2",
        "grpo.beta=0.05",
        "model.lora.enabled=true",
        "model.lora.r=4",
    )
    tokenizer = build_char_tokenizer()
    model = build_model("tiny-moe", tokenizer, seed=0, **r.model.builder_args)
    rows = [
        {**x, "prompt": to_prompt(x["question"], r.data.system_prompt, True)} for x in make_splits(r.data, r.eval).train
    ]
    trainer = build_trainer(r, model, tokenizer, build(r.rewards.functions)[0], rows, tmp_path / "ck")
    seen = []
    reference_pass = trainer._reference_pass
    trainer._reference_pass = lambda m: seen.append(reference_pass(m)) or seen[-1]
    captured = []
    trainer.routing.captured = lambda record, real=trainer.routing.captured: (
        captured.append(real(record)) or captured[-1]
    )
    trainer.train()
    # per generation: the old-policy pass (recorded for R2), then the reference pass (adapters off)
    assert seen and seen == [False, True] * (len(seen) // 2)  # per generation batch, the old pass first
    assert all((c[..., 0, 0] >= 0).any() for c in captured)
