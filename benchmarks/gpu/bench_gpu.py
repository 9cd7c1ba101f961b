"""GPU figures in one script: GRPO on a DeepSeek-V3-shaped MoE in bf16 and fp8, and `posttrain eval`.

    bash benchmarks/gpu/run.sh [--dry-run] [--out DIR]      # installs carried wheels, then runs this

The model: `build:tiny-moe` at the real hidden sizes of a DeepSeek-V3-architecture checkpoint
(Moonlight-16B-A3B: hidden 2048, 64 routed experts of width 1408, top-6, 2 shared, MLA with
kv_lora_rank 512), with 3 decoder layers instead of 27 (the first dense, as in the real model) and the
byte-level BPE tokenizer of the real-model stand-ins: 1.26B parameters, 0.25B active per token.

What it measures, each through posttrain's own commands (`posttrain grpo`, `posttrain eval`):
- GRPO in bf16: step seconds and their split (generation, rewards, optimisation: `time/*`), rollout
  tokens/s (completion tokens / generation seconds), training-phase MFU against the chip's peak
  (6 x active parameters x trained tokens / optimisation seconds / peak; attention FLOPs left out, so
  this is a lower bound), and peak CUDA memory;
- the same with `train.precision: fp8` (torchao), as a ratio to bf16; skipped, with the reason, where
  the GPU or torchao cannot;
- `posttrain eval` problems per second on the trained policy.
It writes `gpu_results.json` and `gpu_results.md` (machine, packages, command, settings, figures).
`--dry-run` runs the same path on a CPU with a model a thousand times smaller, in about a minute,
so the script is tested before any GPU time is spent on it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from common import REPO, git_commit, machine, today, versions  # noqa: E402

PEAK_BF16_FLOPS = 790e12  # H200 dense bf16 (measured 769-798 TFLOP/s on an 8192^3 product here)
MODEL = {  # Moonlight-16B-A3B's widths (DeepSeek-V3 architecture), 3 layers
    "family": "deepseek_v3",
    "tokenizer": "bpe-r1",
    "hidden_size": 2048,
    "num_layers": 3,
    "num_heads": 16,
    "n_routed_experts": 64,
    "n_shared_experts": 2,
    "num_experts_per_tok": 6,
    "moe_intermediate_size": 1408,
    "first_k_dense_replace": 1,
    "intermediate_size": 11264,
    "kv_lora_rank": 512,
    "qk_rope_head_dim": 64,
    "qk_nope_head_dim": 128,
    "v_head_dim": 128,
    "max_position_embeddings": 1024,
}
DRY_MODEL = {**MODEL, "hidden_size": 64, "num_heads": 2, "n_routed_experts": 8, "num_experts_per_tok": 2,
             "moe_intermediate_size": 32, "intermediate_size": 128, "kv_lora_rank": 16, "qk_rope_head_dim": 8,
             "qk_nope_head_dim": 8, "v_head_dim": 16}  # fmt: skip


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dry-run", action="store_true", help="CPU, a tiny model, 2 steps: the test of this script")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "gpu")
    p.add_argument("--steps", type=int, help="GRPO steps per precision, the first one a warm-up (8; dry 3)")
    p.add_argument("--completion-tokens", type=int, help="max_completion_length (256; dry 12)")
    p.add_argument("--eval-problems", type=int, help="problems for posttrain eval, 4 samples each (512; dry 8)")
    args = p.parse_args(argv)
    for name, full, dry in (("steps", 8, 3), ("completion_tokens", 256, 12), ("eval_problems", 512, 8)):
        if getattr(args, name) is None:
            setattr(args, name, dry if args.dry_run else full)
    return args


def grpo_sets(args, precision: str, out: Path) -> list[str]:
    gpu = not args.dry_run
    model = MODEL if gpu else DRY_MODEL
    return [
        f"output.dir={out}",
        "model.name_or_path=build:tiny-moe",
        f"model.builder_args={json.dumps(model)}",
        f"model.dtype={'bfloat16' if gpu else 'float32'}",
        f"train.precision={precision}",
        "model.warmstart.steps=0",
        "data.task_args={num_terms: 4, low: 1, high: 99}",
        "data.num_train=512",
        f"grpo.max_steps={args.steps}",
        "grpo.warmup_steps=0",
        "grpo.logging_steps=1",
        f"grpo.per_device_train_batch_size={64 if gpu else 8}",
        "grpo.num_generations=8",
        f"grpo.max_completion_length={args.completion_tokens}",
        "grpo.beta=0.0",
        "grpo.num_iterations=1",
        "eval.enabled=false",
        "output.plots=false",
    ]


def run(cmd: list[str], log: Path) -> float:
    """Run a posttrain command, its output to `log`; its wall seconds. Raises with the log's tail on failure."""
    started = time.time()
    with log.open("w") as f:
        done = subprocess.run(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT, env={**os.environ, "NO_COLOR": "1"})
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd[:3])} failed ({done.returncode}):\n" + log.read_text()[-3000:])
    return time.time() - started


