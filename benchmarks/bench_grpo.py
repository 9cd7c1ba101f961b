"""Side by side: `posttrain grpo` vs a plain TRL GRPOTrainer script, then our reward stage vs math-verify's.

    python benchmarks/bench_grpo.py [--quick] [--steps 12] [--repeats 5] [--batch 32] [--json PATH]

Part 1, the step-time ratio. One process, one tiny MoE checkpoint (recipes/tiny-math.yaml's model,
briefly warm-started once and cached in OUT/base-* so completions vary in length and rewards are not
all zero), the same training rows, reward functions, weights, settings and seed on both sides:

- posttrain: `posttrain.grpo.run.run()` on the recipe shrunk by overrides (eval and plots off), with
  everything `posttrain grpo` adds: guarded rewards, MoE routing telemetry, the NaN guard, the time
  split, memory readings, metrics.jsonl, rich progress (to a quiet console) and the checkpoint;
- TRL: `trl.GRPOTrainer(model=PATH, reward_funcs=[...], args=GRPOConfig(...))` with the recipe's
  reward functions called directly (no guard) and the recipe's weights, written out as a TRL user
  would. TRL defaults `bf16=True` and `gradient_checkpointing=True`; the recipe runs float32
  without checkpointing, so the script sets both off.

Before anything is timed, the two GRPOConfigs are compared field by field and the reward
functions (the functions, their arguments and weights) one by one: any difference stops the
script with exit code 3. Step time is the wall time between consecutive `on_step_begin` events, so
it counts every callback and log write; the final checkpoint save is outside it. After an untimed
warm-up run the runs alternate (posttrain, TRL, TRL, posttrain, ...) so a busy machine disturbs
both alike. Rows: the ratio of median step times, and of median rollout times (each side's
`_generate_single_turn`, timed on the trainer instance: TRL's `generate`, or posttrain's decode loop
with its routing recording), printed with both sides' mean completion length (the same distribution,
so the same work up to sampling noise).

Part 2, the reward stage. MATH-style completions (4 per MATH-500 answer from data/math500_test.jsonl:
boxed, rewritten in another form, wrong, no answer) scored by our `accuracy` and by a math-verify
reward written the way open-r1 writes it. Both are called once untimed (imports, compiled
patterns); every timed batch then starts with our parse and result caches cleared, so both sides
parse everything afresh (cold). A warm batch, the same completions scored again with our caches
full, is printed on its own. Row: the ratio of median cold batch times.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import random
import re
import statistics
import sys
import time
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATA, Row, parser, require_identical, start

REPO = Path(__file__).resolve().parent.parent
RECIPE = REPO / "recipes" / "tiny-math.yaml"
MATH500 = DATA / "math500_test.jsonl"
# Fields that legitimately differ between the two GRPOConfigs (paths) or are not settings.
NOT_SETTINGS = {"output_dir", "logging_dir", "run_name"}


def parse_args(argv=None) -> argparse.Namespace:
    p = parser(__doc__)
    p.add_argument("--steps", type=int, help="GRPO steps per run (12; quick 4)")
    p.add_argument("--repeats", type=int, help="runs of each side, alternating order (5; quick 1)")
    p.add_argument("--batch", type=int, help="completions per step, prompts x 8 generations (32; quick 16)")
    p.add_argument("--max-completion-length", type=int, default=40)
    p.add_argument(
        "--warmstart-steps", type=int, help="SFT steps of the shared base (60; quick 20), built once into OUT/base-*"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--math500", type=Path, default=MATH500, help="MATH-500 JSONL with an `answer` column")
    p.add_argument("--answers", type=int, help="MATH-500 answers for part 2, 4 completions each (500; quick 100)")
    p.add_argument("--reward-repeats", type=int, default=3, help="timed cold batches per reward function")
    p.add_argument("--skip-grpo", action="store_true", help="only the reward-stage comparison")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "bench_grpo")
    args = p.parse_args(argv)
    quick = args.quick
    for name, full, small in (
        ("steps", 12, 4),
        ("repeats", 5, 1),
        ("batch", 32, 16),
        ("warmstart_steps", 60, 20),
        ("answers", 500, 100),
    ):
        if getattr(args, name) is None:
            setattr(args, name, small if quick else full)
    if quick:
        args.out = args.out.with_name(args.out.name + "-quick")
    return args


# -- part 1: posttrain grpo vs plain TRL -------------------------------------------------------


def load(args, model_path: str | None = None, out: Path | None = None):
    from posttrain.config.loader import load_recipe
    from posttrain.config.schema import GRPORecipe

    sets = [
        f"output.dir={out or args.out / 'recipe'}",
        "output.plots=false",
        "eval.enabled=false",
        f"grpo.max_steps={args.steps}",
        "grpo.logging_steps=1",
        f"grpo.seed={args.seed}",
        f"grpo.per_device_train_batch_size={args.batch}",
        "grpo.num_generations=8",
        f"grpo.max_completion_length={args.max_completion_length}",
        "data.num_train=1000",
        f"model.warmstart.steps={args.warmstart_steps}",
        "model.warmstart.num_examples=4000",
    ]
    if model_path:  # the shared base: loaded as is, no second warm-start
        sets += [f"model.name_or_path={model_path}", "model.builder_args={}", "model.warmstart.steps=0"]
    return load_recipe(RECIPE, GRPORecipe, sets)


def base_model(args) -> Path:
    """The recipe's tiny MoE, warm-started once, saved in OUT/base-*: both sides start from it."""
    from posttrain.data.load import to_prompt
    from posttrain.data.splits import make_splits
    from posttrain.models.loading import (
        load_model,
        load_tokenizer,
        resolve_model_path,
        save_pretrained,
    )
    from posttrain.models.warmstart import run_warmstart

    base = args.out / f"base-ws{args.warmstart_steps}-seed{args.seed}"
    if (base / "config.json").is_file():
        return base
    recipe = load(args)
    init = resolve_model_path(recipe.model, args.out, seed=args.seed)
    model, tokenizer = load_model(init, "float32"), load_tokenizer(init)
    if args.warmstart_steps:
        splits = make_splits(recipe.data, recipe.eval, recipe.model.warmstart)
        prompts = [to_prompt(r["question"], recipe.data.system_prompt, True) for r in splits.warmstart]
        print(f"warm-start: {args.warmstart_steps} SFT steps (once; cached in {base})")
        run_warmstart(model, tokenizer, splits.warmstart, prompts, recipe.model.warmstart, args.out / "warmstart-tmp")
    save_pretrained(model, tokenizer, base)
    return base


