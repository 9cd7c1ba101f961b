"""No wasted groups: the GRPO quickstart with `grpo.dynamic_sampling: filter` against without, per seed.

    python benchmarks/bench_dynamic.py [--seeds 0,1,2] [--quick] [--json PATH] [--out DIR]

For each seed: the README command, `posttrain grpo recipes/tiny-math.yaml --set grpo.seed=S` (it
warm-starts its base), then the same with `--set grpo.dynamic_sampling=filter`, starting from a copy of
that run's warm-started base (`out/base`, so no second warm-start; the weights' hash is checked on
both sides). The two recipes differ in that one field (checked before any run). A group whose
completions all earn the same reward has zero advantage: it teaches nothing, yet without the filter
its completions still cost a forward and a backward and dilute the loss's average.

Rows (per-seed values beside each):
- `dynamic_sampling_step_time`: median GRPO step seconds with the filter / without;
- `dynamic_sampling_heldout`: held-out pass@1 after GRPO with the filter / without;
- `dynamic_sampling_gain_per_minute`: held-out pass@1 gained per GRPO wall-minute, with / without.
The printed report adds each arm's share of zero-signal groups (TRL's `frac_reward_zero_std`) and
the share of completions the filter kept.
"""

from __future__ import annotations

import json
import shutil
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_efficacy import QUICK, RECIPE, run_grpo, weights_digest
from common import REPO, Row, parser, require_identical, start


def parse_args(argv=None):
    p = parser(__doc__)
    p.add_argument("--seeds", help="comma-separated (0,1,2; quick 0)")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "bench_dynamic")
    args = p.parse_args(argv)
    args.seeds = [int(s) for s in (args.seeds or ("0" if args.quick else "0,1,2")).split(",")]
    if args.quick:
        args.out = args.out.with_name(args.out.name + "-quick")
    return args


def check_identical(sets: list[str]) -> None:
    """The two arms' recipes, resolved, differ only in grpo.dynamic_sampling."""
    from posttrain.config.loader import load_recipe
    from posttrain.config.schema import GRPORecipe

    def resolved(extra: list[str]) -> dict:
        recipe = load_recipe(REPO / RECIPE, GRPORecipe, [*sets, *extra]).model_dump(mode="json")
        recipe["grpo"].pop("dynamic_sampling")
        return recipe

    require_identical(resolved(["grpo.dynamic_sampling=filter"]), resolved([]), "the filter arm and the plain arm")


def arm_figures(run_dir: Path, summary: dict) -> dict:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r.get("stage") == "grpo"]
    seconds = summary["stage_seconds"]["grpo"]
    gain = summary["final_accuracy"] - summary["base_accuracy"]
    return {
        "base": summary["base_accuracy"],
        "final": summary["final_accuracy"],
        "greedy": summary["final_greedy_accuracy"],
        "grpo_s": seconds,
        "step_s": statistics.median(r["step_seconds"] for r in rows),
        "gain_per_min": gain / (seconds / 60),
        "zero_std": statistics.mean(r["frac_reward_zero_std"] for r in rows if "frac_reward_zero_std" in r),
        "kept": statistics.mean(
            [r["dynamic_sampling/kept_frac"] for r in rows if "dynamic_sampling/kept_frac" in r] or [1.0]
        ),
        "base_digest": weights_digest(run_dir / "base"),
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    sets = [*(QUICK if args.quick else []), "grpo.logging_steps=1"]  # every step's figures, both arms
    check_identical(sets)
    report = start(
        "dynamic",
        args,
        {
            "grpo": f"posttrain grpo {RECIPE} --set grpo.seed=S [--set grpo.dynamic_sampling=filter]",
            "shrunk": args.quick,
        },
        seeds=args.seeds,
    )
    results = []
    for seed in args.seeds:
        plain_dir, filter_dir = args.out / f"seed{seed}" / "none", args.out / f"seed{seed}" / "filter"
        for d in (plain_dir, filter_dir):
            shutil.rmtree(d, ignore_errors=True)
        summary, _ = run_grpo(seed, plain_dir, sets)
        plain = arm_figures(plain_dir, summary)
        filter_dir.mkdir(parents=True)
        shutil.copytree(plain_dir / "base", filter_dir / "base")  # the same warm-started start, not warm-started twice
        summary, _ = run_grpo(seed, filter_dir, [*sets, "grpo.dynamic_sampling=filter"])
        filtered = arm_figures(filter_dir, summary)
        if filtered["base_digest"] != plain["base_digest"] or filtered["base"] != plain["base"]:
            raise SystemExit(f"seed {seed}: the two arms did not start from the same base")
        results.append((plain, filtered))
        for name, r in (("none", plain), ("filter", filtered)):
            print(
                f"seed {seed} {name}: held-out pass@1 {r['base']:.3f} -> {r['final']:.3f} (greedy {r['greedy']:.3f}), "
                f"GRPO {r['grpo_s'] / 60:.1f} min, step {r['step_s']:.3f} s, zero-signal groups {100 * r['zero_std']:.0f}%, "
                f"kept {100 * r['kept']:.0f}% of completions, {100 * r['gain_per_min']:+.2f} points/min",
                flush=True,
            )

    def row(name: str, key: str, what: str, fmt: str) -> None:
        ours = [f[key] for _, f in results]
        theirs = [p[key] for p, _ in results]
        ratio = statistics.mean(ours) / statistics.mean(theirs) if statistics.mean(theirs) else float("nan")
        report.add(
            Row(
                name,
                ratio,
                f"{what} with grpo.dynamic_sampling: filter",
                "without",
                f"per seed {', '.join(format(x, fmt) for x in ours)} vs {', '.join(format(x, fmt) for x in theirs)} "
                f"(seeds {args.seeds}); zero-signal groups {100 * statistics.mean(p['zero_std'] for p, _ in results):.0f}% "
                f"without, {100 * statistics.mean(f['zero_std'] for _, f in results):.0f}% with; the filter kept "
                f"{100 * statistics.mean(f['kept'] for _, f in results):.0f}% of completions",
            )
        )

    row("dynamic_sampling_step_time", "step_s", "median GRPO step seconds", ".3f")
    row("dynamic_sampling_heldout", "final", "held-out pass@1 after GRPO", ".3f")
    row("dynamic_sampling_gain_per_minute", "gain_per_min", "held-out pass@1 gained per GRPO wall-minute", ".4f")
    report.write(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
