"""MoE-stable RL: the sampler-trainer routing mismatch, and what routing replay and GSPO do about it.

    python benchmarks/bench_moe_rl.py [--quick] [--steps 100] [--seeds 0,1,2] [--lr 3e-4] [--experts 8]
                                      [--rollout-autocast bf16] [--json PATH]

Setting: the quickstart recipe (recipes/tiny-math.yaml) shrunk to a 2-layer DeepSeek-V3-style MoE
(`--experts` routed experts, top-2, one shared) on sums of two numbers in 1..20, warm-started once
(shared by every arm and seed), then GRPO in which sampling and training genuinely differ, as they
do at scale: the rollouts run under bf16 autocast (`generation.rollout_autocast`) while the trainer
computes in fp32, and every batch is optimised twice (`grpo.num_iterations: 2`), so the second
pass also sees a stale policy. Arms (everything else identical; the script checks):

- `none`: GRPO (token-level ratio, loss_type grpo, epsilon 0.2);
- `fp32_sampler`: the same with fp32 rollouts: no precision gap, the reference for what the mismatch costs;
- `rollout`: the same with `moe.routing_replay: rollout` (R3);
- `old_policy`: the same with `moe.routing_replay: old_policy` (R2);
- `gspo`: `grpo.importance_sampling_level: sequence` with GSPO's clipping range (3e-4, 4e-4);
- `gspo_rollout`: GSPO and R3 together.

Per arm and seed: the routing flip rate the trainer saw (`routing/flip_rate`), the router's own flip
rate against the rollout (`routing/router_flip_rate`: the mismatch itself), the sampler-trainer
|log-prob| gap at the rollout's weights (mean and p99), TRL's clip fraction, the reward curve, and
held-out pass@1 after training. Rows (ratios of means over seeds, per-seed values beside them):

- `moe_rl_logp_mismatch`: |log-prob gap| without replay / with rollout replay;
- `moe_rl_max_ratio`: the largest token importance ratio (current / old policy) of each step that
  reuses a batch, without replay / with rollout replay: routing flips between the two passes are
  what sends single tokens' ratios far out (PPO's clip does not bound a ratio with a negative advantage);
- `moe_rl_heldout_<arm>`: held-out pass@1 of the arm / of `none`, for each other arm (the base's
  held-out pass@1 before GRPO is printed beside them);
- `moe_rl_replay_overhead`: a rollout (generate) plus a training forward+backward with recording and
  replay / the same without, median of paired, interleaved runs on one batch (target <= 1.05).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Row, heldout, parser, require_identical, start, tail_mean, task_context

REPO = Path(__file__).resolve().parent.parent
RECIPE = REPO / "recipes" / "tiny-math.yaml"
ARMS = {
    "none": {},
    "fp32_sampler": {"generation.rollout_autocast": "none"},
    "rollout": {"moe.routing_replay": "rollout"},
    "old_policy": {"moe.routing_replay": "old_policy"},
    "gspo": {"grpo.importance_sampling_level": "sequence"},
    "gspo_rollout": {"grpo.importance_sampling_level": "sequence", "moe.routing_replay": "rollout"},
}
# What may differ between arms: the arm's own fields, and the clipping range GSPO brings with it.
ARM_FIELDS = {
    "moe.routing_replay",
    "grpo.importance_sampling_level",
    "grpo.epsilon",
    "grpo.epsilon_high",
    "generation.rollout_autocast",
}


def parse_args(argv=None) -> argparse.Namespace:
    p = parser(__doc__)
    p.add_argument("--steps", type=int, help="GRPO steps per run (100; quick 4)")
    p.add_argument("--lr", type=float, default=3e-4, help="GRPO peak learning rate")
    p.add_argument("--experts", type=int, default=8, help="routed experts per layer (top-2)")
    p.add_argument("--rollout-autocast", default="bf16", choices=("none", "bf16"), help="the rollouts' precision")
    p.add_argument("--iterations", type=int, default=2, help="grpo.num_iterations (passes per batch)")
    p.add_argument("--warmstart-steps", type=int, help="SFT steps of the shared base (500; quick 40)")
    p.add_argument("--batch", type=int, default=16, help="completions per step (prompts x 8 generations)")
    p.add_argument("--eval-problems", type=int, help="held-out problems, 4 samples each (100; quick 12)")
    p.add_argument("--seeds", help="GRPO seeds, comma-separated (0,1,2; quick 0)")
    p.add_argument("--arms", default=",".join(ARMS), help="comma-separated subset of " + ", ".join(ARMS))
    p.add_argument("--out", type=Path, default=REPO / "runs" / "bench_moe_rl")
    args = p.parse_args(argv)
    for name, full, small in (("steps", 100, 4), ("warmstart_steps", 500, 40), ("eval_problems", 100, 12)):
        if getattr(args, name) is None:
            setattr(args, name, small if args.quick else full)
    args.seeds = [int(x) for x in (args.seeds or ("0" if args.quick else "0,1,2")).split(",")]
    args.arms = [a.strip() for a in args.arms.split(",")]
    unknown = sorted(set(args.arms) - set(ARMS))
    if unknown or "none" not in args.arms:
        p.error(f"--arms: choose from {', '.join(ARMS)}, with none (the reference)")
    if args.quick:
        args.out = args.out.with_name(args.out.name + "-quick")
    return args


def overrides(args, arm: str, seed: int) -> dict[str, str]:
    """Every --set of one run: the shared setting, then the arm's fields."""
    model = {
        "hidden_size": 64,
        "num_layers": 2,
        "num_heads": 2,
        "n_routed_experts": args.experts,
        "num_experts_per_tok": 2,
        "moe_intermediate_size": 32,
        "kv_lora_rank": 16,
        "qk_rope_head_dim": 8,
        "qk_nope_head_dim": 8,
        "v_head_dim": 16,
    }
    sets = {
        "output.dir": str(args.out),
        "model.builder_args": json.dumps(model),
        "data.task_args": "{num_terms: 2, low: 1, high: 20}",
        "data.num_train": "1000",
        "model.warmstart.steps": str(args.warmstart_steps),
        "model.warmstart.batch_size": "32",
        "model.warmstart.num_examples": "4000",
        "model.warmstart.until_greedy": "null",
        "grpo.max_steps": str(args.steps),
        "grpo.seed": str(seed),
        "grpo.learning_rate": str(args.lr),
        "grpo.loss_type": "grpo",  # the per-sequence loss GSPO needs; the token arms use it too
        "grpo.num_iterations": str(args.iterations),
        "grpo.logging_steps": "1",
        "grpo.per_device_train_batch_size": str(args.batch),
        "grpo.num_generations": "8",
        "grpo.max_completion_length": "24",
        "generation.rollout_autocast": args.rollout_autocast,
        "eval.max_new_tokens": "24",
        "eval.num_problems": str(args.eval_problems),
        "eval.num_samples": "4",
    }
    return {**sets, **ARMS[arm]}


