"""benchmarks/gpu/run.sh, dry-run on the CPU: the whole path a lent GPU will take, on a tiny model."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_gpu_script_dry_run_writes_every_figure(tmp_path):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}  # python3 = this venv's
    done = subprocess.run(
        ["bash", "benchmarks/gpu/run.sh", "--dry-run", "--out", str(tmp_path / "gpu")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads((tmp_path / "gpu" / "gpu_results.json").read_text())
    grpo = results["fp32"]  # a CPU's stand-in for the GPU's bf16 run
    assert grpo["steps_measured"] == 2  # 3 steps, the first left out as warm-up
    assert all(grpo[k] > 0 for k in ("step_s", "generation_s", "optimisation_s", "rollout_tokens_per_s"))
    assert (
        abs(grpo["generation_s"] + grpo["reward_s"] + grpo["optimisation_s"] - grpo["step_s"]) < 0.05 * grpo["step_s"]
    )
    assert grpo["tokens_per_step"] > 0 and 0 < grpo["mfu"] < 1e-3  # a CPU against an H200's peak
    assert grpo["params_active"] < grpo["params_total"]
    assert results["fp8"] == {"skipped": "dry run"}
    assert results["eval"]["problems_per_s"] > 0 and results["eval"]["decode_mismatch"]["tokens"] > 0
    page = (tmp_path / "gpu" / "gpu_results.md").read_text()
    assert "training-phase MFU" in page and "not a GPU figure" in page and "fp8 | not run: dry run" in page
