"""Drive `posttrain grpo` in-process on the real quickstart recipe, shrunk by overrides."""

import json
from pathlib import Path

import pytest
from huggingface_hub import ModelCard
from typer.testing import CliRunner

from posttrain.cli.app import app
from posttrain.grpo.run import RESTART_SEED_STRIDE
from posttrain.models.loading import BUILDER_RECORD

REPO = Path(__file__).resolve().parents[2]
RECIPE = str(REPO / "recipes/tiny-math.yaml")
runner = CliRunner()


def _sets(overrides):
    return [arg for o in overrides for arg in ("--set", o)]


@pytest.mark.slow
def test_grpo_quick_run_writes_every_output(quick_overrides, tmp_path):
    result = runner.invoke(app, ["grpo", RECIPE, *_sets(quick_overrides)])
    assert result.exit_code == 0, result.output
    out = tmp_path / "run"
    # The rollouts went through posttrain's decode loop, not generate (a no-op setting TRL passes once sent
    # every run to generate unseen): the console says so, and the sampler's log-probs reached the trainer.
    assert "rollouts: posttrain decode loop" in " ".join(result.output.split())

    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(out)
    assert type(model).__name__ == "DeepseekV3ForCausalLM"
    AutoTokenizer.from_pretrained(out)

    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    # Only the decode loop hands TRL the sampler's log-probs, which the mismatch telemetry compares.
    assert all(0 <= r["mismatch/logp_abs_mean"] < 1e-3 for r in rows)
    for key in (
        "loss",
        "lr",
        "reward_mean",
        "rewards/accuracy/mean",
        "rewards/accuracy/std",
        "rewards/format/mean",
        "completion_length",
        "step_seconds",
    ):
        assert key in rows[-1], key
    assert "tokens_per_second" in rows[-1]
    for row in rows:  # the time split adds up to the step (two clocks around the same step)
        split = row["time/generation_s"] + row["time/reward_s"] + row["time/optimisation_s"]
        assert split == pytest.approx(row["step_seconds"], rel=0.05, abs=0.01)
        assert row["time/generation_s"] > 0 and row["time/reward_s"] > 0 and row["time/optimisation_s"] > 0
        assert row["memory/peak_rss_mb"] > 0

    summary = json.loads((out / "summary.json").read_text())
    for key in ("base_accuracy", "final_accuracy", "base_greedy_accuracy", "final_greedy_accuracy"):
        assert 0.0 <= summary[key] <= 1.0
    assert summary["steps"] == 2 and summary["wall_seconds"] > 0
    assert summary["eval"]["num_problems"] == 6 and summary["eval"]["num_samples"] == 2
    assert (out / "reward.png").stat().st_size > 1000
    assert (out / "base" / "config.json").is_file()  # the warm-started base is kept

    # The model card: the Hub's parser reads its metadata; the body holds this run's own figures.
    card = ModelCard.load(out / "README.md")
    assert card.data.library_name == "transformers" and {"posttrain", "grpo", "moe"} <= set(card.data.tags)
    assert card.data.base_model is None  # a built model has no Hub id to point at
    ev = summary["eval"]
    assert f"| base | {100 * ev['base']['accuracy']:.1f}% | {100 * ev['base']['greedy_accuracy']:.1f}% |" in card.text
    assert f"| after GRPO | {100 * ev['final']['accuracy']:.1f}% |" in card.text
    assert "6 held-out problems" in card.text and "mean over 2 samples per problem at temperature 1.0" in card.text
    assert (
        "posttrain grpo " + RECIPE + " --set output.dir=" in card.text and "`step_arithmetic`, weight 0.5" in card.text
    )
    assert "MaxVio" in card.text  # the tiny MoE's routing health

    # report.html: the held-out problems with base and trained answers, the figures embedded
    page = (out / "report.html").read_text()
    assert "6 of 6 problems shown" in page and "<th>base</th><th>trained</th>" in page
    assert page.count("class='problem'") == 6 and page.count("data:image/png;base64,") == 3
    assert (out / "pass_at_k.png").is_file() and (out / "expert_load.png").is_file()
    assert summary["warmstart"] == {"steps": 3, "checks": []}  # no until_greedy in these tests

    again = runner.invoke(app, ["grpo", RECIPE, *_sets(quick_overrides)])
    assert again.exit_code == 2 and "already holds a run" in again.output


