"""Drive `posttrain distill` in-process on the real tiny recipe, shrunk by overrides."""

import json
from pathlib import Path

import pytest
from huggingface_hub import ModelCard
from typer.testing import CliRunner

from posttrain.cli.app import app

REPO = Path(__file__).resolve().parents[2]
RECIPE = str(REPO / "recipes/tiny-distill.yaml")
runner = CliRunner()

# The tiny shapes every test shares (one file: pytest's importlib mode cannot import conftest).
_TINY = json.loads((Path(__file__).resolve().parents[1] / "fixtures" / "tiny_models.json").read_text())
TINY_MOE = _TINY["tiny_moe"]
TINY_DENSE = _TINY["tiny_dense"]


def _sets(overrides):
    return [arg for o in overrides for arg in ("--set", o)]


@pytest.mark.slow
def test_distill_quick_run_writes_every_output_and_resumes(distill_overrides, tmp_path):
    result = runner.invoke(app, ["distill", RECIPE, *_sets(distill_overrides)])
    assert result.exit_code == 0, result.output
    out = tmp_path / "run"

    from transformers import AutoModelForCausalLM

    assert type(AutoModelForCausalLM.from_pretrained(out)).__name__ == "Qwen3ForCausalLM"
    assert (out / "teacher" / "config.json").is_file()  # the warm-started teacher is cached
    traces = [json.loads(line) for line in (out / "traces.jsonl").read_text().splitlines()]
    assert traces and {"prompt", "completion", "rewards", "num_tokens"} <= set(traces[0])
    assert (out / "topk.safetensors").is_file()

    summary = json.loads((out / "summary.json").read_text())
    for role in ("teacher", "student"):
        assert {"params_total", "params_active", "accuracy"} <= set(summary[role])
    assert summary["student"]["params_total"] < summary["teacher"]["params_total"]
    assert 0.0 <= summary["student_before_accuracy"] <= 1.0
    assert (
        summary["traces"]["samples"] == 24
        and "acceptance_rate" in summary["traces"]
        and "tokens_kept" in summary["traces"]
    )
    assert summary["topk"]["k"] == 8 and "kl_gap_nats" in summary["topk"]
    for stage in ("teacher", "traces", "topk", "sequence_kd", "logit_kd", "eval_teacher", "eval_student"):
        assert stage in summary["stage_seconds"], stage
    stages = {json.loads(line)["stage"] for line in (out / "metrics.jsonl").read_text().splitlines()}
    assert stages == {"sequence_kd", "logit_kd"}
    assert all("memory/peak_rss_mb" in json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines())
    card = ModelCard.load(out / "README.md")
    assert {"distillation", "posttrain"} <= set(card.data.tags) and card.data.library_name == "transformers"
    assert f"| student after | {100 * summary['student']['accuracy']:.1f}% |" in card.text
    assert f"| teacher | {100 * summary['teacher']['accuracy']:.1f}% |" in card.text
    assert f"{summary['traces']['kept']} kept of 24 sampled" in card.text
    page = (out / "report.html").read_text()  # teacher and student, before and after, side by side
    assert "<th>teacher</th><th>student_before</th><th>student</th>" in page and "4 of 4 problems shown" in page
    assert (out / "pass_at_k.png").is_file()

    again = runner.invoke(app, ["distill", RECIPE, *_sets(distill_overrides)])
    assert again.exit_code == 2 and "already holds a run" in again.output

    changed = [*distill_overrides, "distill.logit_kd.max_steps=3"]
    resumed = runner.invoke(app, ["distill", RECIPE, *_sets(changed), "--resume"])
    assert resumed.exit_code == 0, resumed.output
    summary = json.loads((out / "summary.json").read_text())
    assert {"teacher", "traces", "sequence_kd", "logit_kd"} <= set(summary["stages_reused"])
    assert "reusing" in resumed.output
    assert "recipe differs" in resumed.output and "distill.logit_kd.max_steps" in resumed.output


