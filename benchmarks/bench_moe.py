"""Side by side: the same tiny GRPO run with loss-free MoE balancing and without.

    python benchmarks/bench_moe.py [--steps 60] [--gamma 0.003] [--warmstart-steps 500] [--out runs/bench_moe]

The quickstart recipe (recipes/tiny-math.yaml) shrunk by overrides so the whole comparison takes a
few minutes on 2 CPU cores: a 2-layer MoE (8 routed experts, top-2, 1 shared) on sums of two
numbers in 1..20 (400 distinct problems, so the 100 held-out ones leave most of them for training).
Each run warm-starts its own base with its own balancing, as `posttrain grpo` does
(`--base-balancing per-arm`, cached in OUT/base-<balancing>), or both start from one shared base
(`--base-balancing none|loss_free`); then two GRPO runs with the same seed and data:
`moe.balancing=none` and `moe.balancing=loss_free` (telemetry on in both, so both report MaxVio).
Prints final MaxVio (mean of the last quarter of logged steps), reward, held-out pass@1 and the
step-time overhead of balancing + telemetry. The overhead is measured on identical batches (the
routing hooks and callback on vs off, interleaved), because the two GRPO runs sample different
completions and their wall times differ for that reason alone.

gamma: DeepSeek-V3 uses 1e-3 over thousands of steps; a run of tens of steps needs a larger one
to move the biases far enough to matter, so the default here is 1e-2.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

from rich.console import Console

REPO = Path(__file__).resolve().parent.parent
RECIPE = REPO / "recipes" / "tiny-math.yaml"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=60, help="GRPO steps per run")
    p.add_argument("--gamma", type=float, default=3e-3, help="moe.bias_update_speed of the loss_free run")
    p.add_argument("--warmstart-steps", type=int, default=500, help="SFT steps of each base")
    p.add_argument("--batch", type=int, default=16, help="completions per step (prompts x 8 generations)")
    p.add_argument("--eval-problems", type=int, default=100, help="held-out problems (4 samples each)")
    p.add_argument("--seed", type=int, default=0, help="GRPO seed (sampling), the same for both runs")
    p.add_argument("--base-balancing", choices=["per-arm", "none", "loss_free"], default="per-arm",
                   help="per-arm: each run warm-starts its own base with its own balancing, as `posttrain grpo` does "
                   "(model.warmstart follows moe.balancing, like DeepSeek-V3, whose bias trains with the model); "
                   "none / loss_free: one shared base warm-started that way for both runs")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "bench_moe")
    return p.parse_args()


def load(args):
    from posttrain.config.loader import load_recipe
    from posttrain.config.schema import GRPORecipe

    model = {"hidden_size": 64, "num_layers": 2, "num_heads": 2, "n_routed_experts": 8, "num_experts_per_tok": 2,
             "moe_intermediate_size": 32, "kv_lora_rank": 16, "qk_rope_head_dim": 8, "qk_nope_head_dim": 8, "v_head_dim": 16}
    return load_recipe(RECIPE, GRPORecipe, [
        f"output.dir={args.out}", f"model.builder_args={json.dumps(model)}",
        "data.task_args={num_terms: 2, low: 1, high: 20}", "grpo.max_completion_length=24", "eval.max_new_tokens=24", f"model.warmstart.steps={args.warmstart_steps}", "model.warmstart.batch_size=32",
        "model.warmstart.num_examples=4000", f"grpo.max_steps={args.steps}", f"grpo.seed={args.seed}", "grpo.logging_steps=1",
        f"grpo.per_device_train_batch_size={args.batch}", "grpo.num_generations=8", "data.num_train=1000",
        f"eval.num_problems={args.eval_problems}", "eval.num_samples=4",
    ])


def base_model(recipe, tokenizer, splits, prompt, balancing: str, args, console: Console) -> Path:
    """Built and warm-started once per balancing, cached in OUT/base-<balancing>."""
    from posttrain.models.balancing import moe_callbacks
    from posttrain.models.loading import load_model, resolve_model_path, save_pretrained
    from posttrain.models.warmstart import run_warmstart

    base_dir = args.out / f"base-{balancing}"
    if not (base_dir / "config.json").is_file():
        model = load_model(resolve_model_path(recipe.model, args.out, seed=0), "float32")
        moe = recipe.moe.model_copy(update={"balancing": balancing, "bias_update_speed": args.gamma})
        console.print(f"warm-start: {recipe.model.warmstart.steps} SFT steps, balancing {balancing}")
        run_warmstart(model, tokenizer, splits.warmstart, [prompt(r) for r in splits.warmstart], recipe.model.warmstart,
                      args.out / "warmstart-tmp", callbacks=moe_callbacks(moe, model))
        save_pretrained(model, tokenizer, base_dir)
    return base_dir


def grpo(recipe, balancing: str, gamma: float, tokenizer, rewards, splits, prompt, base: Path, out: Path) -> tuple[list[dict], object]:
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
    timer = StepTimer()
    logger = MetricsLogger(run_dir / "metrics.jsonl", timer)
    callbacks = [timer, *moe_callbacks(recipe.moe, model, run_dir), logger]
    rows = [{**r, "prompt": prompt(r)} for r in splits.train]
    trainer = build_trainer(recipe, model, tokenizer, rewards, rows, run_dir / "checkpoints", callbacks=callbacks)
    trainer.train()
    return logger.rows, model


def heldout(model, tokenizer, recipe, splits, prompt, rewards, correctness) -> float:
    from posttrain.evaluate.heldout import heldout_accuracy
    from posttrain.evaluate.sampling import SamplingSettings

    e = recipe.eval
    settings = SamplingSettings(n=e.num_samples, temperature=e.temperature, max_new_tokens=e.max_new_tokens, seed=e.seed)
    quiet = Console(quiet=True)
    result = heldout_accuracy(model, tokenizer, splits.heldout, [prompt(r) for r in splits.heldout], settings, rewards, correctness, quiet, "eval")
    return result["accuracy"]


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
    args, state = SimpleNamespace(output_dir=str(out / "overhead")), SimpleNamespace(global_step=0, is_world_process_zero=True)

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


def tail_mean(rows: list[dict], key: str) -> float:
    values = [r[key] for r in rows if r.get(key) is not None]
    tail = values[-max(1, len(values) // 4):]
    return sum(tail) / len(tail)


def main() -> None:
    args = parse_args()
    console = Console()
    import torch
    from transformers import set_seed

    if args.threads:
        torch.set_num_threads(args.threads)
    from posttrain.data.load import to_prompt
    from posttrain.data.splits import make_splits
    from posttrain.models.loading import load_model, load_tokenizer, resolve_model_path
    from posttrain.rewards.registry import build

    recipe = load(args)
    args.out.mkdir(parents=True, exist_ok=True)
    set_seed(recipe.grpo.seed)
    tokenizer = load_tokenizer(resolve_model_path(recipe.model, args.out, seed=0))
    splits = make_splits(recipe.data, recipe.eval, recipe.model.warmstart)
    prompt = lambda row: to_prompt(row["question"], recipe.data.system_prompt, True)  # noqa: E731
    rewards, _ = build(recipe.rewards.functions)
    correctness = next(fn for fn in rewards if fn.__name__ == recipe.eval.correctness_reward)
    results = {}
    for balancing in ("none", "loss_free"):
        base = base_model(recipe, tokenizer, splits, prompt, balancing if args.base_balancing == "per-arm" else args.base_balancing,
                          args, console)
        started = time.time()
        rows, model = grpo(recipe, balancing, args.gamma, tokenizer, rewards, splits, prompt, base, args.out)
        results[balancing] = {
            "max_vio": tail_mean(rows, "moe/max_vio_mean"),
            "max_vio_first": rows[0]["moe/max_vio_mean"],
            "reward": sum(r["reward_mean"] for r in rows) / len(rows),
            "reward_tail": tail_mean(rows, "reward_mean"),
            "step_s": statistics.median(r["step_seconds"] for r in rows),
            "base_max_vio": base_max_vio(base, tokenizer, splits, prompt),
            "heldout": heldout(model, tokenizer, recipe, splits, prompt, rewards, correctness),
            "wall_s": time.time() - started,
        }
        console.print(f"{balancing}: {results[balancing]}")
    cost = overhead(load_model(str(base), "float32"), tokenizer, splits, prompt, args.batch, args.out)
    report(results, cost, args)


def report(results: dict, cost: dict, args) -> None:
    none, lf = results["none"], results["loss_free"]
    extra = cost["extra"]
    print(f"\nGRPO {args.steps} steps x {args.batch} completions, gamma={args.gamma}, seed {args.seed}, "
          f"base warm-started with balancing {args.base_balancing}")
    print(f"{'':28}{'none':>10}{'loss_free':>12}")
    for label, key, fmt in [("MaxVio, base (before GRPO)", "base_max_vio", ".3f"),
                            ("MaxVio, first step", "max_vio_first", ".3f"), ("MaxVio, last quarter", "max_vio", ".3f"),
                            ("reward, mean over run", "reward", ".3f"), ("reward, last quarter", "reward_tail", ".3f"),
                            ("held-out pass@1", "heldout", ".3f"), ("median step seconds", "step_s", ".2f")]:
        print(f"{label:28}{none[key]:>10{fmt}}{lf[key]:>12{fmt}}")
    print(f"MaxVio ratio none / loss_free: {none['max_vio'] / max(lf['max_vio'], 1e-9):.2f}x (target >= 2x)")
    print(f"balancing + telemetry: {extra * 1e3:+.1f} ms per train forward+backward "
          f"({extra / cost['plain']:+.1%} of it; {extra / lf['step_s']:+.2%} of a GRPO step; target <= 5%)")


if __name__ == "__main__":
    main()
