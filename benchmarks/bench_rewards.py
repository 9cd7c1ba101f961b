"""Side by side: posttrain's math checker vs Hugging Face math-verify on labelled answer pairs.

    python benchmarks/bench_rewards.py [--data data/verifier_dev.jsonl] [--errors] [--json PATH]

Both checkers see the same pairs in the same order, in one process, after one untimed call each
(imports, compiled patterns). Our checker caches parses and results, which a real run's repeated
gold answers profit from; to compare like with like every timed call starts from empty caches
(`clear_caches`), and a second, warm pass is reported on its own. Rows: accuracy ratio and the
median time-per-pair ratio (cold). The pairs are the set the checker was developed against, so
the accuracy is in-sample.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATA, Row, parser, start

DEFAULT_DATA = DATA / "verifier_dev.jsonl"


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


def run(checker, rows, cold: bool) -> dict:
    from posttrain.rewards.math import clear_caches

    times, errors = [], []
    fp = fn = 0
    for row in rows:
        if cold:
            clear_caches()  # a no-op for math-verify's side, which keeps no results
        begin = time.perf_counter()
        got = checker(row["pred"], row["gold"])
        times.append(time.perf_counter() - begin)
        if got != row["equivalent"]:
            errors.append(row)
            fp += got
            fn += not got
    n = len(rows)
    return {
        "accuracy": (n - len(errors)) / n,
        "fp": fp,
        "fn": fn,
        "median_us": statistics.median(times) * 1e6,
        "total_s": sum(times),
        "errors": errors,
    }


def main(argv=None) -> int:
    p = parser(__doc__)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--errors", action="store_true", help="list every pair we get wrong")
    args = p.parse_args(argv)
    if not args.data.is_file():
        print(f"error: no labelled pairs at {args.data} (pass --data PATH)", file=sys.stderr)
        return 2
    rows = load(args.data)
    report = start(
        "rewards",
        args,
        {"data": args.data.name, "pairs": len(rows), "caches": "cleared before every timed call"},
        seeds=[],
    )
    ours("1", "1"), math_verify("1", "1")  # imports and first-call setup outside the timing
    results = {"posttrain": run(ours, rows, cold=True), "math-verify": run(math_verify, rows, cold=True)}
    run(ours, rows, cold=False)  # fills the caches (the cold pass emptied them before every pair)
    warm = run(ours, rows, cold=False)
    print(f"{'checker':<12} {'accuracy':>9} {'FP':>4} {'FN':>4} {'median us/pair':>15} {'total s':>8}")
    for name, r in results.items():
        print(
            f"{name:<12} {r['accuracy']:>9.4f} {r['fp']:>4} {r['fn']:>4} {r['median_us']:>15.1f} {r['total_s']:>8.2f}"
        )
    print(f"posttrain, warm caches (second pass): median {warm['median_us']:.1f} us/pair")
    a, b = results["posttrain"], results["math-verify"]
    report.add(
        Row(
            "verifier_accuracy",
            a["accuracy"] / b["accuracy"],
            "posttrain accuracy",
            "math-verify accuracy",
            f"{a['accuracy']:.4f} vs {b['accuracy']:.4f} on {len(rows)} labelled pairs (in-sample for posttrain); "
            f"false positives {a['fp']} vs {b['fp']}",
        )
    )
    report.add(
        Row(
            "verifier_time_cold",
            a["median_us"] / b["median_us"],
            "posttrain median time per pair",
            "math-verify median time per pair",
            f"{a['median_us']:.0f} vs {b['median_us']:.0f} us, caches cleared before every pair; "
            f"warm (cached) {warm['median_us']:.1f} us",
        )
    )
    by_category = Counter((r["category"], "FP" if not r["equivalent"] else "FN") for r in a["errors"])
    print(
        "posttrain errors by category:",
        ", ".join(f"{cat} {kind} {n}" for (cat, kind), n in sorted(by_category.items())) or "none",
    )
    if args.errors:
        for r in a["errors"]:
            kind = "FP" if not r["equivalent"] else "FN"
            print(f"  {kind} {r['id']} [{r['category']}] gold={r['gold'][-80:]!r} pred={r['pred'][-100:]!r}")
    report.write(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