def load(args, arm: str = "none", seed: int = 0):
    from posttrain.config.loader import load_recipe
    from posttrain.config.schema import GRPORecipe

    return load_recipe(RECIPE, GRPORecipe, [f"{k}={v}" for k, v in overrides(args, arm, seed).items()])


def settings_of(recipe) -> dict:
    """The resolved recipe, flattened to dotted keys (what the identical-settings check compares)."""
    flat = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else k, v)
        else:
            flat[prefix] = value

    walk("", recipe.model_dump(mode="json"))
    flat.pop("grpo.seed")
    return flat


def base_model(recipe, tokenizer, splits, prompt, args, console: Console) -> Path:
    """Warm-started once and cached in OUT/base-e<experts>-ws<steps>: every arm and seed starts here."""
    from posttrain.models.loading import load_model, resolve_model_path, save_pretrained
    from posttrain.models.warmstart import run_warmstart

    base_dir = args.out / f"base-e{args.experts}-ws{args.warmstart_steps}"
    if not (base_dir / "config.json").is_file():
        model = load_model(resolve_model_path(recipe.model, args.out, seed=0), "float32")
        console.print(f"warm-start: {recipe.model.warmstart.steps} SFT steps")
        rows = splits.warmstart
        run_warmstart(model, tokenizer, rows, [prompt(r) for r in rows], recipe.model.warmstart, args.out / "ws-tmp")
        save_pretrained(model, tokenizer, base_dir)
    return base_dir


