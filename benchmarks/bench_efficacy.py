"""What RL adds beyond imitation: the GRPO quickstart against an SFT control given the same minutes.

    python benchmarks/bench_efficacy.py [--seeds 0,1,2] [--quick] [--json PATH] [--out DIR]

For each seed S, from one warm-started model:
- GRPO: `posttrain grpo recipes/tiny-math.yaml --set grpo.seed=S`, the README command, in its own
  process with torch's default threads and a fresh output folder. It warm-starts the base on the
  imperfect teacher's worked solutions, scores the base on the held-out problems, runs GRPO,
  scores the policy.
- SFT control: that run's warm-started model (`base/`), trained on by the warm-start's own SFT
  (TRL's SFTTrainer, completion-only loss) on all the demonstrations the warm-start could use, for
  as many wall seconds as the GRPO phase took, in its own process with the same threads. Its
  learning rate warms up, then follows a cosine over the clock (it decays to 0 when the time is
  up, as GRPO's does over its steps), so the control is never cut off mid-schedule. It is scored on
  the same held-out problems with the same sampling, through the same code as the run.

The script checks the two sides share the start model, the demonstrations, the held-out problems,
the sampling and the time budget, and exits 3 otherwise. It prints a table and, last,
`efficacy: grpo +A.A (min +B.B) vs sft-control +C.C pass@1 over N seeds`.

Rows: `quickstart_grpo` (the quickstart's held-out pass@1 after GRPO / before, every seed listed)
and `efficacy_vs_sft` (pass@1 of the GRPO policy / of the SFT control). --quick shrinks the
recipe to a smoke test of this script (one seed, a few steps); its figures mean nothing.

Why the control loses (measured, docs/efficacy.md): the demonstrations come from an imperfect
teacher whose final answer is wrong on a fraction of its worked solutions (`slip_rate`). Imitation
learns to make those slips too, at their rate, however long it trains; the rule-based reward
tells GRPO which answers are wrong, so only GRPO can exceed its data.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch
from rich.console import Console
from transformers import TrainerCallback, set_seed

from common import REPO, Row, parser, require_identical, start
from posttrain.config import GRPORecipe, load_recipe
from posttrain.config.schema import WarmstartConfig
from posttrain.data.load import to_prompt
from posttrain.data.splits import make_splits
from posttrain.evaluate.heldout import HeldOut, eval_sampling, heldout_accuracy
from posttrain.evaluate.scoring import build_rewards
from posttrain.models.loading import load_model, load_tokenizer
from posttrain.models.precision import resolve
from posttrain.models.warmstart import run_warmstart
from posttrain.telemetry.progress import quiet_libraries

RECIPE = "recipes/tiny-math.yaml"
# The SFT control's peak learning rate and warmup, tuned on seed 0 (docs/efficacy.md).
CONTROL_LR = 1e-3
CONTROL_WARMUP_STEPS = 20

# --quick: a smaller model on two-term sums, warm-started just enough to get some answers right (a smoke
# test of the comparison, in CI: its figures mean nothing).
QUICK = [
    "model.builder_args={hidden_size: 64, num_layers: 2, n_routed_experts: 4, num_experts_per_tok: 2}",
    "model.warmstart.steps=150",
    "model.warmstart.until_greedy=null",  # a fixed warm-start: the smoke test checks the comparison, not the rounds
    "model.warmstart.batch_size=32",
    "model.warmstart.learning_rate=3e-3",
    "model.warmstart.num_examples=3000",
    "data.task_args={num_terms: 2, low: 1, high: 9, slip_rate: 0.4, slip: step}",
    "data.num_train=40",
    "eval.num_problems=16",
    "eval.num_samples=4",
    "eval.max_new_tokens=16",
    "grpo.max_steps=3",
    "grpo.warmup_steps=0",
    "grpo.per_device_train_batch_size=16",
    "grpo.max_completion_length=16",
    "output.plots=false",
]


def readme_env() -> dict:
    """The environment of the README command: torch's default threads."""
    return {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}