@pytest.mark.slow
def test_flags_without_recipe_online_teacher_with_lora(tmp_path):
    args = [
        "distill",
        "--teacher",
        "build:tiny-moe",
        "--student",
        "build:tiny-dense?hidden_size=16&num_layers=1&num_heads=2&num_kv_heads=1",
        "--data",
        "arithmetic",
        "--output-dir",
        str(tmp_path / "flags"),
        *_sets(
            [
                f"teacher.builder_args={json.dumps(TINY_MOE)}",
                "data.num_train=8",
                "distill.traces.num_samples=2",
                "distill.traces.max_new_tokens=8",
                "distill.traces.require={}",
                "distill.traces.drop_truncated=false",
                "distill.max_steps=1",
                "distill.per_device_train_batch_size=4",
                "distill.logit_kd.enabled=true",
                "distill.logit_kd.teacher=online",
                "distill.logit_kd.lmbda=0.5",
                "distill.logit_kd.divergence=jsd",
                "distill.logit_kd.max_steps=2",
                "distill.logit_kd.per_device_train_batch_size=4",
                "student.lora.enabled=true",
                "student.lora.r=4",
                "eval.num_problems=2",
                "eval.num_samples=1",
                "eval.max_new_tokens=8",
            ]
        ),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    out = tmp_path / "flags"
    assert (out / "adapter" / "adapter_config.json").is_file() and (out / "config.json").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["logit_kd"] == {"enabled": True, "teacher": "online", "divergence": "jsd", "beta": 0.5, "lmbda": 0.5}
    assert summary["topk"] is None and not (out / "topk.safetensors").exists()


def test_different_tokenizer_student_is_refused_before_any_work(tmp_path, tiny_moe_dir):
    from posttrain.models.builders import build_model
    from posttrain.models.loading import save_pretrained
    from posttrain.models.tokenizer import build_char_tokenizer

    tok = build_char_tokenizer()
    tok.add_tokens(["<extra>"])
    student = tmp_path / "student"
    save_pretrained(build_model("tiny-dense", tok, **TINY_DENSE), tok, student)
    result = runner.invoke(
        app,
        [
            "distill",
            "--teacher",
            str(tiny_moe_dir),
            "--student",
            str(student),
            "--data",
            "arithmetic",
            "--output-dir",
            str(tmp_path / "mismatch"),
            "--set",
            "distill.logit_kd.enabled=true",
        ],
    )
    assert result.exit_code == 2, result.output
    assert "needs one tokenizer for teacher and student" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "mismatch" / "traces_raw.jsonl").exists()


def test_missing_flags_and_bad_recipe_are_one_message(tmp_path):
    result = runner.invoke(app, ["distill", "--teacher", "x"])
    assert result.exit_code == 2 and "no --student:" in result.output
    result = runner.invoke(
        app, ["distill", RECIPE, "--dry-run", "--set", "distill.logit_kd.lmbda=0.3", "--set", "distill.max_step=3"]
    )
    assert result.exit_code == 2
    assert "did you mean max_steps?" in result.output and "offline teacher is not in memory" in result.output


