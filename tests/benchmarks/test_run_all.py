"""The benchmarks run, end to end, at their quick settings: no figure in RESULTS.md can rot unseen."""

import importlib
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ROW = re.compile(r"^(\w+): ratio (\d+\.\d\d) \((.+) / (.+)\)$")
EXPECTED = {
    "quickstart_grpo",
    "quickstart_distill",
    "grpo_step_time",
    "reward_stage_cold",
    "eval_sampling",
    "distill_offline_1_epoch",
    "distill_offline_3_epochs",
    "moe_balancing_rl",
    "moe_balancing_warmstart_and_rl",
    "moe_balancing_overhead",
    "crash_resume",
    "verifier_accuracy",
    "verifier_time_cold",
}


def _module(name: str):
    if str(REPO / "benchmarks") not in sys.path:
        sys.path.insert(0, str(REPO / "benchmarks"))  # as the scripts import `common` when run
    return importlib.import_module(name)


@pytest.mark.slow
def test_quick_run_writes_one_row_per_measurement(tmp_path):
    out = tmp_path / "results.md"
    done = subprocess.run(
        [sys.executable, "benchmarks/run_all.py", "--quick", "--output", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    text = out.read_text()
    block = text.split("## Rows", 1)[1].split("```")[1]
    rows = {m[1]: (float(m[2]), m[3], m[4]) for m in map(ROW.match, block.strip().splitlines()) if m}
    assert set(rows) == EXPECTED, block
    assert all(math.isfinite(r[0]) and r[0] >= 0 for r in rows.values())
    # What holds at any size on any machine: batching beats a per-prompt loop; our checker is at least as
    # accurate as math-verify on its development set and far faster cold; the crash trials all survive.
    assert rows["eval_sampling"][0] > 1.5
    assert rows["verifier_accuracy"][0] >= 1.0 and rows["verifier_time_cold"][0] < 0.5
    assert rows["reward_stage_cold"][0] < 0.5
    assert rows["crash_resume"][0] == 1.0
    for fact in (
        "machine: ",
        "packages: ",
        "torch ",
        "commit: ",
        "seeds: ",
        "command: `python benchmarks/bench_grpo.py",
    ):
        assert fact in text


def test_unlike_settings_are_refused(tmp_path, monkeypatch, capsys):
    common = _module("common")
    with pytest.raises(SystemExit) as refused:
        common.require_identical({"beta": 0.1, "lr": 1e-4}, {"beta": 0.0, "lr": 1e-4}, "two configs")
    assert refused.value.code == 3 and "beta: 0.1 vs 0.0" in capsys.readouterr().err


def test_grpo_bench_refuses_a_trl_side_with_other_rewards_or_settings(tmp_path, monkeypatch):
    bench = _module("bench_grpo")
    args = bench.parse_args(["--quick", "--out", str(tmp_path)])
    base = tmp_path / "base"  # only its name enters the configs
    bench.check_identical(args, base)  # as shipped: the same GRPOConfig and rewards on both sides

    real_config, real_rewards = bench.trl_config, bench.trl_rewards
    monkeypatch.setattr(bench, "trl_rewards", lambda a: real_rewards(a)[:2])  # the old script: two rewards, not three
    with pytest.raises(SystemExit) as refused:
        bench.check_identical(args, base)
    assert refused.value.code == 3
    monkeypatch.setattr(bench, "trl_rewards", real_rewards)

    def other_beta(a, out):
        config = real_config(a, out)
        config.beta = 0.0
        return config

    monkeypatch.setattr(bench, "trl_config", other_beta)
    with pytest.raises(SystemExit) as refused:
        bench.check_identical(args, base)
    assert refused.value.code == 3
