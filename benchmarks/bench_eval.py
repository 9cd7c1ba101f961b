"""Eval throughput: posttrain's batched KV-cache sampling vs a plain one-prompt-at-a-time loop.

    python benchmarks/bench_eval.py [--model DIR] [--problems 64] [--n 8]

Both sample n=8 completions per problem from the same tiny MoE with the same settings, in one
process; prints problems/s for each and the ratio. Without --model a random-init tiny MoE is
built (throughput does not depend on skill, though completion lengths do: a warm-started model
such as outputs/tiny-math stops at EOS like a real one, so prefer it when you have it).
"""

from __future__ import annotations

import argparse
import tempfile
import time


def plain_loop(model, tokenizer, prompts, n, max_new_tokens):
    """What a user writes without posttrain: one prompt at a time, n samples each."""
    import torch

    for prompt in prompts:
        text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            model.generate(**ids, do_sample=True, temperature=1.0, top_k=0, num_return_sequences=n,
                           max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="checkpoint directory (default: build a tiny MoE)")
    parser.add_argument("--problems", type=int, default=64)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=40)
    args = parser.parse_args()

    from posttrain.data.tasks.arithmetic import generate as make_problems
    from posttrain.evaluate.sampling import SamplingSettings, generate
    from posttrain.models.loading import build_and_save, load_model, load_tokenizer

    path = args.model or str(build_and_save("tiny-moe", {}, __import__("pathlib").Path(tempfile.mkdtemp()) / "m", seed=0))
    model, tokenizer = load_model(path, "float32"), load_tokenizer(path)
    prompts = [[{"role": "user", "content": r["question"]}] for r in make_problems(args.problems, seed=5)]
    settings = SamplingSettings(n=args.n, temperature=1.0, max_new_tokens=args.max_new_tokens, batch_size=256)

    generate(model, tokenizer, prompts[:4], settings)  # warm-up both paths once
    t = time.perf_counter()
    generate(model, tokenizer, prompts, settings)
    ours = args.problems / (time.perf_counter() - t)
    t = time.perf_counter()
    plain_loop(model, tokenizer, prompts, args.n, args.max_new_tokens)
    plain = args.problems / (time.perf_counter() - t)

    print(f"model: {path}  problems: {args.problems}  n: {args.n}  max_new_tokens: {args.max_new_tokens}")
    print(f"{'method':<32}{'problems/s':>12}")
    print(f"{'posttrain (batched, KV cache)':<32}{ours:>12.2f}")
    print(f"{'one prompt at a time':<32}{plain:>12.2f}")
    print(f"speed-up: {ours / plain:.2f}x")


if __name__ == "__main__":
    main()