def step_clock():
    """A callback holding `on_step_begin` times; step i lasts until step i+1 begins (callbacks and
    log writes included)."""
    from transformers import TrainerCallback

    class StepClock(TrainerCallback):
        def __init__(self):
            self.begins: list[float] = []

        def on_step_begin(self, args, state, control, **kwargs):
            self.begins.append(time.perf_counter())

        def seconds(self) -> list[float]:
            return [b - a for a, b in zip(self.begins, self.begins[1:])]

    return StepClock()


def time_rollouts(trainer, seconds: list[float]) -> None:
    """Append the wall seconds of each rollout (`_generate_single_turn`: TRL's generate, or posttrain's
    decode loop with its routing recording) to `seconds`; the instance's own attribute, so the class
    and TRL's API check are untouched."""
    sample = trainer._generate_single_turn

    @functools.wraps(sample)
    def timed(*args, **kwargs):
        started = time.perf_counter()
        try:
            return sample(*args, **kwargs)
        finally:
            seconds.append(time.perf_counter() - started)

    trainer._generate_single_turn = timed


@contextmanager
def clocked(clock, rollouts: list[float]):
    """Add `clock` to the trainer `posttrain grpo` builds and time its rollouts into `rollouts` (the
    benchmark's only hook into the run)."""
    import posttrain.grpo.run as grpo_run  # the name the run calls, bound at its import

    original = grpo_run.build_trainer

    def build(*args, **kwargs):
        trainer = original(*args, **kwargs)
        trainer.add_callback(clock)
        time_rollouts(trainer, rollouts)
        return trainer

    grpo_run.build_trainer = build
    try:
        yield
    finally:
        grpo_run.build_trainer = original