def test_bad_recipe_is_one_screen_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "model:\n  name_or_path: build:tiny-moe\ndata:\n  source: arithmetic\nrewards:\n  - name: acuracy\ngrpo:\n  num_generation: 4\n"
    )
    result = runner.invoke(app, ["grpo", str(bad)])
    assert result.exit_code == 2
    assert "did you mean num_generations?" in result.output
    assert "Traceback" not in result.output


def test_unknown_reward_lists_available(tmp_path):
    result = runner.invoke(app, ["grpo", RECIPE, "--set", "rewards.0.name=acuracy", "--dry-run"])
    assert result.exit_code == 2
    assert "acuracy" in result.output and "accuracy" in result.output


def test_dry_run_validates_and_prints(tmp_path):
    result = runner.invoke(app, ["grpo", RECIPE, "--dry-run", "--set", "grpo.max_steps=3"])
    assert result.exit_code == 0, result.output
    assert "max_steps: 3" in result.output and "recipe is valid" in result.output


def test_version_and_help():
    assert runner.invoke(app, ["--version"]).output.startswith("posttrain ")
    help_text = runner.invoke(app, ["grpo", "--help"]).output
    assert "--set" in help_text and "--resume" in help_text


@pytest.mark.slow
def test_resume_continues_from_checkpoint_without_duplicate_metrics(quick_overrides, tmp_path):
    base = [*_sets(quick_overrides), "--set", "output.save_steps=1", "--set", "eval.enabled=false"]
    first = runner.invoke(app, ["grpo", RECIPE, *base])
    assert first.exit_code == 0, first.output
    out = tmp_path / "run"
    assert sorted(p.name for p in (out / "checkpoints").glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]

    more = runner.invoke(app, ["grpo", RECIPE, *base, "--set", "grpo.max_steps=3", "--resume"])
    assert more.exit_code == 0, more.output
    said = " ".join(more.output.split())  # rich wraps long lines at the terminal width
    assert "resuming from" in said and "checkpoint-2" in said
    assert "unexpected keys" not in said  # fused MoE experts restored, not dropped
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]
    assert json.loads((out / "summary.json").read_text())["steps"] == 3