def grpo_figures(out: Path) -> dict:
    """Step figures from metrics.jsonl, the first step (compilation, allocator warm-up) left out."""
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r.get("stage") == "grpo"][1:] or rows
    summary = json.loads((out / "summary.json").read_text())
    med = lambda key: statistics.median(r[key] for r in rows if r.get(key) is not None)  # noqa: E731
    tokens = [b["num_tokens"] - a["num_tokens"] for a, b in zip(rows, rows[1:])]
    completion = (
        med("completion_length")
        * yaml.safe_load((out / "recipe.yaml").read_text())["grpo"]["per_device_train_batch_size"]
    )  # completions sampled per step (one process, no accumulation)
    figures = {
        "steps_measured": len(rows),
        "step_s": med("step_seconds"),
        "generation_s": med("time/generation_s"),
        "reward_s": med("time/reward_s"),
        "optimisation_s": med("time/optimisation_s"),
        "tokens_per_step": statistics.median(tokens) if tokens else None,
        "rollout_tokens_per_s": completion / med("time/generation_s"),
        "params_total": summary["params_total"],
        "params_active": summary["params_active"],
        "peak_cuda_mb": max((r.get("memory/cuda_max_allocated_mb") or 0) for r in rows) or None,
    }
    if figures["tokens_per_step"]:
        flops = 6 * figures["params_active"] * figures["tokens_per_step"]
        figures["train_tflops"] = flops / figures["optimisation_s"] / 1e12
        figures["mfu"] = flops / figures["optimisation_s"] / PEAK_BF16_FLOPS
    return figures


def fp8_unavailable() -> str | None:
    """Why fp8 cannot run here, or None."""
    import importlib.util

    import torch

    if not torch.cuda.is_available():
        return "no CUDA GPU"
    if torch.cuda.get_device_capability() < (8, 9):
        return f"compute capability {torch.cuda.get_device_capability()} < 8.9"
    if importlib.util.find_spec("torchao") is None:
        return "torchao is not installed (carry its wheel: benchmarks/gpu/fetch-wheels.sh)"
    return None