def run_posttrain(args, base: Path, out: Path) -> dict:
    from rich.console import Console

    from posttrain.grpo.run import run

    recipe = load(args, str(base), out)
    clock, rollouts = step_clock(), []
    with clocked(clock, rollouts):
        run(recipe, Console(quiet=True), overwrite=True)
    if not clock.seconds() or not rollouts:
        raise SystemExit("bench_grpo: no steps or rollouts were timed; the hook into posttrain.grpo.run did not apply")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {"steps": clock.seconds(), "rollouts": rollouts, "rows": rows}


def trl_config(args, out: Path):
    """The plain script's settings, written out as a TRL user would (values from the recipe)."""
    from trl import GRPOConfig

    recipe = load(args)
    g = recipe.grpo
    return GRPOConfig(
        output_dir=str(out),
        max_steps=args.steps,
        seed=args.seed,
        logging_steps=1,
        per_device_train_batch_size=args.batch,
        num_generations=8,
        max_completion_length=args.max_completion_length,
        learning_rate=g.learning_rate,
        lr_scheduler_type=g.lr_scheduler_type,
        warmup_steps=g.warmup_steps,
        loss_type=g.loss_type,
        beta=g.beta,
        scale_rewards=g.scale_rewards,
        temperature=g.temperature,
        reward_weights=[r.weight for r in recipe.rewards.functions],
        bf16=False,
        activation_checkpointing=False,  # TRL defaults both on; the recipe has both off
        router_aux_loss_coef=0.0,  # posttrain's value unless moe.balancing=aux_loss
        save_strategy="steps",
        save_steps=args.steps,
        save_total_limit=2,
        report_to=[],
        dataloader_pin_memory=False,
        disable_tqdm=True,
    )


def trl_rewards(args) -> list:
    """The recipe's reward functions as a TRL user passes them: the plain functions, arguments bound."""
    from functools import partial

    from posttrain.rewards.registry import resolve

    return [partial(resolve(r.name), **r.kwargs) if r.kwargs else resolve(r.name) for r in load(args).rewards.functions]


def _plain(fn):
    """(function, bound arguments) under posttrain's wrappers (guard, argument binding) or a partial."""
    kwargs = {}
    while True:
        kwargs.update(getattr(fn, "kwargs", None) or getattr(fn, "keywords", None) or {})
        inner = getattr(fn, "func", None)
        if inner is None or inner is fn:
            return fn, kwargs
        fn = inner


def run_trl(args, base: Path, rows: list[dict], out: Path) -> dict:
    from datasets import Dataset
    from transformers import AutoTokenizer
    from transformers.trainer_callback import PrinterCallback
    from trl import GRPOTrainer

    clock = step_clock()
    trainer = GRPOTrainer(
        model=str(base),
        reward_funcs=trl_rewards(args),
        args=trl_config(args, out),
        train_dataset=Dataset.from_list(rows),
        processing_class=AutoTokenizer.from_pretrained(base),
        callbacks=[clock],
    )
    trainer.remove_callback(PrinterCallback)  # with tqdm off, the Trainer prints every log dict instead
    rollouts: list[float] = []
    time_rollouts(trainer, rollouts)
    trainer.train()
    logged = [h for h in trainer.state.log_history if "reward" in h]
    return {"steps": clock.seconds(), "rollouts": rollouts, "rows": logged}


def check_identical(args, base: Path) -> None:
    """Exit 3 unless both sides get the same GRPOConfig (every field) and the same reward functions."""
    import dataclasses

    from posttrain.evaluate.scoring import build_rewards
    from posttrain.grpo.trainer import grpo_args

    recipe = load(args, str(base))
    ours, theirs = grpo_args(recipe, args.out / "a"), trl_config(args, args.out / "b")
    fields = [f.name for f in dataclasses.fields(ours) if f.name not in NOT_SETTINGS]
    require_identical(
        {k: getattr(ours, k) for k in fields}, {k: getattr(theirs, k) for k in fields}, "the two GRPOConfigs"
    )
    built, _ = build_rewards(recipe.rewards.functions, recipe.eval.correctness_reward)
    require_identical(_describe(built), _describe(trl_rewards(args)), "the two sides' reward functions")


def _describe(fns) -> dict:
    return {f"reward {i}": (f.__module__, f.__qualname__, kw) for i, (f, kw) in enumerate(map(_plain, fns))}