@pytest.mark.slow
def test_qlora_trains_adapters_on_a_4bit_base_and_saves_a_full_precision_policy(
    quick_overrides, shaped_rewards, tmp_path, monkeypatch
):
    pytest.importorskip("bitsandbytes", minversion="0.50")
    # As on an AVX512-BF16 CPU, where bitsandbytes would repack layers for inference mid-run.
    monkeypatch.setattr("bitsandbytes.nn.modules.has_avx512bf16", lambda: True)
    import torch
    from peft import PeftModel

    from posttrain.grpo import run as grpo_run

    seen = {}
    real_train = grpo_run._train

    def spy(recipe, model, *args, **kwargs):
        seen["4bit"] = getattr(model, "is_loaded_in_4bit", False)
        seen["attn"] = type(model.model.layers[0].self_attn.o_proj).__name__
        trainer = real_train(recipe, model, *args, **kwargs)
        seen["adapter"] = {k: v.detach().clone() for k, v in trainer.model.named_parameters() if "lora_B" in k}
        return trainer

    monkeypatch.setattr(grpo_run, "_train", spy)
    sets = [
        *_sets([*quick_overrides, shaped_rewards]),
        "--set",
        "model.warmstart.steps=0",
        "--set",
        "model.load_in_4bit=true",
        "--set",
        "model.use_bnb_nested_quant=true",
        "--set",
        "model.lora.enabled=true",
        "--set",
        "model.lora.r=4",
        "--set",
        "model.lora.target_modules=[q_proj, o_proj]",
        "--set",
        "grpo.learning_rate=1e-2",
    ]
    result = runner.invoke(app, ["grpo", RECIPE, *sets])
    assert result.exit_code == 0, result.output
    assert seen["4bit"] and seen["attn"] == "Linear4bit"  # the base really was quantized while training
    assert any(v.abs().sum() > 0 for v in seen["adapter"].values())  # lora_B starts at 0: the adapter trained
    out = tmp_path / "run"
    assert (out / "adapter" / "adapter_config.json").is_file()
    from transformers import AutoModelForCausalLM

    merged = AutoModelForCausalLM.from_pretrained(out)  # a plain checkpoint: no bitsandbytes layers, no lora
    assert type(merged.model.layers[0].self_attn.o_proj) is torch.nn.Linear
    assert not any("lora" in name for name, _ in merged.named_parameters())
    base = AutoModelForCausalLM.from_pretrained(out / "init-tiny-moe")
    adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(out / "init-tiny-moe"), out / "adapter")
    want = adapted.merge_and_unload().state_dict()
    got = merged.state_dict()
    changed = [k for k in want if "o_proj" in k and not torch.equal(base.state_dict()[k], got[k])]
    assert changed and all(torch.allclose(got[k], want[k], atol=1e-5) for k in want)


def test_qlora_settings_are_checked_before_any_work(quick_overrides, tmp_path, monkeypatch):
    base = _sets(quick_overrides)
    no_lora = runner.invoke(
        app, ["grpo", RECIPE, *base, "--set", "model.warmstart.steps=0", "--set", "model.load_in_4bit=true"]
    )
    assert no_lora.exit_code == 2 and "set lora.enabled: true" in no_lora.output
    warm = runner.invoke(
        app, ["grpo", RECIPE, *base, "--set", "model.load_in_4bit=true", "--set", "model.lora.enabled=true"]
    )
    assert warm.exit_code == 2 and "load_in_4bit cannot warm-start" in warm.output
    stray = runner.invoke(app, ["grpo", RECIPE, *base, "--set", "model.bnb_4bit_quant_type=fp4"])
    assert stray.exit_code == 2 and "applies with load_in_4bit: true only" in stray.output
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else real(name, *a)
    )
    missing = runner.invoke(
        app,
        [
            "grpo",
            RECIPE,
            *base,
            "--set",
            "model.warmstart.steps=0",
            "--set",
            "model.load_in_4bit=true",
            "--set",
            "model.lora.enabled=true",
        ],
    )
    assert missing.exit_code == 2 and "pip install 'posttrain[qlora]'" in missing.output
    assert "Traceback" not in missing.output and not (tmp_path / "run" / "recipe.yaml").exists()


@pytest.mark.slow
def test_lora_run_saves_adapter_and_merged_policy(quick_overrides, tmp_path):
    sets = [
        *_sets(quick_overrides),
        "--set",
        "model.lora.enabled=true",
        "--set",
        "model.lora.r=4",
        "--set",
        "eval.enabled=false",
        "--set",
        "grpo.gradient_checkpointing=true",
        "--set",
        "grpo.lr_scheduler_type=cosine",
        "--set",
        "grpo.warmup_ratio=0.5",
        "--set",
        "grpo.gradient_accumulation_steps=2",
    ]
    result = runner.invoke(app, ["grpo", RECIPE, *sets])
    assert result.exit_code == 0, result.output
    out = tmp_path / "run"
    assert (out / "adapter" / "adapter_config.json").is_file()
    from transformers import AutoModelForCausalLM

    merged = AutoModelForCausalLM.from_pretrained(out)
    assert not any("lora" in name for name, _ in merged.named_parameters())
    adapter_card = ModelCard.load(out / "adapter" / "README.md")  # ours, not peft's template
    assert adapter_card.data.library_name == "peft" and "grpo" in adapter_card.data.tags
    assert "A LoRA adapter trained with GRPO" in adapter_card.text
    assert [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2]


