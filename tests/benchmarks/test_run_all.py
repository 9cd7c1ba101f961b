"""The benchmarks run, end to end, at their quick settings: no figure in RESULTS.md can rot unseen."""

import importlib
import math
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ROW = re.compile(r"^(\w+): ratio (\d+\.\d\d) \((.+) / (.+)\)$")
EXPECTED = {
    "quickstart_grpo",
    "efficacy_vs_sft",
    "quickstart_distill",
    "grpo_rollout_time",
    "grpo_step_time",
    "dynamic_sampling_step_time",
    "dynamic_sampling_heldout",
    "dynamic_sampling_gain_per_minute",
    "reward_stage_cold",
    "eval_sampling",
    *(f"distill_offline{pair}_{e}" for pair in ("", "_matched", "_bpe") for e in ("1_epoch", "3_epochs", "5_epochs")),
    "moe_balancing_rl",
    "moe_balancing_warmstart_and_rl",
    "moe_balancing_overhead",
    "moe_rl_logp_mismatch",
    "moe_rl_max_ratio",
    "moe_rl_heldout_fp32_sampler",
    "moe_rl_heldout_rollout",
    "moe_rl_heldout_old_policy",
    "moe_rl_heldout_gspo",
    "moe_rl_heldout_gspo_rollout",
    "moe_rl_replay_overhead",
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
        # Two benchmarks at a time, one torch thread each: quick figures mean nothing, and CI has 2 cores.
        [sys.executable, "benchmarks/run_all.py", "--quick", "--jobs", "2", "--output", str(out)],
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
    # bench_efficacy's last line, in the form the README quotes.
    efficacy = text.split("## efficacy", 1)[1].split("```", 2)[1].strip().splitlines()
    assert re.fullmatch(
        r"efficacy: grpo [+-]\d+\.\d \(min [+-]\d+\.\d\) vs sft-control [+-]\d+\.\d pass@1 over 1 seeds", efficacy[-1]
    )
    assert "settings of GRPO and SFT control, seed 0: identical" in text
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


def test_moe_rl_bench_refuses_arms_that_differ_beyond_their_own_fields(tmp_path, monkeypatch, capsys):
    bench = _module("bench_moe_rl")
    monkeypatch.setitem(bench.ARMS, "rollout", {"moe.routing_replay": "rollout", "grpo.temperature": "0.7"})
    with pytest.raises(SystemExit) as refused:  # before any model is built
        bench.main(["--quick", "--out", str(tmp_path), "--arms", "none,rollout"])
    err = capsys.readouterr().err
    assert refused.value.code == 3 and "grpo.temperature: 0.7 vs 1.0" in err and not any(tmp_path.iterdir())


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


def _fake_run(name: str, rows: dict[str, float], output: str = "printed") -> dict:
    result = {
        "command": f"python benchmarks/bench_{name}.py",
        "seeds": [0],
        "settings": {"n": 1},
        "rows": [{"name": r, "ratio": v, "what": "a", "against": "b", "detail": "d"} for r, v in rows.items()],
    }
    return {"name": name, "rc": 0, "seconds": 1.0, "output": output, "result": result}


def test_only_replaces_its_sections_and_keeps_the_others_with_their_commit(tmp_path):
    run_all = _module("run_all")
    out = tmp_path / "RESULTS.md"
    full = run_all.parse_args(["--output", str(out)])
    first = [_fake_run("efficacy", {"efficacy_vs_sft": 1.5}), _fake_run("eval", {"eval_sampling": 6.0}, "old eval")]
    out.write_text(run_all.page(first, full, "python benchmarks/run_all.py", 60, "aaa1111"))

    only = run_all.parse_args(["--output", str(out), "--only", "efficacy"])
    text = run_all.page([_fake_run("efficacy", {"efficacy_vs_sft": 2.0})], only, "cmd", 60, "bbb2222")
    block = text.split("## Rows", 1)[1].split("```")[1].strip().splitlines()
    assert block == ["efficacy_vs_sft: ratio 2.00 (a / b)", "eval_sampling: ratio 6.00 (a / b)"]
    efficacy, eval_ = text.split("## efficacy", 1)[1].split("## eval")
    assert "- measured: commit bbb2222" in efficacy and "ratio **1.50**" not in efficacy
    assert "- measured: commit aaa1111" in eval_ and "old eval" in eval_


def test_only_refuses_to_keep_figures_from_another_machine(tmp_path):
    run_all = _module("run_all")
    out = tmp_path / "RESULTS.md"
    full = run_all.parse_args(["--output", str(out)])
    text = run_all.page([_fake_run("eval", {"eval_sampling": 6.0})], full, "python benchmarks/run_all.py", 60, "a1")
    out.write_text(text.replace(" cores, ", " cores (another box), ", 1))
    with pytest.raises(SystemExit, match="another machine"):
        run_all.main(["--output", str(out), "--only", "rewards"])


class _Optimizer:
    param_groups = [{"lr": 0.0}]


def test_sft_control_learning_rate_follows_the_clock_and_stops_at_the_budget(monkeypatch):
    bench = _module("bench_efficacy")
    now = [1000.0]
    monkeypatch.setattr(bench.time, "time", lambda: now[0])
    clock = bench.ClockCosine(peak=1e-3, warmup=2, budget=100.0)
    state, control, opt = (
        types.SimpleNamespace(global_step=0),
        types.SimpleNamespace(should_training_stop=False),
        _Optimizer(),
    )
    clock.on_train_begin(None, state, control)
    seen = []
    for elapsed, step in ((0, 0), (1, 1), (50, 10), (99, 20), (100, 21)):
        now[0] = 1000.0 + elapsed
        state.global_step = step
        clock.on_step_begin(None, state, control, optimizer=opt)
        seen.append(opt.param_groups[0]["lr"])
        clock.on_step_end(None, state, control)
        assert control.should_training_stop == (elapsed >= 100)
    assert seen[0] == pytest.approx(5e-4) and seen[1] == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi * 0.01)))
    assert seen[2] == pytest.approx(5e-4) and seen[3] < 1e-6 and seen[4] == 0.0