def train_rows(args, base: Path) -> list[dict]:
    """The rows `posttrain grpo` trains on, prompt column included, for the TRL script."""
    from posttrain.data.load import to_prompt
    from posttrain.data.splits import make_splits

    recipe = load(args, str(base))
    splits = make_splits(recipe.data, recipe.eval, recipe.model.warmstart)
    return [{**r, "prompt": to_prompt(r["question"], recipe.data.system_prompt, True)} for r in splits.train]


def bench_grpo(args, report) -> None:
    base = base_model(args)
    check_identical(args, base)
    rows = train_rows(args, base)
    # Untimed: the process's one-time costs (lazy imports, first kernels) would land on the first run.
    run_trl(argparse.Namespace(**{**vars(args), "steps": 2}), base, rows, args.out / "warm-up")
    results = {"posttrain": [], "trl": []}
    for r in range(args.repeats):
        order = ("posttrain", "trl") if r % 2 == 0 else ("trl", "posttrain")
        for side in order:
            out = args.out / f"{side}-{r}"
            started = time.time()
            result = run_posttrain(args, base, out) if side == "posttrain" else run_trl(args, base, rows, out)
            results[side].append(result)
            print(
                f"run {r + 1}/{args.repeats} {side:9}: median step {statistics.median(result['steps']):.3f} s "
                f"({time.time() - started:.0f} s in all)"
            )
    report_grpo(args, results, report)


def _mean_length(row: dict) -> float:
    """A logged step's mean completion length: TRL's key, or metrics.jsonl's name for it."""
    return row["completions/mean_length"] if "completions/mean_length" in row else row["completion_length"]


def report_grpo(args, results: dict, report) -> None:
    medians = {side: statistics.median(s for run in runs for s in run["steps"]) for side, runs in results.items()}
    for side in ("posttrain", "trl"):
        per_run = ", ".join(f"{statistics.median(run['steps']):.3f}" for run in results[side])
        print(f"  {side:9} median step {medians[side]:.3f} s   (per run: {per_run})")
    ours, theirs = results["posttrain"][0]["rows"], results["trl"][0]["rows"]
    same = [round(a["reward_mean"], 6) == round(b["reward"], 6) for a, b in zip(ours, theirs)]
    # Under generation.sampler: posttrain the two sides draw from the same distribution but consume the
    # random stream in another order (a group's prompt prefilled once, finished rows pruned): their
    # trajectories differ from the first step; under `generate` they match step for step.
    print(f"same reward trajectory (first run of each): {sum(same)}/{len(same)} steps")
    rows = [row for run in results["posttrain"] for row in run["rows"]]
    split = {k: statistics.median(r[f"time/{k}_s"] for r in rows) for k in ("generation", "reward", "optimisation")}
    fracs = {k: statistics.median(r[f"time/{k}_frac"] for r in rows) for k in split}
    print(
        "posttrain time split (median per step): " + ", ".join(f"{k} {split[k]:.3f} s ({fracs[k]:.0%})" for k in split)
    )
    print(
        f"peak RSS {max(r['memory/peak_rss_mb'] for r in rows):.0f} MiB, "
        f"tokens/s {statistics.median(r['tokens_per_second'] for r in rows if 'tokens_per_second' in r):,.0f}"
    )
    # The rollout alone (the part the decode loop replaces), per side; both sample the same number of
    # rows from the same distribution, so their mean completion lengths agree up to sampling noise.
    rollout = {side: statistics.median(s for run in runs for s in run["rollouts"]) for side, runs in results.items()}
    length = {
        side: statistics.mean(_mean_length(r) for run in runs for r in run["rows"]) for side, runs in results.items()
    }
    for side in ("posttrain", "trl"):
        print(f"  {side:9} median rollout {rollout[side]:.3f} s, mean completion {length[side]:.1f} tokens")
    report.add(
        Row(
            "grpo_rollout_time",
            rollout["posttrain"] / rollout["trl"],
            "posttrain rollout time (decode loop)",
            "plain TRL rollout time (generate)",
            f"median {rollout['posttrain']:.3f} vs {rollout['trl']:.3f} s per step's {args.batch} completions, "
            f"the runs above; mean completion {length['posttrain']:.1f} vs {length['trl']:.1f} tokens",
        )
    )
    report.add(
        Row(
            "grpo_step_time",
            medians["posttrain"] / medians["trl"],
            "posttrain GRPO step time",
            "plain TRL GRPOTrainer step time",
            f"median {medians['posttrain']:.3f} vs {medians['trl']:.3f} s over {args.repeats} alternating runs x "
            f"{args.steps} steps x {args.batch} completions per side; identical GRPOConfig and rewards; "
            f"time split generation {fracs['generation']:.0%} / rewards {fracs['reward']:.0%} / optimisation {fracs['optimisation']:.0%}",
        )
    )