def test_teacher_and_student_alone_take_the_teachers_data_or_gsm8k(tmp_path, tiny_moe_dir):
    import shutil

    import yaml

    run = tmp_path / "teacher-run"
    shutil.copytree(tiny_moe_dir, run)
    (run / "recipe.yaml").write_text(yaml.safe_dump({"data": {"source": "countdown", "num_train": 300}}))
    result = runner.invoke(app, ["distill", "--teacher", str(run), "--student", "build:tiny-dense", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "source: countdown" in result.output and "num_train: 300" in result.output
    result = runner.invoke(
        app, ["distill", "--teacher", str(tiny_moe_dir), "--student", "build:tiny-dense", "--dry-run"]
    )
    assert result.exit_code == 0, result.output
    assert "source: openai/gsm8k" in result.output and "config_name: main" in result.output


def test_dry_run_with_flags_overriding_the_recipe():
    result = runner.invoke(
        app,
        [
            "distill",
            RECIPE,
            "--dry-run",
            "--student",
            "build:tiny-dense?hidden_size=64",
            "--set",
            "distill.max_steps=7",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "hidden_size: 64" in result.output and "max_steps: 7" in result.output and "recipe is valid" in result.output


def test_recipe_as_option_and_not_twice():
    result = runner.invoke(app, ["distill", "--recipe", RECIPE, "--dry-run"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["distill", RECIPE, "--recipe", RECIPE, "--dry-run"])
    assert result.exit_code == 2 and "give the recipe once" in result.output


def _biases(path) -> dict:
    """Every router's loss-free bias (`e_score_correction_bias`) in a saved DeepSeek-V3-style model."""
    from safetensors.torch import load_file

    return {
        k: v for k, v in load_file(str(path / "model.safetensors")).items() if k.endswith("e_score_correction_bias")
    }


@pytest.mark.slow
def test_moe_student_trains_with_loss_free_balancing_and_resumes(distill_overrides, tmp_path):
    import torch

    gamma = 1e-3  # small: on this tiny router a larger step flips the loads and can swing a bias back to 0
    sets = [
        *distill_overrides,
        "student.name_or_path=build:tiny-moe",
        f"student.builder_args={json.dumps(TINY_MOE)}",
        "moe.balancing=loss_free",
        f"moe.bias_update_speed={gamma}",
        "output.save_steps=1",
        "distill.warmup_steps=0",
    ]  # step 1 must change the weights for the resume check to mean anything
    result = runner.invoke(app, ["distill", RECIPE, *_sets(sets)])
    assert result.exit_code == 0, result.output
    out = tmp_path / "run"

    initial, trained = _biases(out / "build/student"), _biases(out)
    assert len(initial) == 2 and all(b.abs().sum() == 0 for b in initial.values())
    assert all(b.abs().sum() > 0 for b in trained.values())  # 2 sequence-KD + 2 logit-KD bias updates
    assert all(torch.allclose(b / gamma, torch.round(b / gamma), atol=1e-4) for b in trained.values())
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [(r["stage"], r["step"]) for r in rows] == [
        ("sequence_kd", 1),
        ("sequence_kd", 2),
        ("logit_kd", 1),
        ("logit_kd", 2),
    ]
    assert all({"moe/max_vio_mean", "moe/bias_absmax", "moe/layer1/load"} <= set(r) for r in rows)
    assert (out / "expert_load.png").stat().st_size > 1000
    checkpoint = out / "sequence_kd/checkpoints/checkpoint-1"
    assert (checkpoint / "moe_router_bias.safetensors").is_file()

    # A run killed after sequence KD's first checkpoint resumes from it: experts and biases come back
    # and step 2 lands on the same weights as the uninterrupted run.
    from safetensors.torch import load_file

    finished = load_file(str(out / "sequence_kd/model/model.safetensors"))
    import shutil

    for leftover in ("sequence_kd/model", "sequence_kd/checkpoints/checkpoint-2", "logit_kd"):
        shutil.rmtree(out / leftover)
    resumed = runner.invoke(app, ["distill", RECIPE, *_sets(sets), "--resume"])
    assert resumed.exit_code == 0, resumed.output
    again = load_file(str(out / "sequence_kd/model/model.safetensors"))
    assert finished.keys() == again.keys()
    assert all(torch.allclose(finished[k], again[k], atol=1e-6) for k in finished), "resume diverged"
    assert [(r["stage"], r["step"]) for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())] == [
        ("sequence_kd", 1),
        ("sequence_kd", 2),
        ("logit_kd", 1),
        ("logit_kd", 2),
    ]


def test_student_moe_settings_it_cannot_take_fail_before_any_work(distill_overrides, tmp_path):
    result = runner.invoke(app, ["distill", RECIPE, *_sets([*distill_overrides, "moe.balancing=loss_free"])])
    assert result.exit_code == 2, result.output
    assert "moe.balancing=loss_free: Qwen3ForCausalLM has no MoE layers; use moe.balancing=none" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "run" / "teacher").exists() and not (tmp_path / "run" / "recipe.yaml").exists()

    moe_student = [
        "student.name_or_path=build:tiny-moe",
        f"student.builder_args={json.dumps(TINY_MOE)}",
        "moe.balancing=aux_loss",
        f"output.dir={tmp_path / 'aux'}",
    ]
    result = runner.invoke(app, ["distill", RECIPE, *_sets([*distill_overrides, *moe_student])])
    assert result.exit_code == 2, result.output
    assert (
        "aux_loss: DeepseekV3ForCausalLM returns no auxiliary" in result.output
        and "moe.balancing=loss_free" in result.output
    )
    assert not (tmp_path / "aux" / "recipe.yaml").exists()


@pytest.mark.slow
def test_qlora_student_distils_into_adapters_on_a_4bit_base(distill_overrides, tmp_path, monkeypatch):
    pytest.importorskip("bitsandbytes", minversion="0.50")
    # As on an AVX512-BF16 CPU, where bitsandbytes would repack layers for inference mid-run.
    monkeypatch.setattr("bitsandbytes.nn.modules.has_avx512bf16", lambda: True)
    sets = [
        *distill_overrides,
        "student.load_in_4bit=true",
        "student.lora.enabled=true",
        "student.lora.r=4",
        "student.lora.target_modules=[q_proj, o_proj]",
    ]
    result = runner.invoke(app, ["distill", RECIPE, *_sets(sets)])
    assert result.exit_code == 0, result.output
    out = tmp_path / "run"
    assert (out / "adapter" / "adapter_config.json").is_file()
    import torch
    from transformers import AutoModelForCausalLM

    student = AutoModelForCausalLM.from_pretrained(out)  # merged onto the full-precision base
    assert type(student.model.layers[0].self_attn.o_proj) is torch.nn.Linear
    assert not any("lora" in name for name, _ in student.named_parameters())

    teacher_4bit = runner.invoke(
        app,
        [
            "distill",
            RECIPE,
            *_sets(
                [
                    *distill_overrides,
                    "teacher.load_in_4bit=true",
                    "teacher.warmstart.steps=0",
                    f"output.dir={tmp_path / 'bad'}",
                ]
            ),
        ],
    )
    assert teacher_4bit.exit_code == 2 and "load_in_4bit applies to the student" in teacher_4bit.output


@pytest.mark.slow
def test_readme_example_with_a_checkpoint_teacher_and_the_tiny_recipe(distill_overrides, tiny_moe_dir, tmp_path):
    """README: `posttrain distill --teacher outputs/tiny-math --student build:tiny-dense --recipe recipes/tiny-distill.yaml`.
    The recipe's teacher is a `build:` model with builder_args; a checkpoint given by flag replaces it."""
    shrink = [o for o in distill_overrides if not o.startswith("teacher.")]
    result = runner.invoke(
        app,
        [
            "distill",
            "--teacher",
            str(tiny_moe_dir),
            "--student",
            "build:tiny-dense",
            "--recipe",
            RECIPE,
            *_sets(shrink),
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["teacher"]["params_total"] == sum(
        p.numel() for p in __import__("transformers").AutoModelForCausalLM.from_pretrained(tiny_moe_dir).parameters()
    )
    assert "is used as it is" in " ".join(result.output.split())  # the recipe's warm-start is for build: teachers
