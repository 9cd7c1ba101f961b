"""Loss-free balancing inside a real TRL GRPO run on the tiny MoE: biases move, are checkpointed, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import TrainerCallback

from posttrain.config.loader import load_recipe
from posttrain.config.schema import GRPORecipe
from posttrain.models.balancing import moe_callbacks
from posttrain.models.moe import find_moe_layers

REPO = Path(__file__).resolve().parents[2]
GAMMA = 0.01


class BiasAtStart(TrainerCallback):
    """Snapshots the routers' biases when training starts (after a resume has loaded the checkpoint)."""

    def __init__(self, model) -> None:
        self.model, self.biases = model, None

    def on_train_begin(self, args, state, control, **kwargs):
        self.biases = biases(self.model)


def biases(model) -> torch.Tensor:
    return torch.stack([layer.bias.detach().clone() for layer in find_moe_layers(model)])


def make_trainer(recipe: GRPORecipe, tokenizer, out: Path, extra=()):
    from posttrain.data.load import to_prompt
    from posttrain.data.splits import make_splits
    from posttrain.grpo.trainer import build_trainer
    from posttrain.models.builders import build_model
    from posttrain.rewards.registry import build

    model = build_model("tiny-moe", tokenizer, seed=0, **recipe.model.builder_args)
    rewards, _ = build(recipe.rewards.functions)
    rows = [
        {**r, "prompt": to_prompt(r["question"], recipe.data.system_prompt, True)}
        for r in make_splits(recipe.data, recipe.eval).train
    ]
    from posttrain.telemetry.metrics_log import MetricsLogger, StepTimer

    timer = StepTimer()  # the order run.py's _train uses: moe callbacks before the metrics logger
    callbacks = [
        timer,
        *moe_callbacks(recipe.moe, model, out),
        MetricsLogger(out / "metrics.jsonl", timer),
        *(cb(model) for cb in extra),
    ]
    trainer = build_trainer(recipe, model, tokenizer, rewards, rows, out / "checkpoints", callbacks=callbacks)
    return trainer, model, callbacks


@pytest.mark.slow
def test_loss_free_biases_train_save_and_resume(quick_overrides, char_tokenizer, tmp_path):
    sets = [
        *quick_overrides,
        "moe.balancing=loss_free",
        f"moe.bias_update_speed={GAMMA}",
        "output.save_steps=1",
        "eval.enabled=false",
        "data.num_train=32",
        "grpo.beta=0.0",
    ]  # a model built in memory has no path for TRL's reference model
    recipe = load_recipe(REPO / "recipes/tiny-math.yaml", GRPORecipe, sets)
    out = tmp_path / "run"

    trainer, model, _ = make_trainer(recipe, char_tokenizer, out)
    assert biases(model).abs().sum() == 0
    trainer.train()
    trained = biases(model)
    assert trained.abs().sum() > 0  # the loss-free update ran
    assert torch.allclose(trained / GAMMA, torch.round(trained / GAMMA), atol=1e-4)  # whole gamma steps
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in logged] == [1, 2] and all("moe/max_vio_mean" in row for row in logged)
    assert len(logged[-1]["moe/layer0/load"]) == 4 and {
        "moe/layer0/load",
        "moe/layer1/max_vio",
        "moe/bias_absmax",
    } <= set(logged[-1])
    assert (out / "expert_load.png").stat().st_size > 1000

    from safetensors.torch import load_file

    saved = load_file(out / "checkpoints/checkpoint-2/model.safetensors")
    assert torch.equal(saved["model.layers.1.mlp.gate.e_score_correction_bias"], trained[1])

    resumed_recipe = load_recipe(REPO / "recipes/tiny-math.yaml", GRPORecipe, [*sets, "grpo.max_steps=3"])
    trainer, model, callbacks = make_trainer(resumed_recipe, char_tokenizer, out, extra=[BiasAtStart])
    assert biases(model).abs().sum() == 0  # a fresh init...
    trainer.train(resume_from_checkpoint=str(out / "checkpoints/checkpoint-2"))
    assert torch.equal(callbacks[-1].biases, trained)  # ...restored from the checkpoint on resume
    assert trainer.state.global_step == 3
    step = biases(model) - trained
    assert torch.allclose(step.abs(), torch.where(step.abs() > 0, GAMMA, 0.0), atol=1e-6)


def test_loss_free_warmstart_balances_before_grpo(quick_overrides, tmp_path):
    """DeepSeek-V3 trains the routing bias throughout pre-training: the warm-start SFT does too, so GRPO
    starts from moved biases (saved in out/base) -- with routers that train, even when GRPO freezes them."""
    from rich.console import Console

    from posttrain.data.load import to_prompt
    from posttrain.data.splits import make_splits
    from posttrain.grpo.run import _base_model
    from posttrain.models.loading import load_model, load_tokenizer, resolve_model_path

    gamma = 0.01
    sets = [*quick_overrides, "moe.balancing=loss_free", f"moe.bias_update_speed={gamma}", "moe.freeze_router=true"]
    recipe = load_recipe(REPO / "recipes/tiny-math.yaml", GRPORecipe, sets)
    out = tmp_path / "run"
    path = resolve_model_path(recipe.model, out, seed=0)
    tokenizer = load_tokenizer(path)
    splits = make_splits(recipe.data, recipe.eval, recipe.model.warmstart)
    prompt = lambda row: to_prompt(row["question"], recipe.data.system_prompt, tokenizer.chat_template is not None)  # noqa: E731

    model, _ = _base_model(recipe, path, tokenizer, splits.warmstart, prompt, out, Console(quiet=True))
    warmed = biases(model)
    assert warmed.abs().sum() > 0 and torch.allclose(warmed / gamma, torch.round(warmed / gamma), atol=1e-4)
    assert torch.equal(biases(load_model(str(out / "base"))), warmed)  # what GRPO (and a resume) starts from
    initial = load_model(path)
    assert not torch.equal(find_moe_layers(initial)[0].router.weight, find_moe_layers(model)[0].router.weight)