# -- part 2: the reward stage ------------------------------------------------------------------


def math_verify_accuracy(completions, solution, **kwargs) -> list[float | None]:
    """open-r1's `accuracy_reward`: math-verify's parse of the gold and the completion, then verify."""
    from latex2sympy2_extended import NormalizationConfig
    from math_verify import LatexExtractionConfig, parse, verify

    rewards = []
    for completion, sol in zip(completions, solution):
        gold = parse(sol, extraction_mode="first_match")
        if not gold:
            rewards.append(None)
            continue
        answer = parse(
            completion[0]["content"],
            extraction_config=[
                LatexExtractionConfig(
                    # open-r1 also sets equations=True, which math-verify 0.9 ignores (with a warning per call)
                    normalization_config=NormalizationConfig(
                        nits=False, malformed_operators=False, basic_latex=True, boxed="all", units=True
                    ),
                    boxed_match_priority=0,
                    try_extract_without_anchor=False,
                )
            ],
            extraction_mode="first_match",
        )
        try:
            rewards.append(float(verify(gold, answer)))
        except Exception:
            rewards.append(None)
    return rewards


def answers(path: Path, n: int) -> list[str]:
    if path.is_file():
        with path.open(encoding="utf-8") as f:
            return [json.loads(line)["answer"] for line in f if line.strip()][:n]
    print(f"no MATH-500 at {path}: synthesising {n} MATH-style answers (pass --math500 PATH for the real ones)")
    rng = random.Random(0)
    forms = [
        lambda: str(rng.randint(-50, 999)),
        lambda: f"\\frac{{{rng.randint(1, 9)}}}{{{rng.randint(2, 12)}}}",
        lambda: f"\\frac{{\\sqrt{{{rng.choice([2, 3, 5])}}}}}{{{rng.randint(2, 6)}}}",
        lambda: f"{rng.randint(1, 9)}\\sqrt{{{rng.choice([2, 3, 7])}}}",
        lambda: f"({rng.randint(-9, 9)},{rng.randint(-9, 9)})",
        lambda: f"{rng.randint(1, 99)}\\pi",
        lambda: f"[{rng.randint(-9, 0)},{rng.randint(1, 9)}]",
    ]
    return [rng.choice(forms)() for _ in range(n)]


def rewritten(answer: str) -> str:
    """The same value written another way, as a model might: 1/2 for \\frac{1}{2}, 7.0 for 7."""
    a = answer.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac").replace("\\left", "").replace("\\right", "")
    if re.fullmatch(r"-?\d+", a):
        return f"{a}.0"
    frac = re.fullmatch(r"(-?)\\frac\{(\d+)\}\{(\d+)\}", a)
    if frac:
        return f"{frac[1]}{frac[2]}/{frac[3]}"
    return a.replace(" ", "")


def wrong(answer: str) -> str:
    """A different value: one digit changed, or the next choice letter for "\\text{(C)}"."""
    digit = re.search(r"\d", answer)
    if digit:
        return answer[: digit.start()] + str((int(digit[0]) + 1) % 10) + answer[digit.end() :]
    choice = re.search(r"\(([A-E])\)", answer)
    if choice:
        return answer[: choice.start(1)] + "ABCDEA"["ABCDE".index(choice[1]) + 1] + answer[choice.end(1) :]
    return answer + "+1"


