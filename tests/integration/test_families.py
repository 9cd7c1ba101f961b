"""The family matrix: every MoE family posttrain supports, as a tiny random stand-in of the real
transformers class with a real-format byte-level BPE tokenizer, through GRPO (full and LoRA), loss-free
balancing, routing telemetry, reload, `posttrain eval` and `posttrain distill` as the teacher.

Each cell asserts what it claims (README "Supported model families" names these tests): weights and
biases moved, routing shares sum to one, a reload computes the same log-probs as the model in memory.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from posttrain.cli.app import app
from posttrain.config.builders import MOE_FAMILIES
from posttrain.config.loader import load_recipe
from posttrain.config.schema import GRPORecipe
from posttrain.data.load import to_prompt
from posttrain.data.splits import make_splits
from posttrain.errors import PosttrainError
from posttrain.grpo.trainer import build_trainer
from posttrain.models.balancing import AUX_LOSS_FAMILIES, moe_callbacks
from posttrain.models.builders import build_model
from posttrain.models.loading import load_model, save_pretrained
from posttrain.models.moe import find_moe_layers
from posttrain.models.tokenizer import build_tokenizer
from posttrain.rewards.registry import build
from posttrain.telemetry.metrics_log import MetricsLogger, StepTimer

REPO = Path(__file__).resolve().parents[2]
_TINY = json.loads((REPO / "tests" / "fixtures" / "tiny_models.json").read_text())
GAMMA = 0.01
# Each family with the template style of its real checkpoints: DeepSeek's opened <think>, ChatML elsewhere.
STYLE = {family: "bpe-r1" if family.startswith("deepseek") else "bpe-qwen3" for family in MOE_FAMILIES}
runner = CliRunner()


@functools.cache
def tokenizer_for(style: str):
    return build_tokenizer(style)


def builder_args(family: str) -> dict:
    return {**_TINY["tiny_moe"], "family": family, "tokenizer": STYLE[family]}


def recipe_for(family: str, out: Path, quick_overrides: list[str], *extra: str) -> GRPORecipe:
    sets = [
        *quick_overrides,
        f"output.dir={out}",
        f"model.builder_args={json.dumps(builder_args(family))}",
        "moe.balancing=loss_free",
        f"moe.bias_update_speed={GAMMA}",
        "eval.enabled=false",
        "grpo.beta=0.0",  # a model built in memory has no path for TRL's reference model
        "data.num_train=24",
        "grpo.max_steps=3",
        # Kimi length reward over characters: random completions differ in length, so advantages are not zero.
        "rewards.functions=[{name: length, kwargs: {unit: chars}}]",
        *extra,
    ]
    return load_recipe(REPO / "recipes/tiny-math.yaml", GRPORecipe, sets)


def train(recipe: GRPORecipe, family: str, out: Path):
    tokenizer = tokenizer_for(STYLE[family])
    model = build_model("tiny-moe", tokenizer, seed=0, **recipe.model.builder_args)
    rewards, _ = build(recipe.rewards.functions)
    rows = [
        {**r, "prompt": to_prompt(r["question"], recipe.data.system_prompt, True)}
        for r in make_splits(recipe.data, recipe.eval).train
    ]
    timer = StepTimer()
    callbacks = [timer, *moe_callbacks(recipe.moe, model, out), MetricsLogger(out / "metrics.jsonl", timer)]
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    trainer = build_trainer(recipe, model, tokenizer, rewards, rows, out / "checkpoints", callbacks=callbacks)
    trainer.train()
    return trainer, model, tokenizer, before


def log_probs(model, tokenizer) -> torch.Tensor:
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is 12+34+5?"}, {"role": "assistant", "content": "12+34=46 46+5=51"}],
        tokenize=False,
    )
    ids = tokenizer(text, return_tensors="pt").input_ids
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=ids).logits[:, :-1].float()
    return logits.log_softmax(-1).gather(-1, ids[:, 1:, None]).squeeze(-1)


def biases(model) -> torch.Tensor:
    """Selection biases per layer; zeros where none is installed (a softmax router never balanced)."""
    return torch.stack(
        [
            torch.zeros(layer.num_experts) if layer.bias is None else layer.bias.detach().float().clone()
            for layer in find_moe_layers(model)
        ]
    )


@pytest.mark.slow
@pytest.mark.parametrize("family", MOE_FAMILIES)
def test_grpo_full_balances_and_reloads(family, quick_overrides, tmp_path):
    out = tmp_path / "run"
    recipe = recipe_for(family, out, quick_overrides)
    trainer, model, tokenizer, before = train(recipe, family, out)

    changed = [name for name, p in model.named_parameters() if not torch.equal(p, before[name])]
    assert any(".experts." in n for n in changed) and any("attn" in n for n in changed), changed
    trained = biases(model)
    assert trained.abs().sum() > 0  # loss-free balancing moved the selection biases ...
    assert torch.allclose(trained / GAMMA, torch.round(trained / GAMMA), atol=1e-4)  # ... by whole gamma steps
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    loads = [row[f"moe/layer{i}/load"] for row in rows for i in range(_TINY["tiny_moe"]["num_layers"])]
    assert len(loads) == 3 * _TINY["tiny_moe"]["num_layers"]
    assert all(abs(sum(load) - 1) < 1e-3 and len(load) == _TINY["tiny_moe"]["n_routed_experts"] for load in loads)

    save_pretrained(model, tokenizer, out / "policy")
    reloaded = load_model(str(out / "policy"))
    assert torch.equal(biases(reloaded), trained)  # the balancing survives a reload, every family
    assert torch.allclose(log_probs(reloaded, tokenizer), log_probs(model, tokenizer), atol=1e-5)


@pytest.mark.parametrize("family", MOE_FAMILIES)
def test_aux_loss_is_added_or_refused_by_name(family, quick_overrides, tmp_path):
    out = tmp_path / "run"
    recipe = recipe_for(family, out, quick_overrides, "moe.balancing=aux_loss", "moe.aux_loss_coef=0.01")
    if family not in AUX_LOSS_FAMILIES:
        with pytest.raises(PosttrainError, match=r"moe.balancing=aux_loss: \w+ForCausalLM .*loss_free"):
            train(recipe, family, out)
        return
    train(recipe, family, out)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all(row["aux_loss"] > 1 for row in rows)  # Switch loss: 1.0 when balanced, x top-k


@pytest.mark.slow
@pytest.mark.parametrize("family", MOE_FAMILIES)
def test_rollout_replay_every_family(family, quick_overrides, tmp_path):
    """R3 through TRL's step: bf16 rollouts for an fp32 trainer, two optimisation passes per batch,
    gradient accumulation and checkpointing. The trainer uses exactly the rollout's experts (flip
    rate 0 in every step) while the loss-free bias still moves, counted from the replayed selection."""
    out = tmp_path / "run"
    recipe = recipe_for(
        family,
        out,
        quick_overrides,
        "moe.routing_replay=rollout",
        "generation.rollout_autocast=bf16",
        "grpo.num_iterations=2",
        "grpo.per_device_train_batch_size=4",
        "grpo.gradient_accumulation_steps=2",
        "grpo.gradient_checkpointing=true",
    )
    trainer, model, tokenizer, before = train(recipe, family, out)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 3
    assert all(row["routing/flip_rate"] == 0.0 and row["routing/token_flip_rate"] == 0.0 for row in rows)
    assert all(0 <= row["routing/router_flip_rate"] <= 1 and row["mismatch/logp_abs_mean"] > 0 for row in rows)
    assert biases(model).abs().sum() > 0
    routers = [layer.name + ".weight" for layer in find_moe_layers(model)]
    assert any(not torch.equal(model.get_parameter(n), before[n]) for n in routers)  # the router still learns


@pytest.mark.slow
@pytest.mark.parametrize("family", MOE_FAMILIES)
def test_grpo_lora_adapts_fused_experts(family, quick_overrides, tmp_path):
    out = tmp_path / "run"
    recipe = recipe_for(
        family,
        out,
        quick_overrides,
        "model.lora.enabled=true",
        "model.lora.r=4",
        "model.lora.target_parameters=experts",
        "grpo.learning_rate=1e-2",
    )
    trainer, model, tokenizer, before = train(recipe, family, out)
    peft_model = trainer.model
    adapted = {n: p for n, p in peft_model.named_parameters() if p.requires_grad}
    # LoRA B starts at zero: non-zero after training means the adapters trained, on experts and attention.
    assert any("experts" in n and "lora_B" in n and p.abs().sum() > 0 for n, p in adapted.items()), list(adapted)
    assert any("attn" in n and "lora_B" in n and p.abs().sum() > 0 for n, p in adapted.items())
    base = {n.replace("base_model.model.", "").replace(".base_layer", ""): p for n, p in peft_model.named_parameters()}
    assert set(before) <= set(base) and all(torch.equal(base[n], before[n]) for n in before)  # the base is frozen

    merged = peft_model.merge_and_unload()
    save_pretrained(merged, tokenizer, out / "merged")
    reloaded = load_model(str(out / "merged"))
    assert torch.allclose(log_probs(reloaded, tokenizer), log_probs(merged, tokenizer), atol=1e-5)


def grpo_cli(family: str, run: Path, quick_overrides: list[str]) -> None:
    sets = [*quick_overrides, f"output.dir={run}", f"model.builder_args={json.dumps(builder_args(family))}"]
    result = runner.invoke(
        app,
        [
            "grpo",
            str(REPO / "recipes/tiny-math.yaml"),
            *(x for s in [*sets, "moe.balancing=loss_free"] for x in ("--set", s)),
        ],
    )
    assert result.exit_code == 0, result.output


def distill_cli(teacher: Path, out: Path, distill_overrides: list[str], *sets: str):
    keep = [s for s in distill_overrides if not s.startswith(("output.dir", "teacher.", "student.builder_args"))]
    result = runner.invoke(
        app,
        ["distill", str(REPO / "recipes/tiny-distill.yaml"), "--teacher", str(teacher)]
        + [x for s in [*keep, f"output.dir={out}", *sets] for x in ("--set", s)],
    )
    return result


@pytest.mark.slow
@pytest.mark.parametrize("family", MOE_FAMILIES)
def test_cli_grpo_eval_and_distill_within_family(family, quick_overrides, distill_overrides, tmp_path):
    """`posttrain grpo`, then `posttrain eval --model` on its policy (routing stats), then `posttrain distill`
    with that policy as the teacher and a smaller student of the same family, balanced loss-free."""
    run = tmp_path / "grpo"
    grpo_cli(family, run, quick_overrides)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 2 and summary["params_active"] < summary["params_total"]

    report_dir = tmp_path / "eval"
    result = runner.invoke(
        app,
        ["eval", "--model", str(run), "--data", "arithmetic", "--n", "2", "--num-problems", "4"]
        + ["--max-new-tokens", "8", "--output-dir", str(report_dir)],
    )
    assert result.exit_code == 0, result.output
    routing = json.loads((report_dir / "report.json").read_text())["routing"]
    assert len(routing["layers"]) == _TINY["tiny_moe"]["num_layers"]
    assert all(abs(sum(layer["load_share"]) - 1) < 1e-6 for layer in routing["layers"].values())
    mismatch = routing["decode_mismatch"]  # cached decoding vs one full forward, fp32: (nearly) the same experts
    assert mismatch["tokens"] >= 4 * 2 and mismatch["flip_rate"] < 0.02 and mismatch["logp_abs_mean"] < 1e-4

    out = tmp_path / "distill"
    student_args = {**_TINY["tiny_moe"], "family": family, "hidden_size": 16}
    result = distill_cli(
        run,
        out,
        distill_overrides,
        "student.name_or_path=build:tiny-moe",
        f"student.builder_args={json.dumps(student_args)}",
        "moe.balancing=loss_free",
        "moe.bias_update_speed=0.01",
        "distill.logit_kd.enabled=true",
    )
    assert result.exit_code == 0, result.output
    report = json.loads((out / "summary.json").read_text())
    assert report["traces"]["kept"] > 0 and report["topk"]["tokens"] > 0  # the teacher's traces and its logits
    assert report["teacher"]["params_active"] < report["teacher"]["params_total"]  # an MoE teacher, counted so
    student, initial = load_model(str(out)), load_model(str(out / "build" / "student"))
    assert any(not torch.equal(a, b) for a, b in zip(student.parameters(), initial.parameters()))
    assert biases(student).abs().sum() > 0 and biases(initial).abs().sum() == 0  # the student balanced, saved


@pytest.mark.slow
@pytest.mark.parametrize(("family", "tokenizer"), [("qwen3", None), ("llama", "char")])
def test_dense_student_of_an_moe_teacher(family, tokenizer, quick_overrides, distill_overrides, tmp_path):
    """A dense student with the teacher's tokenizer takes both KD stages; one with another vocabulary
    (cross-tokenizer) learns from the text traces, and logit KD is refused before any work, naming
    sequence KD."""
    run = tmp_path / "grpo"
    grpo_cli("qwen3_moe", run, quick_overrides)
    args = {**_TINY["tiny_dense"], "family": family, **({"tokenizer": tokenizer} if tokenizer else {})}
    sets = ["student.name_or_path=build:tiny-dense", f"student.builder_args={json.dumps(args)}"]
    if tokenizer:
        refused = distill_cli(run, tmp_path / "refused", distill_overrides, *sets, "distill.logit_kd.enabled=true")
        assert refused.exit_code == 2 and "distill.logit_kd.enabled=false" in refused.output, refused.output
        assert not (tmp_path / "refused" / "traces_raw.jsonl").exists()
    out = tmp_path / "distill"
    result = distill_cli(run, out, distill_overrides, *sets, f"distill.logit_kd.enabled={tokenizer is None}")
    assert result.exit_code == 0, result.output
    student, initial = load_model(str(out)), load_model(str(out / "build" / "student"))
    assert type(student).__name__ == {"qwen3": "Qwen3ForCausalLM", "llama": "LlamaForCausalLM"}[family]
    assert any(not torch.equal(a, b) for a, b in zip(student.parameters(), initial.parameters()))
    vocab = len(build_tokenizer(tokenizer)) if tokenizer else len(tokenizer_for(STYLE["qwen3_moe"]))
    assert student.get_input_embeddings().weight.shape[0] == vocab


@pytest.mark.slow
def test_chat_template_kwargs_reach_every_rendering(quick_overrides, distill_overrides, tmp_path, monkeypatch):
    """`data.chat_template_kwargs: {enable_thinking: false}` renders every prompt of a run with thinking
    off: the warm-start's SFT rows, TRL's rollouts, held-out eval, teacher traces and both KD stages."""
    from transformers import PreTrainedTokenizerBase

    calls = []
    original = PreTrainedTokenizerBase.apply_chat_template

    def spy(self, conversation, *args, **kwargs):
        calls.append(kwargs.get("enable_thinking"))
        return original(self, conversation, *args, **kwargs)

    monkeypatch.setattr(PreTrainedTokenizerBase, "apply_chat_template", spy)
    monkeypatch.setattr("posttrain.rewards.format._warned_prefill", False)  # it warns once per process
    off = "data.chat_template_kwargs={enable_thinking: false}"
    with pytest.warns(UserWarning, match="thinking is off"):
        grpo_cli("qwen3_moe", tmp_path / "grpo", [*quick_overrides, off])
    grpo_calls, calls[:] = list(calls), []
    small = f"student.builder_args={json.dumps(_TINY['tiny_dense'])}"
    result = distill_cli(
        tmp_path / "grpo", tmp_path / "distill", distill_overrides, off, small, "distill.logit_kd.enabled=true"
    )
    assert result.exit_code == 0, result.output
    assert len(grpo_calls) > 20 and len(calls) > 20
    assert set(grpo_calls) == set(calls) == {False}


@pytest.mark.slow
def test_shipped_gsm8k_and_math500_through_a_thinking_template(quick_overrides, tmp_path, monkeypatch):
    """GSM8K rows (the shipped slice) train a Qwen3-MoE stand-in through its ChatML template with a system
    prompt, MATH-500 rows are its held-out set, and the answers real models write score as they should."""
    from transformers import AutoTokenizer, PreTrainedTokenizerBase

    from posttrain.data.load import load_rows
    from posttrain.rewards.math import accuracy

    conversations = []
    original = PreTrainedTokenizerBase.apply_chat_template

    def spy(self, conversation, *args, **kwargs):
        batch = conversation if conversation and isinstance(conversation[0], list) else [conversation]
        conversations.extend(batch)
        return original(self, conversation, *args, **kwargs)

    monkeypatch.setattr(PreTrainedTokenizerBase, "apply_chat_template", spy)
    run = tmp_path / "grpo"
    system = "Reason in <think></think>, then answer in \\boxed{}."
    grpo_cli(
        "qwen3_moe",
        run,
        [
            *quick_overrides,
            f"data.source={REPO / 'data' / 'gsm8k_test_250.jsonl'}",
            "data.num_train=16",
            "data.task_args={}",
            f"data.system_prompt={system}",
            "model.warmstart.steps=0",
            f"eval.source={REPO / 'data' / 'math500_test.jsonl'}",
            "eval.num_problems=3",
        ],
    )
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 2 and summary["eval"]["num_problems"] == 3
    # TRL's rollouts rendered GSM8K questions with the system prompt, through the saved ChatML template.
    questions = {json.loads(line)["question"] for line in (REPO / "data" / "gsm8k_test_250.jsonl").open()}
    gsm8k = [c for c in conversations if len(c) == 2 and c[1]["content"] in questions]
    assert gsm8k and all(c[0] == {"role": "system", "content": system} for c in gsm8k)
    text = AutoTokenizer.from_pretrained(run).apply_chat_template(gsm8k[0], tokenize=False, add_generation_prompt=True)
    assert text == f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{gsm8k[0][1]['content']}<|im_end|>\n" + (
        "<|im_start|>assistant\n"
    )
    heldout = [json.loads(line) for line in (run / "heldout_trained.jsonl").read_text().splitlines()]
    math500 = {json.loads(line)["problem"] for line in (REPO / "data" / "math500_test.jsonl").read_text().splitlines()}
    assert len(heldout) == 3 and all(r["prompt"][-1]["content"] in math500 for r in heldout)

    rows = load_rows(str(REPO / "data" / "gsm8k_test_250.jsonl"), preset="auto")[:3]
    golds = [r["answer"] for r in rows]  # 18, 3, 70000: the number after ####
    layouts = [
        "<think>...</think> \\boxed{{{}}}",
        "... so the total is {}.\n#### {}",
        "<think>...</think><answer>{}</answer>",
    ]
    right = [layout.format(g, g) for layout, g in zip(layouts, golds)]
    wrong = [layout.format(int(g) + 1, int(g) + 1) for layout, g in zip(layouts, golds)]
    assert accuracy(right, answer=golds) == [1.0] * 3 and accuracy(wrong, answer=golds) == [0.0] * 3
