"""The README's distillation quickstart, exactly as a user runs it, over several seeds.

    python benchmarks/bench_quickstart.py [--quick] [--seeds 0,1,2] [--json PATH]

For each seed: `posttrain distill recipes/tiny-distill.yaml --set distill.seed=S` in its own
process with a fresh output folder and torch's default threads (what the README command gets). The
seed sets the model's initialisation and the sampling during training; the held-out problems are
the same for every seed. Row (means over seeds, every seed listed beside it):
`quickstart_distill`: held-out pass@1 of the distilled student / of the teacher.
The GRPO quickstart's row, `quickstart_grpo`, comes from bench_efficacy.py, which runs the README's
GRPO command for each seed beside its SFT control.
--quick shrinks the recipe to a smoke test of this script; its figures mean nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, Row, parser, start

# --quick: a model and task small enough that a seconds-long warm-start already gets answers right.
SMALL_MOE = (
    '{"hidden_size": 48, "num_layers": 2, "num_heads": 2, "n_routed_experts": 4, "num_experts_per_tok": 2, '
    '"moe_intermediate_size": 32, "kv_lora_rank": 16, "qk_rope_head_dim": 8, "qk_nope_head_dim": 8, "v_head_dim": 16}'
)
SMALL_TASK = [
    "data.task_args={num_terms: 2, low: 1, high: 9}",
    # 20 x 8 samples: a quick teacher right ~5-10% of the time must not score 0 by chance (the row divides by it)
    "eval.num_problems=20",
    "eval.num_samples=8",
    "eval.max_new_tokens=16",
]
WARM = {"steps": 150, "batch_size": 32, "learning_rate": 3e-3, "num_examples": 2000}
DISTILL_QUICK = [
    f"teacher.builder_args={SMALL_MOE}",
    *(f"teacher.warmstart.{k}={v}" for k, v in WARM.items()),
    *SMALL_TASK,
    "student.builder_args={hidden_size: 32, num_layers: 2, intermediate_size: 64}",
    "data.num_train=16",
    "distill.max_steps=20",
    "distill.per_device_train_batch_size=16",
    "distill.logit_kd.max_steps=5",
    "distill.traces.max_new_tokens=16",
]


def posttrain(command: str, recipe: str, sets: list[str]) -> tuple[dict, float]:
    cmd = [sys.executable, "-m", "posttrain", command, recipe, *[a for s in sets for a in ("--set", s)]]
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}  # the README command's threads
    started = time.time()
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env)
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    out = next(s.split("=", 1)[1] for s in sets if s.startswith("output.dir="))
    return json.loads((Path(out) / "summary.json").read_text()), time.time() - started


def points(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}"


def main(argv=None) -> int:
    p = parser(__doc__)
    p.set_defaults(threads=0)  # the README commands run with torch's default threads
    p.add_argument("--seeds", default="0,1,2", help="comma-separated (quick: 0)")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "bench_quickstart")
    args = p.parse_args(argv)
    seeds = [int(s) for s in ("0" if args.quick and args.seeds == "0,1,2" else args.seeds).split(",")]
    report = start(
        "quickstart",
        args,
        {
            "distill": "posttrain distill recipes/tiny-distill.yaml --set distill.seed=S",
            "shrunk": args.quick,
            "posttrain_threads": "torch's default, as the README command",
        },
        seeds=seeds,
    )
    shutil.rmtree(args.out, ignore_errors=True)  # each run starts in a fresh folder, as a new user's would
    distill = []
    for seed in seeds:
        sets = [f"output.dir={args.out / f'distill-{seed}'}", f"distill.seed={seed}"] + (
            DISTILL_QUICK if args.quick else []
        )
        summary, seconds = posttrain("distill", "recipes/tiny-distill.yaml", sets)
        distill.append({**summary, "seconds": seconds})
        print(
            f"distill seed {seed}: teacher pass@1 {points(summary['teacher']['accuracy'])}, student "
            f"{points(summary['student_before_accuracy'])} -> {points(summary['student']['accuracy'])}, {seconds:.0f} s",
            flush=True,
        )

    teacher = [r["teacher"]["accuracy"] for r in distill]
    student = [r["student"]["accuracy"] for r in distill]
    report.add(
        Row(
            "quickstart_distill",
            statistics.mean(student) / statistics.mean(teacher),
            "held-out pass@1 of the distilled student",
            "held-out pass@1 of the teacher",
            f"student {', '.join(points(s) for s in student)} vs teacher {', '.join(points(t) for t in teacher)} per seed; "
            f"student before distillation {', '.join(points(r['student_before_accuracy']) for r in distill)}; "
            f"{distill[0]['student']['params_total']:,} vs {distill[0]['teacher']['params_total']:,} parameters; "
            f"{', '.join(str(round(r['seconds'])) for r in distill)} s per run",
        )
    )
    report.write(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