def run_grpo(seed: int, out: Path, sets: list[str]) -> tuple[dict, float]:
    cmd = [
        sys.executable,
        "-m",
        "posttrain",
        "grpo",
        RECIPE,
        "--set",
        f"output.dir={out}",
        "--set",
        f"grpo.seed={seed}",
    ]
    cmd += [a for s in sets for a in ("--set", s)]
    started = time.time()
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=readme_env())
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return json.loads((out / "summary.json").read_text()), time.time() - started


def run_control(run_dir: Path, seconds: float, seed: int, lr: float, out: Path) -> dict:
    """The SFT control in a child process with the GRPO run's threads; returns its result."""
    cmd = [sys.executable, __file__, "--control-of", str(run_dir), "--seconds", str(seconds), "--seed", str(seed)]
    cmd += ["--control-lr", str(lr)]
    cmd += ["--out", str(out)]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=readme_env())
    if done.returncode:
        raise SystemExit(f"SFT control failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return json.loads((out / "control.json").read_text())


def digest(items) -> str:
    h = hashlib.sha256()
    for item in items:
        h.update(item.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def weights_digest(path: Path) -> str:
    return hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()[:16]


class ClockCosine(TrainerCallback):
    """Linear warmup over steps, then a cosine over wall time to 0 at `budget` seconds, then stop."""

    def __init__(self, peak: float, warmup: int, budget: float):
        self.peak, self.warmup, self.budget = peak, warmup, budget
        self.started = None
        self.lrs: list[float] = []

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = time.time()

    def on_step_begin(self, args, state, control, optimizer=None, **kwargs):
        # Set after the scheduler's own step, so this is the rate the next optimizer step uses.
        elapsed = min(1.0, (time.time() - self.started) / self.budget)
        lr = self.peak * 0.5 * (1 + math.cos(math.pi * elapsed))
        if state.global_step < self.warmup:
            lr = min(lr, self.peak * (state.global_step + 1) / self.warmup)
        for group in optimizer.param_groups:
            group["lr"] = lr
        self.lrs.append(lr)

    def on_step_end(self, args, state, control, **kwargs):
        if time.time() - self.started >= self.budget:
            control.should_training_stop = True


def control_main(args) -> int:
    """Child process: continue the warm-start's SFT from `args.control_of/base` for `args.seconds`."""
    quiet_libraries()
    run_dir = Path(args.control_of)
    recipe = load_recipe(run_dir / "recipe.yaml", GRPORecipe)  # the run's recipe, overrides applied
    set_seed(args.seed)
    splits = make_splits(recipe.data, recipe.eval, recipe.model.warmstart)
    base = run_dir / "base"
    tokenizer = load_tokenizer(str(base))
    model = load_model(str(base), recipe.model.dtype)
    chat = tokenizer.chat_template is not None
    prompts = [to_prompt(r["question"], recipe.data.system_prompt, chat) for r in splits.warmstart]
    clock = ClockCosine(args.control_lr, CONTROL_WARMUP_STEPS, args.seconds)
    warm = recipe.model.warmstart
    cfg = WarmstartConfig(
        steps=10**7,  # the clock stops it; over this many steps the built-in cosine stays at its peak
        batch_size=warm.batch_size,
        learning_rate=args.control_lr,
        warmup_steps=0,  # the clock schedule warms up
        num_examples=warm.num_examples,
        seed=args.seed,
    )
    out = Path(args.out)
    t = time.time()
    metrics = run_warmstart(
        model,
        tokenizer,
        splits.warmstart,
        prompts,
        cfg,
        out / "sft-tmp",
        callbacks=[clock],
        precision=resolve(recipe.train.precision, recipe.model.dtype),
    )
    trained = time.time() - t
    rewards, correctness = build_rewards(recipe.rewards.functions, recipe.eval.correctness_reward)
    settings = eval_sampling(recipe.eval, cache=recipe.generation.cache)
    heldout = HeldOut(splits.heldout, recipe.data.system_prompt, settings, rewards, correctness, Console(quiet=True))
    result = heldout_accuracy(model, tokenizer, heldout, "sft-control")
    result.pop("records")
    shutil.rmtree(out / "sft-tmp", ignore_errors=True)
    report = {
        "accuracy": result["accuracy"],
        "greedy_accuracy": result["greedy_accuracy"],
        "seconds": trained,
        "steps": len(clock.lrs),
        "examples_seen": len(clock.lrs) * cfg.batch_size,
        "train_loss": metrics.get("train_loss"),
        "settings": {
            "start_weights": weights_digest(base),
            "demonstrations": digest(r["solution"] for r in splits.warmstart),
            "heldout": digest(f"{r['id']}={r['answer']}" for r in splits.heldout),
            "eval": {
                "num_problems": len(splits.heldout),
                "num_samples": recipe.eval.num_samples,
                "temperature": recipe.eval.temperature,
            },
            "threads": torch.get_num_threads(),
        },
    }
    (out / "control.json").write_text(json.dumps(report, indent=1))
    return 0


def grpo_side(run_dir: Path, summary: dict) -> dict:
    """The GRPO run's side of the identical-settings check, read from what the run wrote."""
    recipe = load_recipe(run_dir / "recipe.yaml", GRPORecipe, [])
    splits = make_splits(recipe.data, recipe.eval, recipe.model.warmstart)
    scored = [json.loads(line) for line in (run_dir / "heldout_base.jsonl").read_text().splitlines()]
    return {
        "start_weights": weights_digest(run_dir / "base"),
        "demonstrations": digest(r["solution"] for r in splits.warmstart),
        "heldout": digest(f"{r['id']}={r['answer']}" for r in scored),
        "eval": {k: summary["eval"][k] for k in ("num_problems", "num_samples", "temperature")},
        "threads": summary["torch_threads"],
    }


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")  # a --quick model may get nothing right


def warm_steps(summary: dict) -> str:
    """SFT steps behind the run's base, with its until_greedy checks (`400 (checks 64 83, kept 2)`: a
    restart, the second attempt kept); '-' without a warm-start."""
    warm = summary.get("warmstart") or {}
    if "steps" not in warm:
        return "-"
    checks = " ".join(f"{100 * c['greedy']:.0f}" for c in warm.get("checks", []))
    kept = f", kept {warm['kept'] + 1}" if "kept" in warm and len(warm.get("checks", [])) > 1 else ""
    return f"{warm['steps']} (checks {checks}{kept})" if checks else str(warm["steps"])


def points(x: float) -> str:
    return f"{100 * x:.1f}"


def main(argv=None) -> int:
    p = parser(__doc__)
    p.set_defaults(threads=0)  # both sides run as the README command does, with torch's default threads
    p.add_argument("--seeds", default="0,1,2", help="comma-separated (quick: 0)")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "bench_efficacy")
    p.add_argument("--control-lr", type=float, default=CONTROL_LR, help="the SFT control's peak learning rate")
    p.add_argument("--control-of", help=argparse.SUPPRESS)
    p.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.control_of:
        return control_main(args)

    seeds = [int(s) for s in ("0" if args.quick and args.seeds == "0,1,2" else args.seeds).split(",")]
    sets = QUICK if args.quick else []
    report = start(
        "efficacy",
        args,
        {
            "grpo": f"posttrain grpo {RECIPE} --set grpo.seed=S",
            "sft_control": "the run's base/, SFT on the warm-start's demonstrations for the GRPO phase's wall seconds",
            "control_lr": args.control_lr,
            "control_warmup_steps": CONTROL_WARMUP_STEPS,
            "control_schedule": "cosine over the wall-clock budget",
            "shrunk": args.quick,
            "threads_both_sides": "torch's default, as the README command",
        },
        seeds=seeds,
    )
    shutil.rmtree(args.out, ignore_errors=True)
    results = []
    for seed in seeds:
        run_dir = args.out / f"grpo-{seed}"
        summary, seconds = run_grpo(seed, run_dir, sets)
        budget = summary["stage_seconds"]["grpo"]
        control = run_control(run_dir, budget, seed, args.control_lr, args.out / f"sft-{seed}")
        require_identical(grpo_side(run_dir, summary), control["settings"], f"GRPO and SFT control, seed {seed}")
        results.append({"seed": seed, "grpo": summary, "seconds": seconds, "control": control})
        print(
            f"seed {seed}: base {points(summary['base_accuracy'])}, grpo {points(summary['final_accuracy'])}, "
            f"sft-control {points(control['accuracy'])} ({control['steps']} SFT steps in {control['seconds']:.0f} s "
            f"vs {summary['steps']} GRPO steps in {budget:.0f} s)",
            flush=True,
        )

    print()
    print(
        "| seed | warm-start steps | base pass@1 | GRPO pass@1 | SFT-control pass@1 | base greedy | GRPO greedy "
        "| SFT-control greedy | README command min | SFT min |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        g, c = r["grpo"], r["control"]
        print(
            f"| {r['seed']} | {warm_steps(g)} | {points(g['base_accuracy'])} | {points(g['final_accuracy'])} | {points(c['accuracy'])} | "
            f"{points(g['base_greedy_accuracy'])} | {points(g['final_greedy_accuracy'])} | {points(c['greedy_accuracy'])} | "
            f"{r['seconds'] / 60:.1f} | {c['seconds'] / 60:.1f} |"
        )
    print()
    gains = [100 * (r["grpo"]["final_accuracy"] - r["grpo"]["base_accuracy"]) for r in results]
    control_gains = [100 * (r["control"]["accuracy"] - r["grpo"]["base_accuracy"]) for r in results]
    greedy = [100 * (r["grpo"]["final_greedy_accuracy"] - r["grpo"]["base_greedy_accuracy"]) for r in results]
    base = [r["grpo"]["base_accuracy"] for r in results]
    final = [r["grpo"]["final_accuracy"] for r in results]
    sft = [r["control"]["accuracy"] for r in results]
    ev = results[0]["grpo"]["eval"]
    report.add(
        Row(
            "quickstart_grpo",
            ratio(statistics.mean(final), statistics.mean(base)),
            "held-out pass@1 after GRPO",
            "held-out pass@1 of the warm-started base",
            f"{points(statistics.mean(base))} -> {points(statistics.mean(final))} on average; gain per seed "
            f"{', '.join(f'{g:+.1f}' for g in gains)} points (mean {statistics.mean(gains):+.1f}, min {min(gains):+.1f}); "
            f"greedy {', '.join(f'{g:+.1f}' for g in greedy)}; {ev['num_problems']} problems x {ev['num_samples']} "
            f"samples at T={ev['temperature']}; warm-start steps {', '.join(str(warm_steps(r['grpo'])) for r in results)}; "
            f"README command {', '.join(str(round(r['seconds'])) for r in results)} s per run",
        )
    )
    report.add(
        Row(
            "efficacy_vs_sft",
            ratio(statistics.mean(final), statistics.mean(sft)),
            "held-out pass@1 after GRPO",
            "held-out pass@1 of an SFT control given the GRPO phase's minutes",
            f"SFT control {', '.join(points(s) for s in sft)} vs GRPO {', '.join(points(f) for f in final)} per seed; "
            f"control gain {', '.join(f'{g:+.1f}' for g in control_gains)} points; control greedy "
            f"{', '.join(points(r['control']['greedy_accuracy']) for r in results)}; "
            f"{', '.join(str(r['control']['steps']) for r in results)} SFT steps of {results[0]['grpo']['steps']} GRPO steps' time",
        )
    )
    report.write(args.json)
    print(
        f"efficacy: grpo {statistics.mean(gains):+.1f} (min {min(gains):+.1f}) vs sft-control "
        f"{statistics.mean(control_gains):+.1f} pass@1 over {len(results)} seeds"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
