"""Run every benchmark and write the results page: the one command behind every published figure.

    python benchmarks/run_all.py [--quick] [--output benchmarks/RESULTS.md] [--only grpo,eval]

Each `bench_*.py` runs in its own process (cold caches, no state shared between benchmarks), one
after another so they do not compete for cores, with its outputs in a fresh folder. The page
gets the machine (CPU model, cores, memory, GPU), the package versions, the date, the commit and
the exact command, then one line per row (`name: ratio X.XX (what / against what)`), then each
benchmark's settings, seeds, command and full printed report. `benchmarks/RESULTS.md` is the
output of the full run and is never edited by hand; `--quick` (about 5 minutes on 2 cores) is
what the test suite runs, so no benchmark can rot unnoticed. Exits 1 if any benchmark failed
(the page still lists what the others measured, and the failure).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, git_commit, machine, today, versions

HERE = Path(__file__).resolve().parent
BENCHMARKS = ("quickstart", "grpo", "eval", "distill", "moe", "crash", "rewards")
TAKES_OUT = {"quickstart", "grpo", "moe", "crash"}  # scripts with a work folder of their own


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--quick", action="store_true", help="the small settings of every benchmark (about 5 minutes on 2 cores)"
    )
    p.add_argument(
        "--output", type=Path, help="results page (default: benchmarks/RESULTS.md, or results-quick.md with --quick)"
    )
    p.add_argument("--only", help="comma-separated subset of " + ", ".join(BENCHMARKS))
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads of every benchmark")
    args = p.parse_args(argv)
    args.only = [b.strip() for b in args.only.split(",")] if args.only else list(BENCHMARKS)
    unknown = sorted(set(args.only) - set(BENCHMARKS))
    if unknown:
        p.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    if args.output is None:
        args.output = HERE / ("results-quick.md" if args.quick else "RESULTS.md")
    return args


def run_one(name: str, args, work: Path) -> dict:
    """Run bench_<name>.py; its rows (from --json) and everything it printed."""
    result_file = work / f"{name}.json"
    cmd = [sys.executable, str(HERE / f"bench_{name}.py"), "--json", str(result_file), "--threads", str(args.threads)]
    if args.quick:
        cmd.append("--quick")
    if name in TAKES_OUT:
        cmd += ["--out", str(work / name)]
    print(f"\n== {name} ==", flush=True)
    started = time.time()
    lines = []
    with subprocess.Popen(
        cmd,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**_env(), "PYTHONUNBUFFERED": "1"},
    ) as proc:
        for line in proc.stdout:
            print(line, end="", flush=True)
            lines.append(line)
    seconds = time.time() - started
    result = json.loads(result_file.read_text()) if proc.returncode == 0 and result_file.is_file() else None
    return {"name": name, "rc": proc.returncode, "seconds": seconds, "result": result, "output": "".join(lines)}


def _env() -> dict:
    import os

    # Warnings a library prints on every call say nothing about the figures.
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONWARNINGS": "ignore::FutureWarning"}


def page(runs: list[dict], args, command: str, wall: float) -> str:
    facts = machine()
    out = [
        "# Benchmark results" + (" (quick settings)" if args.quick else ""),
        "",
        f"Written by `{command}` on {today()} in {wall / 60:.1f} minutes; do not edit by hand, run it again.",
        "Every ratio compares two sides measured in the same run, on this machine, at settings the",
        "benchmark checked are identical (it exits 3 otherwise). A figure holds for the machine below.",
        "",
        f"- machine: {facts['cpu']}, {facts['cores']} cores, {facts['memory']}, GPU: {facts['gpu']}; {facts['os']}, Python {facts['python']}",
        "- packages: " + ", ".join(f"{k} {v}" for k, v in versions().items()),
        f"- commit: {git_commit()}; torch threads per benchmark: {args.threads}",
        "",
        "## Rows",
        "",
        "```",
    ]
    for run in runs:
        if run["result"] is None:
            out.append(f"{run['name']}: FAILED (exit code {run['rc']}; its output is below)")
            continue
        for row in run["result"]["rows"]:
            out.append(f"{row['name']}: ratio {row['ratio']:.2f} ({row['what']} / {row['against']})")
    out += ["```", ""]
    for run in runs:
        out += [f"## {run['name']}", ""]
        result = run["result"]
        if result is not None:
            out += [
                f"- command: `{result['command']}` ({run['seconds']:.0f} s)",
                f"- seeds: {', '.join(map(str, result['seeds'])) or 'none (no sampling)'}",
                f"- settings: `{json.dumps(result['settings'])}`",
                "",
            ]
            out += [
                f"- **{row['name']}**: ratio **{row['ratio']:.2f}** ({row['what']} / {row['against']}): {row['detail']}"
                for row in result["rows"]
            ]
            out.append("")
        out += [
            "<details><summary>printed report</summary>",
            "",
            "```",
            run["output"].rstrip(),
            "```",
            "",
            "</details>",
            "",
        ]
    return "\n".join(out)


def main(argv=None) -> int:
    args = parse_args(argv)
    command = " ".join(["python benchmarks/run_all.py", *(argv if argv is not None else sys.argv[1:])])
    started = time.time()
    work = Path(tempfile.mkdtemp(prefix="posttrain-bench-"))
    try:
        runs = [run_one(name, args, work) for name in args.only]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = page(runs, args, command, time.time() - started)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_name(args.output.name + ".tmp")
    tmp.write_text(text + "\n", encoding="utf-8")
    tmp.replace(args.output)
    failed = [r["name"] for r in runs if r["result"] is None]
    print(
        f"\nwrote {args.output}: {sum(len(r['result']['rows']) for r in runs if r['result'])} rows from "
        f"{len(runs) - len(failed)}/{len(runs)} benchmarks in {(time.time() - started) / 60:.1f} min"
        + (f"; FAILED: {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