def run_arm(recipe, arm: str, base: Path, ctx, args) -> dict:
    from transformers import set_seed

    from posttrain.grpo.trainer import build_trainer
    from posttrain.models.loading import load_model
    from posttrain.telemetry.metrics_log import MetricsLogger, StepTimer

    tokenizer, rewards, correctness, splits, prompt = ctx
    set_seed(recipe.grpo.seed)
    model = load_model(str(base), "float32")
    run_dir = args.out / f"seed{recipe.grpo.seed}" / arm
    shutil.rmtree(run_dir, ignore_errors=True)  # metrics.jsonl appends: each run afresh
    timer = StepTimer()
    logger = MetricsLogger(run_dir / "metrics.jsonl", timer)
    train_rows = [{**r, "prompt": prompt(r)} for r in splits.train]
    started = time.time()
    trainer = build_trainer(recipe, model, tokenizer, rewards, train_rows, run_dir / "ck", callbacks=[timer, logger])
    trainer.train()
    seconds = time.time() - started
    rows = logger.rows
    mean = lambda key: statistics.mean(r[key] for r in rows if r.get(key) is not None)  # noqa: E731
    rewards_per_step = [r["reward_mean"] for r in rows if r.get("reward_mean") is not None]  # generation steps
    return {
        "flip": mean("routing/flip_rate"),
        "router_flip": mean("routing/router_flip_rate"),
        "token_flip": mean("routing/token_flip_rate"),
        "logp": mean("mismatch/logp_abs_mean"),
        "logp_p99": mean("mismatch/logp_abs_p99"),
        "clip": mean("clip_ratio/region_mean"),
        "ratio_max": max(r["mismatch/ratio_max"] for r in rows),
        # the per-step maximum, averaged over the steps that reuse a batch (the first pass is exactly 1)
        "ratio_max_mean": statistics.mean(
            [r["mismatch/ratio_max"] for r in rows if r["mismatch/ratio_max"] != 1.0] or [1.0]
        ),
        "reward_first": statistics.mean(rewards_per_step[: max(1, len(rewards_per_step) // 4)]),
        "reward_last": tail_mean(rows, "reward_mean"),
        "rewards": rewards_per_step,
        "heldout": heldout(model, tokenizer, recipe, splits, prompt, rewards, correctness),
        "step_s": statistics.median(r["step_seconds"] for r in rows),
        "wall_s": seconds,
    }


def overhead(base: Path, tokenizer, splits, prompt, batch: int, repeats: int) -> dict:
    """Seconds of one rollout (24 sampled tokens for `batch` prompts) plus one training forward+backward
    on it, and the extra seconds recording and replay add: medians of paired differences, interleaved
    so a busy machine disturbs both sides alike."""
    import torch

    from posttrain.evaluate.sampling import render_prompt
    from posttrain.models.loading import load_model
    from posttrain.models.replay import RoutingReplay

    model = load_model(str(base), "float32")
    replay = RoutingReplay(model)
    texts = [render_prompt(tokenizer, prompt(r)) for r in splits.train[:batch]]
    tokenizer.padding_side = "left"
    enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    width = enc["input_ids"].shape[1]
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id

    def rollout(record: bool):
        model.eval()
        torch.manual_seed(0)
        start = time.perf_counter()
        with torch.no_grad():
            if record:
                with replay.recording() as rec:
                    out = model.generate(**enc, do_sample=True, max_new_tokens=24, pad_token_id=pad, eos_token_id=eos)
            else:
                out = model.generate(**enc, do_sample=True, max_new_tokens=24, pad_token_id=pad, eos_token_id=eos)
        completions = [_until(row.tolist(), eos) for row in out[:, width:]]
        experts = None
        if record:
            prompts = [ids[m.bool()].tolist() for ids, m in zip(enc["input_ids"], enc["attention_mask"])]
            experts = replay.rollout(rec, prompts, completions).aligned(out, out.shape[1] - width)
        return time.perf_counter() - start, out, experts

    def train(out, experts) -> float:
        model.train()
        start = time.perf_counter()
        if experts is not None:
            replay.target(experts, replay=True, reference=experts)
        try:
            model(input_ids=out, labels=out).loss.backward()
            if experts is not None:
                replay.take_stats()
        finally:
            replay.clear()
        model.zero_grad(set_to_none=True)
        return time.perf_counter() - start

    plain, extra = [], []
    rollout(False)  # warm-up
    for _ in range(repeats):
        gen_plain, out, _ = rollout(False)
        gen_rec, out_rec, experts = rollout(True)
        assert torch.equal(out, out_rec)  # recording changes no sample
        train_plain = train(out, None)
        train_replay = train(out, experts)
        plain.append(gen_plain + train_plain)
        extra.append(gen_rec + train_replay - gen_plain - train_plain)
    return {"plain": statistics.median(plain), "extra": statistics.median(extra)}


def _until(tokens: list[int], eos: int) -> list[int]:
    return tokens[: tokens.index(eos) + 1] if eos in tokens else tokens


def main(argv=None) -> int:
    args = parse_args(argv)
    settings = {k: v for k, v in vars(args).items() if k not in ("json", "out", "threads", "quick", "seeds")}
    report = start("moe_rl", args, settings, seeds=args.seeds)
    console = Console()

    from posttrain.models.loading import load_model

    recipes = {arm: load(args, arm) for arm in args.arms}
    reference = {k: v for k, v in settings_of(recipes["none"]).items() if k not in ARM_FIELDS}
    for arm in args.arms[1:]:
        ours = {k: v for k, v in settings_of(recipes[arm]).items() if k not in ARM_FIELDS}
        require_identical(ours, reference, f"arm {arm} and arm none (beyond {', '.join(sorted(ARM_FIELDS))})")
    recipe = recipes["none"]
    ctx = task_context(recipe, args.out)
    tokenizer, rewards, correctness, splits, prompt = ctx
    base = base_model(recipe, tokenizer, splits, prompt, args, console)
    start_pass = heldout(load_model(str(base), "float32"), tokenizer, recipe, splits, prompt, rewards, correctness)
    print(f"base (before GRPO): held-out pass@1 {start_pass:.3f}", flush=True)

    results: dict[str, list[dict]] = {arm: [] for arm in args.arms}
    for seed in args.seeds:
        for arm in args.arms:
            r = run_arm(load(args, arm, seed), arm, base, ctx, args)
            results[arm].append(r)
            curve = ", ".join(
                f"{statistics.mean(r['rewards'][i : i + 10]):.2f}" for i in range(0, len(r["rewards"]), 10)
            )
            print(
                f"seed {seed} {arm}: flip {100 * r['flip']:.2f}% (router {100 * r['router_flip']:.2f}%, tokens "
                f"{100 * r['token_flip']:.2f}%), |dlogp| {r['logp']:.2e} (p99 {r['logp_p99']:.2e}), clip "
                f"{100 * r['clip']:.2f}%, max ratio {r['ratio_max']:.2f} (per step {r['ratio_max_mean']:.2f}), reward {r['reward_first']:.3f} -> "
                f"{r['reward_last']:.3f} [per 10 steps: {curve}], held-out pass@1 {r['heldout']:.3f}, "
                f"step {r['step_s']:.2f} s",
                flush=True,
            )

    mean = lambda arm, key: statistics.mean(r[key] for r in results[arm])  # noqa: E731
    per_seed = lambda arm, key, fmt: ", ".join(fmt.format(r[key]) for r in results[arm])  # noqa: E731
    table = "; ".join(
        f"{arm}: flip {100 * mean(arm, 'flip'):.2f}% (router {100 * mean(arm, 'router_flip'):.2f}%), |dlogp| "
        f"{mean(arm, 'logp'):.2e}, clip {100 * mean(arm, 'clip'):.2f}%, reward {mean(arm, 'reward_last'):.3f}, "
        f"held-out {mean(arm, 'heldout'):.3f}"
        for arm in args.arms
    )
    setting = (
        f"{args.steps} GRPO steps x {args.batch} completions, lr {args.lr}, {args.experts} experts top-2, rollouts "
        f"{args.rollout_autocast}, trainer fp32, num_iterations {args.iterations}, from a base at held-out pass@1 "
        f"{start_pass:.3f}; means over seeds {args.seeds}"
    )
    if "rollout" in args.arms:
        report.add(
            Row(
                "moe_rl_logp_mismatch",
                mean("none", "logp") / max(mean("rollout", "logp"), 1e-12),
                "sampler-trainer |log-prob gap| without replay",
                "with rollout routing replay",
                f"{setting}; per seed {per_seed('none', 'logp', '{:.2e}')} vs {per_seed('rollout', 'logp', '{:.2e}')}; "
                f"every arm: {table}",
            )
        )
    if "rollout" in args.arms:
        report.add(
            Row(
                "moe_rl_max_ratio",
                mean("none", "ratio_max_mean") / max(mean("rollout", "ratio_max_mean"), 1e-12),
                "largest token importance ratio per reused-batch step without replay",
                "with rollout routing replay",
                f"per seed {per_seed('none', 'ratio_max_mean', '{:.2f}')} vs {per_seed('rollout', 'ratio_max_mean', '{:.2f}')} "
                f"(old_policy {per_seed('old_policy', 'ratio_max_mean', '{:.2f}') if 'old_policy' in args.arms else 'not run'}); "
                f"largest over the run {per_seed('none', 'ratio_max', '{:.1f}')} vs {per_seed('rollout', 'ratio_max', '{:.1f}')}",
            )
        )
    for arm in args.arms[1:]:
        report.add(
            Row(
                f"moe_rl_heldout_{arm}",
                mean(arm, "heldout") / max(mean("none", "heldout"), 1e-12),
                f"held-out pass@1 with {arm}",
                "without (none)",
                f"per seed {per_seed(arm, 'heldout', '{:.3f}')} vs {per_seed('none', 'heldout', '{:.3f}')} (base "
                f"{start_pass:.3f}); reward (last "
                f"quarter) {mean(arm, 'reward_last'):.3f} vs {mean('none', 'reward_last'):.3f}; clip fraction "
                f"{100 * mean(arm, 'clip'):.2f}% vs {100 * mean('none', 'clip'):.2f}%",
            )
        )
    cost = overhead(base, tokenizer, splits, prompt, args.batch, repeats=5 if args.quick else 30)
    report.add(
        Row(
            "moe_rl_replay_overhead",
            (cost["plain"] + cost["extra"]) / cost["plain"],
            "a rollout and a train forward+backward with recording and replay",
            "the same without",
            f"{cost['extra'] * 1e3:+.1f} ms on {cost['plain'] * 1e3:.1f} ms, median of paired, interleaved runs "
            f"on one batch of {args.batch} prompts x 24 tokens",
        )
    )
    report.write(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
