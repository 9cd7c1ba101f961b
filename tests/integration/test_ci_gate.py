"""The scripted CI eval: a tiny MoE trained in this test session must pass `posttrain eval` gates.

If training (warm-start + GRPO) or scoring regresses, the gates fail and CI turns red. The bars
sit well under what the model reaches (measured here: pass@1 0.66, pass@4 1.0, format 0.89) so CPU nondeterminism
does not flake them, and well above what an untrained or broken pipeline scores (0).
"""

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from posttrain.cli.app import app

REPO = Path(__file__).resolve().parents[2]
RECIPE = str(REPO / "recipes/tiny-math.yaml")
runner = CliRunner()
SMALL_MOE = {"hidden_size": 48, "num_layers": 2, "num_heads": 2, "n_routed_experts": 4, "num_experts_per_tok": 2,
             "moe_intermediate_size": 32, "kv_lora_rank": 16, "qk_rope_head_dim": 8, "qk_nope_head_dim": 8, "v_head_dim": 16}
TASK = ["--set", "data.task_args={num_terms: 2, low: 1, high: 5}"]


@pytest.fixture(scope="module")
def trained_policy(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ci-gate") / "run"
    sets = [f"output.dir={out}", f"model.builder_args={json.dumps(SMALL_MOE)}", "model.warmstart.steps=300",
            "model.warmstart.batch_size=32", "model.warmstart.learning_rate=3e-3", "model.warmstart.num_examples=2000",
            "data.num_train=200", "grpo.max_steps=3", "grpo.per_device_train_batch_size=16", "grpo.num_generations=4",
            "grpo.max_completion_length=16", "eval.enabled=false"]
    result = runner.invoke(app, ["grpo", RECIPE, *TASK, *[a for s in sets for a in ("--set", s)]])
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.slow
def test_trained_tiny_model_passes_ci_gates(trained_policy, tmp_path):
    args = ["eval", "--model", str(trained_policy), "--recipe", RECIPE, *TASK, "--n", "4", "--k", "1,4",
            "--num-problems", "40", "--max-new-tokens", "16", "--output-dir", str(tmp_path / "eval")]
    result = runner.invoke(app, [*args, "--min", "pass@1=0.25", "--min", "format_rate=0.6", "--min", "pass@4=0.4"])
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    print(json.dumps(report["metrics"], indent=1), file=sys.stderr)
    assert result.exit_code == 0, f"{result.output}\nmetrics: {report['metrics']}"
    assert report["routing"] is not None and report["routing"]["aggregate"]["dead_experts"] is not None

    strict = runner.invoke(app, [*args, "--min", "pass@1=0.999"])
    assert strict.exit_code == 1 and "is below the bar 0.999" in strict.output