def completion_batch(golds: list[str]) -> tuple[list[str], list[str], list[float]]:
    """(completion texts, golds, intended label): boxed, rewritten, wrong and missing, per gold."""
    texts, out_golds, labels = [], [], []
    for gold in golds:
        for text, label in (
            (f"Adding the two cases gives the result, so the answer is $\\boxed{{{gold}}}$.", 1.0),
            (f"Simplifying step by step. The final answer is ${rewritten(gold)}$.", 1.0),
            (f"After a sign slip: the answer is $\\boxed{{{wrong(gold)}}}$.", 0.0),
            ("Let me set up the equation first and then solve for the unknown", 0.0),
        ):
            texts.append(text)
            out_golds.append(gold)
            labels.append(label)
    return texts, out_golds, labels


def bench_rewards(args, report) -> None:
    from posttrain.rewards.math import accuracy, clear_caches

    texts, golds, labels = completion_batch(answers(args.math500, args.answers))
    solutions = [f"$\\boxed{{{g}}}$" for g in golds]  # the gold as a MATH solution ends: boxed
    completions = [[{"role": "assistant", "content": t}] for t in texts]
    sides = {
        "posttrain": lambda: accuracy(completions, answer=golds),
        "math-verify": lambda: math_verify_accuracy(completions, solution=solutions),
    }

    math_verify_accuracy([[{"role": "assistant", "content": "$1$"}]], ["$1$"])  # imports outside the timing
    accuracy([[{"role": "assistant", "content": "$1$"}]], answer=["1"])
    seconds = {name: [] for name in sides}
    scores = {}
    for repeat in range(args.reward_repeats):
        for name in ("posttrain", "math-verify") if repeat % 2 == 0 else ("math-verify", "posttrain"):
            if name == "posttrain":
                clear_caches()  # cold: nothing parsed or scored before (math-verify keeps no results)
            gc.collect()  # neither side pays for the other's garbage
            begin = time.perf_counter()
            scores[name] = sides[name]()
            seconds[name].append(time.perf_counter() - begin)
    gc.collect()
    begin = time.perf_counter()
    sides["posttrain"]()  # warm: the batch scored a moment ago, so its parses and results are cached
    warm = time.perf_counter() - begin
    ours, theirs = scores["posttrain"], scores["math-verify"]
    n = len(texts)
    median = {k: statistics.median(v) for k, v in seconds.items()}
    print(
        f"\nreward stage: {n} MATH-style completions ({n // 4} answers x boxed/rewritten/wrong/missing), "
        f"median of {args.reward_repeats} cold batches"
    )
    for name in sides:
        right = sum(s == label for s, label in zip(scores[name], labels))
        print(
            f"  {name:11} {median[name]:7.3f} s per batch ({median[name] / n * 1e6:6.0f} us/completion; "
            f"runs {', '.join(f'{s:.3f}' for s in seconds[name])}), matches the intended label {right / n:.1%}, "
            f"None {sum(s is None for s in scores[name])}"
        )
    print(f"  posttrain, warm caches: {warm:.3f} s per batch")
    agree = sum(a == b for a, b in zip(ours, theirs))
    for k, kind in enumerate(("boxed", "rewritten", "wrong", "missing")):
        rows = range(k, n, 4)
        print(
            f"    {kind:9} posttrain {sum(ours[i] == labels[i] for i in rows) / len(rows):.1%}  "
            f"math-verify {sum(theirs[i] == labels[i] for i in rows) / len(rows):.1%}"
        )
    report.add(
        Row(
            "reward_stage_cold",
            median["posttrain"] / median["math-verify"],
            "posttrain accuracy reward time",
            "open-r1-style math-verify reward time",
            f"{median['posttrain'] / n * 1e6:.0f} vs {median['math-verify'] / n * 1e6:.0f} us per completion, "
            f"median of {args.reward_repeats} alternating batches of {n}, caches cleared before each; "
            f"warm {warm / n * 1e6:.0f} us; the two agree on {agree / n:.1%} of rows",
        )
    )


def main(argv=None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    settings = {k: v for k, v in vars(args).items() if k not in ("json", "out", "math500", "threads", "quick")}
    report = start("grpo", args, {**settings, "math500": str(args.math500.name)}, seeds=[args.seed])
    if not args.skip_grpo:
        bench_grpo(args, report)
    bench_rewards(args, report)
    report.write(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