@pytest.mark.slow
def test_a_warmstart_below_its_greedy_target_trains_another_round_and_records_it(quick_overrides, tmp_path):
    # 3 steps never reach 100% greedy: one extra round of 2 steps, then RL starts anyway.
    sets = [*quick_overrides, "model.warmstart.until_greedy=1.0", "model.warmstart.retry=extend"]
    sets += ["model.warmstart.extra_steps=2"]  # the recipe restarts; this test is extend's
    sets += ["model.warmstart.max_extra_rounds=1", "model.warmstart.check_problems=5", "grpo.max_steps=1"]
    result = runner.invoke(app, ["grpo", RECIPE, *_sets(sets)])
    assert result.exit_code == 0, result.output
    out = tmp_path / "run"
    record = json.loads((out / "summary.json").read_text())["warmstart"]
    assert [c["steps"] for c in record["checks"]] == [3, 5] and record["steps"] == 5
    assert all(0.0 <= c["greedy"] < 1.0 for c in record["checks"])
    assert "warm-start: greedy" in result.output and "2 more" in result.output
    assert json.loads((out / "base" / "warmstart.json").read_text()) == record  # what a resumed run reports
    assert "warm-started with 5 SFT steps" in (out / "README.md").read_text()


@pytest.mark.slow
def test_a_warmstart_restart_builds_the_model_from_another_seed_and_keeps_the_best(quick_overrides, tmp_path):
    sets = [*quick_overrides, "model.warmstart.until_greedy=1.0", "model.warmstart.retry=restart"]
    sets += ["model.warmstart.max_extra_rounds=1", "model.warmstart.check_problems=5", "grpo.max_steps=1"]
    result = runner.invoke(app, ["grpo", RECIPE, *_sets(sets)])
    assert result.exit_code == 0, result.output
    out = tmp_path / "run"
    record = json.loads((out / "summary.json").read_text())["warmstart"]
    assert [(c["attempt"], c["steps"]) for c in record["checks"]] == [(0, 3), (1, 3)] and record["steps"] == 3
    greedy = [c["greedy"] for c in record["checks"]]
    assert record["kept"] == (1 if greedy[1] > greedy[0] else 0)
    assert "a fresh model, 3 steps" in " ".join(result.output.split())
    # The second attempt's model was built from another init seed (the init folder records what made it).
    made = json.loads((out / "init-tiny-moe" / BUILDER_RECORD).read_text())
    assert made["seed"] == RESTART_SEED_STRIDE  # grpo.seed 0 + one stride


@pytest.mark.slow
def test_a_warmstart_retry_list_restarts_then_extends_the_better_attempt(quick_overrides, tmp_path):
    # the recipe's own plan, [restart, extend], at 3 steps (never 100% greedy): both rounds run
    sets = [*quick_overrides, "model.warmstart.until_greedy=1.0", "model.warmstart.retry=[restart, extend]"]
    sets += ["model.warmstart.extra_steps=2", "model.warmstart.check_problems=5", "grpo.max_steps=1"]
    result = runner.invoke(app, ["grpo", RECIPE, *_sets(sets)])
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "run" / "summary.json").read_text())["warmstart"]
    first, second, extended = record["checks"]
    better = 1 if second["greedy"] > first["greedy"] else 0
    assert [(c["attempt"], c["steps"]) for c in record["checks"]] == [(0, 3), (1, 3), (better, 5)]
    assert record["kept"] == better and record["steps"] == 5
    assert f"2 more for attempt {better + 1}" in " ".join(result.output.split())
