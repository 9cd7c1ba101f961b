"""Side by side: posttrain's math checker vs Hugging Face math-verify on labelled pairs.

    python benchmarks/bench_rewards.py [--data ../shared/data/verifier_dev.jsonl] [--errors]

Prints accuracy, false positives, false negatives and median time per pair for both
checkers (one process, same pairs, same order), the ratios, and our errors per category.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO / ".." / "shared" / "data" / "verifier_dev.jsonl"


def load(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def ours(pred: str, gold: str) -> bool:
    from posttrain.rewards.math import verify

    return bool(verify(pred, gold))


def math_verify(pred: str, gold: str) -> bool:
    from math_verify import parse, verify

    try:
        return bool(verify(parse(gold), parse(pred)))
    except Exception:  # math-verify raises on some inputs; count that as "not equal"
        return False


def run(checker, rows) -> dict:
    times, errors = [], []
    fp = fn = 0
    for row in rows:
        start = time.perf_counter()
        got = checker(row["pred"], row["gold"])
        times.append(time.perf_counter() - start)
        if got != row["equivalent"]:
            errors.append(row)
            fp += got
            fn += not got
    n = len(rows)
    return {
        "accuracy": (n - len(errors)) / n, "fp": fp, "fn": fn,
        "median_us": statistics.median(times) * 1e6, "total_s": sum(times), "errors": errors,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--errors", action="store_true", help="list every pair we get wrong")
    parser.add_argument("--ours-only", action="store_true", help="skip math-verify")
    args = parser.parse_args(argv)
    if not args.data.is_file():
        print(f"error: no labelled pairs at {args.data} (pass --data PATH)", file=sys.stderr)
        return 2
    rows = load(args.data)
    from posttrain.rewards import math as _warm  # noqa: F401  (import cost not timed)

    results = {"posttrain": run(ours, rows)}
    if not args.ours_only:
        math_verify("1", "1")  # import and warm-up outside the timing
        results["math-verify"] = run(math_verify, rows)
    print(f"{len(rows)} pairs from {args.data}")
    print(f"{'checker':<12} {'accuracy':>9} {'FP':>4} {'FN':>4} {'median us/pair':>15} {'total s':>8}")
    for name, r in results.items():
        print(f"{name:<12} {r['accuracy']:>9.4f} {r['fp']:>4} {r['fn']:>4} "
              f"{r['median_us']:>15.1f} {r['total_s']:>8.2f}")
    if "math-verify" in results:
        a, b = results["posttrain"], results["math-verify"]
        print(f"ratios (posttrain / math-verify): accuracy {a['accuracy'] / b['accuracy']:.3f}, "
              f"median time {a['median_us'] / b['median_us']:.3f} "
              f"({b['median_us'] / a['median_us']:.1f}x faster), "
              f"false positives {a['fp']} vs {b['fp']}")
    ours_errors = results["posttrain"]["errors"]
    by_category = Counter((r["category"], "FP" if not r["equivalent"] else "FN") for r in ours_errors)
    print("posttrain errors by category:", ", ".join(
        f"{cat} {kind} {n}" for (cat, kind), n in sorted(by_category.items())) or "none")
    if args.errors:
        for r in ours_errors:
            kind = "FP" if not r["equivalent"] else "FN"
            print(f"  {kind} {r['id']} [{r['category']}] gold={r['gold'][-80:]!r} pred={r['pred'][-100:]!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
