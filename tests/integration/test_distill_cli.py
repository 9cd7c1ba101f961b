"""Drive `posttrain distill` in-process on the real tiny recipe, shrunk by overrides."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from posttrain.cli.app import app

REPO = Path(__file__).resolve().parents[2]
RECIPE = str(REPO / "recipes/tiny-distill.yaml")
runner = CliRunner()

# conftest.TINY_MOE (pytest's importlib mode does not make conftest importable)
TINY_MOE = {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "n_routed_experts": 4, "num_experts_per_tok": 2,
            "moe_intermediate_size": 16, "kv_lora_rank": 8, "qk_rope_head_dim": 8, "qk_nope_head_dim": 8, "v_head_dim": 8}
TINY_DENSE = {"hidden_size": 16, "num_layers": 1, "num_heads": 2, "num_kv_heads": 1, "intermediate_size": 32}


def _sets(overrides):
    return [arg for o in overrides for arg in ("--set", o)]


@pytest.fixture
def distill_overrides(tmp_path):
    return [
        f"output.dir={tmp_path / 'run'}",
        f"teacher.builder_args={json.dumps(TINY_MOE)}",
        f"student.builder_args={json.dumps(TINY_DENSE)}",
        "teacher.warmstart.steps=2",
        "teacher.warmstart.batch_size=8",
        "teacher.warmstart.num_examples=32",
        "data.num_train=12",
        "distill.traces.num_samples=2",
        "distill.traces.max_new_tokens=10",
        "distill.traces.require={}",  # a 2-step teacher is never correct: keep every untruncated trace
        "distill.traces.drop_truncated=false",
        "distill.max_steps=2",
        "distill.per_device_train_batch_size=8",
        "distill.logging_steps=1",
        "distill.logit_kd.max_steps=2",
        "distill.logit_kd.per_device_train_batch_size=8",
        "eval.num_problems=4",
        "eval.num_samples=2",
        "eval.max_new_tokens=10",
    ]


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
    assert summary["traces"]["samples"] == 24 and "acceptance_rate" in summary["traces"] and "tokens_kept" in summary["traces"]
    assert summary["topk"]["k"] == 8 and "kl_gap_nats" in summary["topk"]
    for stage in ("teacher", "traces", "topk", "sequence_kd", "logit_kd", "eval_teacher", "eval_student"):
        assert stage in summary["stage_seconds"], stage
    stages = {json.loads(line)["stage"] for line in (out / "metrics.jsonl").read_text().splitlines()}
    assert stages == {"sequence_kd", "logit_kd"}
    assert all("memory/peak_rss_mb" in json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines())

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
        "distill", "--teacher", "build:tiny-moe", "--student", "build:tiny-dense?hidden_size=16&num_layers=1&num_heads=2&num_kv_heads=1",
        "--data", "arithmetic", "--output-dir", str(tmp_path / "flags"),
        *_sets([
            f"teacher.builder_args={json.dumps(TINY_MOE)}", "data.num_train=8", "distill.traces.num_samples=2",
            "distill.traces.max_new_tokens=8", "distill.traces.require={}", "distill.traces.drop_truncated=false",
            "distill.max_steps=1", "distill.per_device_train_batch_size=4",
            "distill.logit_kd.enabled=true", "distill.logit_kd.teacher=online", "distill.logit_kd.lmbda=0.5",
            "distill.logit_kd.divergence=jsd", "distill.logit_kd.max_steps=2", "distill.logit_kd.per_device_train_batch_size=4",
            "student.lora.enabled=true", "student.lora.r=4",
            "eval.num_problems=2", "eval.num_samples=1", "eval.max_new_tokens=8",
        ]),
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
    result = runner.invoke(app, [
        "distill", "--teacher", str(tiny_moe_dir), "--student", str(student), "--data", "arithmetic",
        "--output-dir", str(tmp_path / "mismatch"), "--set", "distill.logit_kd.enabled=true",
    ])
    assert result.exit_code == 2, result.output
    assert "needs one tokenizer for teacher and student" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "mismatch" / "traces_raw.jsonl").exists()


def test_missing_flags_and_bad_recipe_are_one_message(tmp_path):
    result = runner.invoke(app, ["distill", "--teacher", "x"])
    assert result.exit_code == 2 and "no --student, --data" in result.output
    result = runner.invoke(app, ["distill", RECIPE, "--dry-run", "--set", "distill.logit_kd.lmbda=0.3", "--set", "distill.max_step=3"])
    assert result.exit_code == 2
    assert "did you mean max_steps?" in result.output and "offline teacher is not in memory" in result.output


def test_dry_run_with_flags_overriding_the_recipe():
    result = runner.invoke(app, ["distill", RECIPE, "--dry-run", "--student", "build:tiny-dense?hidden_size=64", "--set", "distill.max_steps=7"])
    assert result.exit_code == 0, result.output
    assert "hidden_size: 64" in result.output and "max_steps: 7" in result.output and "recipe is valid" in result.output


def test_recipe_as_option_and_not_twice():
    result = runner.invoke(app, ["distill", "--recipe", RECIPE, "--dry-run"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["distill", RECIPE, "--recipe", RECIPE, "--dry-run"])
    assert result.exit_code == 2 and "give the recipe once" in result.output