def main(argv=None) -> int:
    args = parse_args(argv)
    out = args.out
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    posttrain = [sys.executable, "-m", "posttrain"]
    started = time.time()
    results: dict = {
        "command": " ".join(["bash benchmarks/gpu/run.sh", *(argv if argv is not None else sys.argv[1:])]),
        "date": today(),
        "commit": git_commit(),
        "machine": machine(),
        "versions": versions(),
        "settings": {k: str(v) for k, v in vars(args).items()},
        "model": MODEL if not args.dry_run else DRY_MODEL,
        "peak_bf16_tflops": PEAK_BF16_FLOPS / 1e12,
    }
    bf16 = "fp32" if args.dry_run else "bf16"  # a CPU has no bf16 autocast worth timing
    recipe = str(REPO / "recipes" / "tiny-math.yaml")
    sets = lambda precision, where: [x for s in grpo_sets(args, precision, where) for x in ("--set", s)]  # noqa: E731
    run([*posttrain, "grpo", recipe, *sets(bf16, out / bf16)], out / f"grpo-{bf16}.log")
    results[bf16] = grpo_figures(out / bf16)
    print(f"GRPO {bf16}: {json.dumps(results[bf16])}", flush=True)

    why_not = "dry run" if args.dry_run else fp8_unavailable()
    if why_not is None:
        run([*posttrain, "grpo", recipe, *sets("fp8", out / "fp8")], out / "grpo-fp8.log")
        results["fp8"] = grpo_figures(out / "fp8")
        results["fp8_vs_bf16_step"] = results["fp8"]["step_s"] / results[bf16]["step_s"]
        results["fp8_vs_bf16_optimisation"] = results["fp8"]["optimisation_s"] / results[bf16]["optimisation_s"]
    else:
        results["fp8"] = {"skipped": why_not}
    print(f"GRPO fp8: {json.dumps(results['fp8'])}", flush=True)

    run(
        [*posttrain, "eval", "--model", str(out / bf16), "--data", "arithmetic", "--n", "4"]
        + ["--num-problems", str(args.eval_problems), "--max-new-tokens", str(args.completion_tokens)]
        + ["--output-dir", str(out / "eval")],
        out / "eval.log",
    )
    report = json.loads((out / "eval" / "report.json").read_text())
    results["eval"] = {
        "problems": args.eval_problems,
        "samples_per_problem": 4,
        "wall_s": report["wall_seconds"],
        "problems_per_s": args.eval_problems / report["wall_seconds"],
        "decode_mismatch": (report.get("routing") or {}).get("decode_mismatch"),
    }
    results["wall_s"] = time.time() - started
    (out / "gpu_results.json").write_text(json.dumps(results, indent=1))
    (out / "gpu_results.md").write_text(markdown(results, bf16))
    print((out / "gpu_results.md").read_text(), flush=True)
    return 0


def markdown(r: dict, bf16: str) -> str:
    g = r[bf16]
    fmt = lambda v, spec: "n/a" if v is None else format(v, spec)  # noqa: E731
    lines = [
        f"# GPU figures ({r['date']}, commit {r['commit']})",
        "",
        f"- command: `{r['command']}` ({r['wall_s']:.0f} s)",
        f"- machine: {r['machine']['gpu']}; {r['machine']['cpu']}, {r['machine']['cores']} cores",
        f"- packages: {', '.join(f'{k} {v}' for k, v in r['versions'].items())}",
        f"- model: DeepSeek-V3 architecture, {r['model']['num_layers']} layers, hidden {r['model']['hidden_size']}, "
        f"{r['model']['n_routed_experts']} experts top-{r['model']['num_experts_per_tok']}: "
        f"{g['params_total'] / 1e6:,.1f}M parameters, {g['params_active'] / 1e6:,.1f}M active"
        + (" (dry run: a CPU, tiny widths; not a GPU figure)" if r["settings"]["dry_run"] == "True" else ""),
        "",
        f"| GRPO ({bf16}) | value |",
        "|---|---|",
        f"| step | {g['step_s']:.3f} s (generation {g['generation_s']:.3f}, rewards {g['reward_s']:.3f}, "
        f"optimisation {g['optimisation_s']:.3f}) |",
        f"| rollout tokens/s | {g['rollout_tokens_per_s']:,.0f} |",
        f"| training-phase MFU (vs {r['peak_bf16_tflops']:.0f} TFLOP/s) | {fmt(g.get('mfu'), '.1%')} "
        f"({fmt(g.get('train_tflops'), '.1f')} TFLOP/s) |",
        f"| peak CUDA memory | {fmt(g['peak_cuda_mb'], ',.0f')} MB |",
    ]
    if "skipped" in r["fp8"]:
        lines.append(f"| fp8 | not run: {r['fp8']['skipped']} |")
    else:
        lines.append(
            f"| fp8 step / {bf16} step | {r['fp8_vs_bf16_step']:.2f} (optimisation {r['fp8_vs_bf16_optimisation']:.2f}) |"
        )
    e = r["eval"]
    lines.append(
        f"| posttrain eval | {e['problems_per_s']:.2f} problems/s ({e['problems']} x {e['samples_per_problem']}) |"
    )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
