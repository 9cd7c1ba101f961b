"""Nothing lost: a resumed run ends where an uninterrupted one does, and a finished one trains nothing more.

SIGKILL at random moments then --resume is benchmarks/bench_crash.py's, which the suite runs through
tests/benchmarks/test_run_all.py (--quick: one trial, two kills, `crash_resume` must be 1.00).
"""

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from posttrain.cli.app import app

REPO = Path(__file__).resolve().parents[2]
RECIPE = str(REPO / "recipes/tiny-math.yaml")


def _state(path: Path) -> dict:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path).state_dict()


@pytest.mark.slow
def test_resumed_run_reaches_the_same_parameters_as_an_uninterrupted_one(quick_overrides, shaped_rewards, tmp_path):
    import torch

    sets = [
        a
        for o in [
            *quick_overrides,
            shaped_rewards,
            "grpo.max_steps=4",
            "output.save_steps=2",
            "output.save_total_limit=3",
            "eval.enabled=false",
            "output.plots=false",
        ]
        for a in ("--set", o)
    ]
    runner = CliRunner()
    first = runner.invoke(app, ["grpo", RECIPE, *sets])
    assert first.exit_code == 0, first.output
    out = tmp_path / "run"
    uninterrupted = _state(out)
    base = _state(out / "base")
    moved = max((uninterrupted[k] - base[k]).abs().max().item() for k in base if k in uninterrupted)
    assert moved > 1e-4  # training changed the weights, so equality below is not vacuous
    # Lose everything after step 2, as a crash between the step-2 and step-4 checkpoints would.
    shutil.rmtree(out / "checkpoints" / "checkpoint-4")
    (out / "summary.json").unlink()
    again = runner.invoke(app, ["grpo", RECIPE, *sets, "--resume"])
    assert again.exit_code == 0, again.output
    assert "checkpoint-2" in " ".join(again.output.split())
    resumed = _state(out)
    assert resumed.keys() == uninterrupted.keys()
    # Same seed, same restored RNG/optimizer/scheduler state: CPU kernels here are deterministic
    # run to run, so the tolerance only absorbs float32 summation order.
    for name, tensor in uninterrupted.items():
        torch.testing.assert_close(resumed[name], tensor, rtol=1e-5, atol=1e-6, msg=name)
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]

    # Killed after the last checkpoint but before the final outputs: the resume must train nothing
    # more. transformers alone trains a fifth step here (4 steps are not a whole epoch of 32 batches).
    (out / "summary.json").unlink()
    last = runner.invoke(app, ["grpo", RECIPE, *sets, "--resume"])
    assert last.exit_code == 0, last.output
    assert json.loads((out / "summary.json").read_text())["steps"] == 4
    assert sorted(p.name for p in (out / "checkpoints").iterdir() if p.name.startswith("checkpoint-")) == [
        "checkpoint-2",
        "checkpoint-4",
    ]
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]
    for name, tensor in _state(out).items():
        torch.testing.assert_close(tensor, resumed[name], rtol=0, atol=0, msg=name)
