"""Eval throughput: posttrain's batched KV-cache sampling vs a plain one-prompt-at-a-time loop.

    python benchmarks/bench_eval.py [--problems 64] [--n 8] [--repeats 5] [--json PATH]

Both sample n completions per problem from the same tiny MoE (random init, so every completion
runs to max_new_tokens on both sides) in one process. The sampling arguments each side passes to
`model.generate` are captured during a warm-up of each side and compared; any difference stops
the script (exit 3). Then the two alternate (ours, plain, plain, ours, ...) for --repeats runs
each, and the row is the ratio of median problems/s.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Row, parser, require_identical, start

# What decides the distribution and the amount of work; the batch layout is the method being measured.
SAMPLING_KEYS = ("do_sample", "temperature", "top_p", "top_k", "max_new_tokens", "num_return_sequences", "use_cache")


def plain_loop(model, tokenizer, prompts, n: int, max_new_tokens: int, seed: int) -> None:
    """What a user writes without posttrain: one prompt at a time, n samples each."""
    import torch

    torch.manual_seed(seed)
    for prompt in prompts:
        text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)
        with torch.inference_mode():
            model.generate(
                **ids,
                do_sample=True,
                temperature=1.0,
                top_p=1.0,
                top_k=0,
                num_return_sequences=n,
                max_new_tokens=max_new_tokens,
                use_cache=True,
                pad_token_id=tokenizer.pad_token_id,
            )


class CapturedGenerate:
    """Wraps `model.generate` to record the sampling arguments of every call."""

    def __init__(self, model) -> None:
        self.model, self.original, self.calls = model, model.generate, []

    def __enter__(self):
        def generate(*args, **kwargs):
            self.calls.append({k: kwargs.get(k) for k in SAMPLING_KEYS})
            return self.original(*args, **kwargs)

        self.model.generate = generate
        return self

    def __exit__(self, *exc) -> None:
        del self.model.generate  # back to the class's method

    def settings(self) -> dict:
        distinct = {tuple(sorted(c.items())) for c in self.calls}
        if len(distinct) != 1:
            raise RuntimeError(f"one side sampled with several settings: {distinct}")
        return dict(distinct.pop())


def main(argv=None) -> int:
    p = parser(__doc__)
    p.add_argument("--problems", type=int)
    p.add_argument("--n", type=int)
    p.add_argument("--max-new-tokens", type=int, default=40)
    p.add_argument("--repeats", type=int, help="timed runs per side, alternating (median reported)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    problems = args.problems or (16 if args.quick else 64)
    n = args.n or (4 if args.quick else 8)
    repeats = args.repeats or (3 if args.quick else 5)
    report = start(
        "eval",
        args,
        {
            "problems": problems,
            "n": n,
            "max_new_tokens": args.max_new_tokens,
            "repeats": repeats,
            "model": "tiny-moe (random init)",
        },
        seeds=[args.seed],
    )

    from posttrain.data.tasks.arithmetic import generate as make_problems
    from posttrain.evaluate.sampling import SamplingSettings, generate
    from posttrain.models.loading import build_and_save, load_model, load_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        path = str(build_and_save("tiny-moe", {}, Path(tmp) / "m", seed=0))
        model, tokenizer = load_model(path, "float32"), load_tokenizer(path)
    prompts = [[{"role": "user", "content": r["question"]}] for r in make_problems(problems, seed=5)]
    # sampler="generate": both sides call model.generate, so their settings can be captured and compared;
    # this row measures batching alone (the decode loop's own gain is grpo_step_time's).
    settings = SamplingSettings(
        n=n, temperature=1.0, max_new_tokens=args.max_new_tokens, batch_size=256, seed=args.seed, sampler="generate"
    )

    def ours(batch):
        generate(model, tokenizer, batch, settings)

    def plain(batch):
        plain_loop(model, tokenizer, batch, n, args.max_new_tokens, args.seed)

    # Warm-up of both sides (first kernels, allocator), which also captures what each passes to generate.
    sides = {"posttrain": ours, "plain": plain}
    captured = {}
    for name, fn in sides.items():
        with CapturedGenerate(model) as capture:
            fn(prompts[:4])
        captured[name] = capture.settings()
    require_identical(captured["posttrain"], captured["plain"], "posttrain's sampler and the plain loop")

    rates: dict[str, list[float]] = {name: [] for name in sides}
    for r in range(repeats):
        for name in ("posttrain", "plain") if r % 2 == 0 else ("plain", "posttrain"):
            begin = time.perf_counter()
            sides[name](prompts)
            rates[name].append(problems / (time.perf_counter() - begin))
    for name, values in rates.items():
        print(
            f"{name:<10} problems/s median {statistics.median(values):.2f}  (runs: {', '.join(f'{v:.2f}' for v in values)})"
        )
    ours_rate, plain_rate = statistics.median(rates["posttrain"]), statistics.median(rates["plain"])
    report.add(
        Row(
            "eval_sampling",
            ours_rate / plain_rate,
            "posttrain batched sampling problems/s",
            "one-prompt-at-a-time generate problems/s",
            f"{ours_rate:.2f} vs {plain_rate:.2f} problems/s, median of {repeats} alternating runs each after a warm-up of both; "
            f"{problems} problems x {n} samples x {args.max_new_tokens} tokens",
        )
    )
    report.write(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
