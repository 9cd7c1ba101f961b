"""Side by side: the same tiny GRPO runs with loss-free MoE balancing and without, over several seeds.

    python benchmarks/bench_moe.py [--quick] [--steps 60] [--seeds 0,1,2] [--gamma 0.003] [--json PATH]

The quickstart recipe (recipes/tiny-math.yaml) shrunk by overrides: a 2-layer MoE (8 routed experts,
top-2, 1 shared) on sums of two numbers in 1..20 (400 distinct problems, so the 100 held-out ones
leave most of them for training). Both arms of a comparison share everything but
`moe.balancing` (none vs loss_free, telemetry on in both, so both report MaxVio); each seed is
the GRPO seed (sampling) of both arms.

Rows:
- `moe_balancing_rl`: both arms start from ONE shared base, warm-started without balancing (a
  base model as downloaded): the effect of balancing during RL alone;
- `moe_balancing_warmstart_and_rl`: each arm warm-starts its own base with its own balancing, as
  `posttrain grpo` does with `model.warmstart` (DeepSeek-V3 trains the bias through pre-training);
- `moe_balancing_overhead`: step time of a train forward+backward with the routing hooks,
  bias update and telemetry vs without, on identical batches, interleaved (the GRPO runs sample
  different completions, so their wall times differ for that reason alone).
MaxVio is the mean over the last quarter of logged steps; ratios are none / loss_free, the mean
over seeds with the per-seed spread beside it.

gamma: DeepSeek-V3 uses 1e-3 over thousands of steps; a run of tens of steps needs a larger one
to move the biases far enough to matter.
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Row, heldout, parser, start, tail_mean, task_context

REPO = Path(__file__).resolve().parent.parent
RECIPE = REPO / "recipes" / "tiny-math.yaml"


def parse_args(argv=None) -> argparse.Namespace:
    p = parser(__doc__)
    p.add_argument("--steps", type=int, help="GRPO steps per run (60; quick 6)")
    p.add_argument("--gamma", type=float, default=3e-3, help="moe.bias_update_speed of the loss_free arms")
    p.add_argument("--warmstart-steps", type=int, help="SFT steps of each base (500; quick 60)")
    p.add_argument("--batch", type=int, default=16, help="completions per step (prompts x 8 generations)")
    p.add_argument("--eval-problems", type=int, help="held-out problems, 4 samples each (100; quick 20)")
    p.add_argument("--seeds", help="GRPO seeds, comma-separated (0,1,2; quick 0)")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "bench_moe")
    args = p.parse_args(argv)
    for name, full, small in (("steps", 60, 6), ("warmstart_steps", 500, 60), ("eval_problems", 100, 20)):
        if getattr(args, name) is None:
            setattr(args, name, small if args.quick else full)
    args.seeds = [int(x) for x in (args.seeds or ("0" if args.quick else "0,1,2")).split(",")]
    if args.quick:
        args.out = args.out.with_name(args.out.name + "-quick")
    return args


def load(args, seed: int = 0):
    from posttrain.config.loader import load_recipe
    from posttrain.config.schema import GRPORecipe

    model = {
        "hidden_size": 64,
        "num_layers": 2,
        "num_heads": 2,
        "n_routed_experts": 8,
        "num_experts_per_tok": 2,
        "moe_intermediate_size": 32,
        "kv_lora_rank": 16,
        "qk_rope_head_dim": 8,
        "qk_nope_head_dim": 8,
        "v_head_dim": 16,
    }
    return load_recipe(
        RECIPE,
        GRPORecipe,
        [
            f"output.dir={args.out}",
            f"model.builder_args={json.dumps(model)}",
            "data.task_args={num_terms: 2, low: 1, high: 20}",
            "grpo.max_completion_length=24",
            "eval.max_new_tokens=24",
            f"model.warmstart.steps={args.warmstart_steps}",
            "model.warmstart.batch_size=32",
            "model.warmstart.num_examples=4000",
            f"grpo.max_steps={args.steps}",
            f"grpo.seed={seed}",
            "grpo.logging_steps=1",
            f"grpo.per_device_train_batch_size={args.batch}",
            "grpo.num_generations=8",
            "data.num_train=1000",
            f"eval.num_problems={args.eval_problems}",
            "eval.num_samples=4",
        ],
    )


def base_model(recipe, tokenizer, splits, prompt, balancing: str, args, console: Console) -> Path:
    """Built and warm-started once per balancing, cached in OUT/base-<balancing>-ws<steps>."""
    from posttrain.models.balancing import moe_callbacks
    from posttrain.models.loading import load_model, resolve_model_path, save_pretrained
    from posttrain.models.warmstart import run_warmstart

    base_dir = args.out / f"base-{balancing}-ws{args.warmstart_steps}"
    if not (base_dir / "config.json").is_file():
        model = load_model(resolve_model_path(recipe.model, args.out, seed=0), "float32")
        moe = recipe.moe.model_copy(update={"balancing": balancing, "bias_update_speed": args.gamma})
        console.print(f"warm-start: {recipe.model.warmstart.steps} SFT steps, balancing {balancing}")
        run_warmstart(
            model,
            tokenizer,
            splits.warmstart,
            [prompt(r) for r in splits.warmstart],
            recipe.model.warmstart,
            args.out / "warmstart-tmp",
            callbacks=moe_callbacks(moe, model),
        )
        save_pretrained(model, tokenizer, base_dir)
    return base_dir


def grpo(
    recipe, balancing: str, gamma: float, tokenizer, rewards, splits, prompt, base: Path, out: Path
) -> tuple[list[dict], object]:
    from transformers import set_seed

    from posttrain.grpo.trainer import build_trainer
    from posttrain.models.balancing import moe_callbacks
    from posttrain.models.loading import load_model
    from posttrain.telemetry.metrics_log import MetricsLogger, StepTimer

    recipe = recipe.model_copy(deep=True)
    recipe.moe.balancing, recipe.moe.bias_update_speed = balancing, gamma
    set_seed(recipe.grpo.seed)
    model = load_model(str(base), "float32")
    run_dir = out / f"{base.name}-seed{recipe.grpo.seed}" / balancing
    shutil.rmtree(run_dir, ignore_errors=True)  # metrics.jsonl appends: start each run afresh
    timer = StepTimer()
    logger = MetricsLogger(run_dir / "metrics.jsonl", timer)
    callbacks = [timer, *moe_callbacks(recipe.moe, model, run_dir), logger]
    rows = [{**r, "prompt": prompt(r)} for r in splits.train]
    trainer = build_trainer(recipe, model, tokenizer, rewards, rows, run_dir / "checkpoints", callbacks=callbacks)
    trainer.train()
    return logger.rows, model


def overhead(model, tokenizer, splits, prompt, batch: int, out: Path, repeats: int = 60) -> dict:
    """Seconds per train forward+backward, and the extra seconds the balancing callback adds (routing
    hooks, step-end all-reduce + bias update, telemetry), on the same batch: the median of paired
    differences, interleaved, so a busy shared machine disturbs both sides alike."""
    from types import SimpleNamespace

    from posttrain.evaluate.sampling import render_prompt
    from posttrain.models.balancing import MoEBalancingCallback
    from posttrain.models.moe import find_moe_layers, install_selection_bias

    model = copy.deepcopy(model).train()
    layers = find_moe_layers(model)
    install_selection_bias(layers)
    texts = [render_prompt(tokenizer, prompt(r)) + r["solution"] for r in splits.train[:batch]]
    enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    callback = MoEBalancingCallback(model, layers, gamma=1e-3)
    args, state = (
        SimpleNamespace(output_dir=str(out / "overhead")),
        SimpleNamespace(global_step=0, is_world_process_zero=True),
    )

    def step(balanced: bool) -> float:
        start = time.perf_counter()
        if balanced:
            callback.on_step_begin(args, state, None)
        model(**enc).logits.sum().backward()
        if balanced:
            callback.on_step_end(args, state, None)
            callback.on_log(args, state, None, logs={})
        model.zero_grad(set_to_none=True)
        return time.perf_counter() - start

    plain, extra = [], []
    step(False)
    for _ in range(repeats):
        plain.append(step(False))
        callback.on_train_begin(args, state, None)
        extra.append(step(True) - plain[-1])
        callback.counter.detach()
    return {"plain": statistics.median(plain), "extra": statistics.median(extra)}


def base_max_vio(base: Path, tokenizer, splits, prompt, batch: int = 64) -> float:
    """Mean MaxVio over layers of the warm-started base on training prompts + solutions (before GRPO)."""
    import torch

    from posttrain.evaluate.sampling import render_prompt
    from posttrain.models.loading import load_model
    from posttrain.models.moe import count_routing
    from posttrain.telemetry.routing_stats import layer_stats

    model = load_model(str(base), "float32").eval()
    texts = [render_prompt(tokenizer, prompt(r)) + r["solution"] for r in splits.train[:batch]]
    enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    with count_routing(model, strict=True) as routing, torch.no_grad():
        model(**enc)
    loads = routing.counts()
    return sum(layer_stats(load)["max_vio"] for load in loads.values()) / len(loads)


_ARMS: dict[tuple, dict] = {}


def arm(recipe, balancing, base, args, ctx) -> dict:
    """One GRPO run and its figures; the same (base, balancing, seed) is run once and shared by rows."""
    key = (str(base), balancing, recipe.grpo.seed)
    if key not in _ARMS:
        _ARMS[key] = _run_arm(recipe, balancing, base, args, ctx)
    return _ARMS[key]


def _run_arm(recipe, balancing, base, args, ctx) -> dict:
    tokenizer, rewards, correctness, splits, prompt = ctx
    started = time.time()
    rows, model = grpo(recipe, balancing, args.gamma, tokenizer, rewards, splits, prompt, base, args.out)
    return {
        "max_vio": tail_mean(rows, "moe/max_vio_mean"),
        "reward": sum(r["reward_mean"] for r in rows) / len(rows),
        "heldout": heldout(model, tokenizer, recipe, splits, prompt, rewards, correctness),
        "step_s": statistics.median(r["step_seconds"] for r in rows),
        "wall_s": time.time() - started,
    }


def compare(name: str, bases: dict, args, ctx, report, what: str) -> None:
    """Both arms over every seed; one row: mean of the per-seed MaxVio ratios, with their spread."""
    per_seed = []
    for seed in args.seeds:
        recipe = load(args, seed)
        result = {b: arm(recipe, b, bases[b], args, ctx) for b in ("none", "loss_free")}
        result["ratio"] = result["none"]["max_vio"] / max(result["loss_free"]["max_vio"], 1e-9)
        per_seed.append(result)
        print(
            f"{name} seed {seed}: "
            + "; ".join(
                f"{b}: MaxVio {result[b]['max_vio']:.3f}, reward {result[b]['reward']:.3f}, held-out pass@1 {result[b]['heldout']:.3f}"
                for b in ("none", "loss_free")
            )
            + f"; ratio {result['ratio']:.2f}",
            flush=True,
        )
    ratios = [r["ratio"] for r in per_seed]
    mean = lambda arm_name, key: statistics.mean(r[arm_name][key] for r in per_seed)  # noqa: E731
    report.add(
        Row(
            name,
            statistics.mean(ratios),
            "MaxVio without balancing",
            "MaxVio with loss-free balancing",
            f"{what}; per seed {', '.join(f'{r:.2f}' for r in ratios)} (min {min(ratios):.2f}, max {max(ratios):.2f}); "
            f"MaxVio {mean('none', 'max_vio'):.3f} vs {mean('loss_free', 'max_vio'):.3f}, reward {mean('none', 'reward'):.3f} vs "
            f"{mean('loss_free', 'reward'):.3f}, held-out pass@1 {mean('none', 'heldout'):.3f} vs {mean('loss_free', 'heldout'):.3f} "
            f"(means over seeds {args.seeds})",
        )
    )


def main(argv=None) -> int:
    args = parse_args(argv)
    settings = {k: v for k, v in vars(args).items() if k not in ("json", "out", "threads", "quick", "seeds")}
    report = start("moe", args, settings, seeds=args.seeds)
    console = Console()

    from posttrain.models.loading import load_model

    recipe = load(args)
    ctx = task_context(recipe, args.out)
    tokenizer, rewards, correctness, splits, prompt = ctx
    bases = {b: base_model(recipe, tokenizer, splits, prompt, b, args, console) for b in ("none", "loss_free")}
    for b, path in bases.items():
        print(f"base warm-started with balancing {b}: MaxVio {base_max_vio(path, tokenizer, splits, prompt):.3f}")
    compare(
        "moe_balancing_rl",
        {"none": bases["none"], "loss_free": bases["none"]},
        args,
        ctx,
        report,
        f"both arms from one base warm-started without balancing, {args.steps} GRPO steps x {args.batch} completions, gamma {args.gamma}",
    )
    compare(
        "moe_balancing_warmstart_and_rl",
        bases,
        args,
        ctx,
        report,
        f"each arm from a base warm-started with its own balancing ({args.warmstart_steps} steps), then {args.steps} GRPO steps",
    )
    cost = overhead(
        load_model(str(bases["none"]), "float32"),
        tokenizer,
        splits,
        prompt,
        args.batch,
        args.out,
        repeats=20 if args.quick else 60,
    )
    report.add(
        Row(
            "moe_balancing_overhead",
            (cost["plain"] + cost["extra"]) / cost["plain"],
            "train forward+backward with balancing and telemetry",
            "the same without",
            f"{cost['extra'] * 1e3:+.1f} ms on {cost['plain'] * 1e3:.1f} ms, median of paired, interleaved runs on one batch of {args.batch}",
        )
    )
    report.write(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
