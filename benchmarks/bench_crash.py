"""Kill a tiny GRPO run with SIGKILL at random moments, resume it each time, and check nothing was lost.

    python benchmarks/bench_crash.py [--quick] [--trials 20] [--kills 3] [--steps 12] [--seed 0] [--json PATH]

Each trial runs `posttrain grpo recipes/tiny-math.yaml` (shrunk to a seconds-long run, a checkpoint
every step) in a subprocess, SIGKILLs it at a random moment once training has started -- mid-step,
mid-checkpoint, mid-append -- then runs the same command with `--resume`, `--kills` times, and
lets the last attempt finish. A trial survives when:
  - the run reaches its final step and writes summary.json;
  - every checkpoint left on disk loads (weights through `from_pretrained`, optimizer, scheduler,
    trainer state) and no staging or trash folder is left behind;
  - metrics.jsonl holds each step exactly once.
Prints survived/total and the problems of any trial that did not survive; the row's ratio is
trials survived / trials run. Trial t uses seed --seed + t for its kill moments.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Row, parser, start

REPO = Path(__file__).resolve().parent.parent
RECIPE = REPO / "recipes" / "tiny-math.yaml"
# The tiny shapes every test shares (one file: pytest's importlib mode cannot import conftest).
_TINY = json.loads((REPO / "tests" / "fixtures" / "tiny_models.json").read_text())
TINY_MOE = _TINY["tiny_moe"]


def command(out: Path, steps: int) -> list[str]:
    sets = {
        "output.dir": str(out),
        "output.save_steps": "1",
        "output.save_total_limit": "3",
        "output.plots": "false",
        "model.builder_args": json.dumps(TINY_MOE),
        "model.warmstart.steps": "3",
        "model.warmstart.batch_size": "8",
        "model.warmstart.num_examples": "64",
        "data.num_train": "64",
        "grpo.max_steps": str(steps),
        "grpo.per_device_train_batch_size": "8",
        "grpo.num_generations": "4",
        "grpo.max_completion_length": "12",
        "grpo.logging_steps": "1",
        "eval.enabled": "false",
    }
    return [
        sys.executable,
        "-m",
        "posttrain",
        "grpo",
        str(RECIPE),
        *[a for k, v in sets.items() for a in ("--set", f"{k}={v}")],
    ]


def _metric_rows(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def _kill_at_random(proc: subprocess.Popen, metrics: Path, rng: random.Random, timeout: float) -> bool:
    """Wait for training to log a new step, then SIGKILL after a random delay. False if it finished first."""
    start_rows, deadline = _metric_rows(metrics), time.time() + timeout
    while proc.poll() is None and _metric_rows(metrics) <= start_rows:
        if time.time() > deadline:
            proc.kill()
            raise TimeoutError("no training step logged before the timeout")
        time.sleep(0.02)
    time.sleep(rng.uniform(0.0, 0.6))  # a step here takes a few tenths of a second: hit any phase of it
    if proc.poll() is not None:
        return False
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return True


def crash_and_resume(out: Path, *, kills: int, steps: int, seed: int, timeout: float = 300.0) -> dict:
    """Run with `kills` random SIGKILLs and resumes; return counts and the verification problems."""
    rng = random.Random(seed)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    base, log = command(out, steps), out.parent / f"{out.name}.log"
    killed, attempts, finished = 0, 0, False
    with open(log, "w") as sink:
        while not finished and attempts < kills + 3:
            cmd = base + (["--resume"] if attempts else [])
            attempts += 1
            proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, env=env, cwd=REPO)
            if killed < kills and _kill_at_random(proc, out / "metrics.jsonl", rng, timeout):
                killed += 1
                continue
            rc = proc.wait(timeout=timeout)
            finished = rc == 0
    problems = [] if finished else [f"did not finish after {attempts} attempts (see {log})"]
    return {"killed": killed, "attempts": attempts, "problems": problems + (verify(out, steps) if finished else [])}


def verify(out: Path, steps: int) -> list[str]:
    """What is wrong with a finished run's folder (empty when nothing is)."""
    import torch
    from transformers import AutoModelForCausalLM

    problems = []
    summary = json.loads((out / "summary.json").read_text())
    if summary["steps"] != steps:
        problems.append(f"summary.json says {summary['steps']} steps, expected {steps}")
    logged = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    if logged != list(range(1, steps + 1)):
        problems.append(f"metrics.jsonl steps {logged}, expected 1..{steps} once each")
    folders = sorted((out / "checkpoints").iterdir())
    for folder in folders:
        if folder.name.startswith("."):
            problems.append(f"left behind: {folder.name}")
            continue
        if not folder.name.startswith("checkpoint-"):
            continue
        try:
            AutoModelForCausalLM.from_pretrained(folder)
            json.loads((folder / "trainer_state.json").read_text())
            torch.load(folder / "optimizer.pt", weights_only=True)
            torch.load(folder / "scheduler.pt", weights_only=False)
        except Exception as exc:
            problems.append(f"{folder.name} does not load: {type(exc).__name__}: {exc}")
    AutoModelForCausalLM.from_pretrained(out)  # the final policy
    return problems


def main(argv=None) -> int:
    p = parser(__doc__)
    p.add_argument("--trials", type=int, help="runs to kill and resume (20; quick 1)")
    p.add_argument("--kills", type=int, help="SIGKILLs per trial (3; quick 2)")
    p.add_argument("--steps", type=int, help="GRPO steps of each run (12; quick 8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=REPO / "runs" / "bench_crash")
    args = p.parse_args(argv)
    trials = args.trials or (1 if args.quick else 20)
    steps = args.steps or (8 if args.quick else 12)
    args.kills = args.kills or (2 if args.quick else 3)  # quick: the test suite's only SIGKILL trial
    seeds = [args.seed + t for t in range(trials)]
    report = start("crash", args, {"trials": trials, "kills": args.kills, "steps": steps}, seeds=seeds)
    import shutil

    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    survived, kills, started = 0, 0, time.time()
    for trial, seed in enumerate(seeds):
        result = crash_and_resume(args.out / f"trial-{trial:02d}", kills=args.kills, steps=steps, seed=seed)
        kills += result["killed"]
        ok = not result["problems"]
        survived += ok
        print(
            f"trial {trial:2d}: {result['killed']} kills, {result['attempts']} starts: "
            f"{'survived' if ok else 'LOST: ' + '; '.join(result['problems'])}",
            flush=True,
        )
    report.add(
        Row(
            "crash_resume",
            survived / trials,
            "trials that finished with nothing lost",
            "trials run",
            f"{survived}/{trials} survived {kills} SIGKILLs at random moments of {steps}-step runs, "
            f"{time.time() - started:.0f} s",
        )
    )
    report.write(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