def test_distill_bench_break_even_and_2x_epochs_follow_from_the_medians():
    crossing = _module("bench_distill").crossing
    # online 3 s per epoch, offline 1 s, the top-k pass 2 s once: E x 3 >= 2 + E from E = 1; >= 2 x (2 + E) from E = 4.
    med = {"online": 3.0, "offline": 1.0, "capture": 2.0}
    assert crossing(med, 1.0) == "1 epochs" and crossing(med, 2.0) == "4 epochs"
    assert 4 * 3.0 / (2.0 + 4 * 1.0) == 2.0 and 3 * 3.0 / (2.0 + 3 * 1.0) < 2.0
    # A teacher whose forward costs less than the student's step can never reach 2x.
    assert crossing({"online": 1.5, "offline": 1.0, "capture": 0.5}, 2.0).startswith("never")


def test_args_reach_one_benchmark_and_bad_ones_are_refused(tmp_path, monkeypatch):
    run_all = _module("run_all")
    seen = {}

    class _Proc:
        def __init__(self, cmd, **kwargs):
            seen[Path(cmd[1]).stem] = cmd
            self.stdout, self.returncode = iter(()), 1

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(run_all.subprocess, "Popen", _Proc)
    args = run_all.parse_args(["--only", "efficacy,eval", "--args", "efficacy=--seeds 3,4,5"])
    for name in args.only:
        run_all.run_one(name, args, tmp_path)
    assert seen["bench_efficacy"][-2:] == ["--seeds", "3,4,5"] and "--seeds" not in seen["bench_eval"]
    with pytest.raises(SystemExit):
        run_all.parse_args(["--args", "nosuch=--x 1"])
