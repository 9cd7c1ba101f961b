"""Run every benchmark and write the results page: the one command behind every published figure.

    python benchmarks/run_all.py [--quick] [--output benchmarks/RESULTS.md] [--only grpo,eval]

Each `bench_*.py` runs in its own process (cold caches, no state shared between benchmarks), one
after another so they do not compete for cores (`--jobs 2` runs two at once: for smoke runs only), with its outputs in a fresh folder. The page
gets the machine (CPU model, cores, memory, GPU), the package versions, the date, the commit and
the exact command, then one line per row (`name: ratio X.XX (what / against what)`), then each
benchmark's settings, seeds, command and full printed report. `benchmarks/RESULTS.md` is the
output of these runs and is never edited by hand: `--only` re-runs some benchmarks and keeps the
other sections of the page (same machine and packages only), each section naming the commit and
date it was measured at. Another machine writes its own page (`--output benchmarks/RESULTS-<machine>.md`;
RESULTS-xeon.md holds the efficacy and distill reruns on a 2-core Intel Xeon;
`--args 'efficacy=--seeds 3,4,5'` gives one benchmark extra arguments). `--quick` (about 6 minutes on 2 cores, 3.5 with `--jobs 2`) is
what the test suite runs, so no benchmark can rot unnoticed. Exits 1 if any benchmark failed
(the page still lists what the others measured, and the failure).
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, git_commit, machine, today, versions

HERE = Path(__file__).resolve().parent
BENCHMARKS = ("efficacy", "quickstart", "grpo", "dynamic", "eval", "distill", "moe", "moe_rl", "crash", "rewards")
# scripts with a work folder of their own
TAKES_OUT = {"efficacy", "quickstart", "grpo", "dynamic", "moe", "moe_rl", "crash"}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--quick", action="store_true", help="the small settings of every benchmark (about 6 minutes on 2 cores)"
    )
    p.add_argument(
        "--output", type=Path, help="results page (default: benchmarks/RESULTS.md, or results-quick.md with --quick)"
    )
    p.add_argument(
        "--only",
        help="comma-separated subset of " + ", ".join(BENCHMARKS) + "; their sections replace those of the existing "
        "page, whose other sections are kept with the commit and date they were measured at",
    )
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads of every benchmark")
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="benchmarks run side by side (default 1: published figures never share cores; the test suite's "
        "--quick smoke run uses 2, one thread each, as its figures mean nothing)",
    )
    p.add_argument(
        "--args",
        action="append",
        default=[],
        metavar="NAME=ARGS",
        help="extra arguments for one benchmark, e.g. --args 'efficacy=--seeds 3,4,5' (repeatable; the page "
        "records the command, so its figures stay reproducible)",
    )
    args = p.parse_args(argv)
    args.extra = {}
    for item in args.args:
        name, sep, extra = item.partition("=")
        if not sep or name.strip() not in BENCHMARKS:
            p.error(f"--args {item!r}: expected NAME=ARGS with NAME one of {', '.join(BENCHMARKS)}")
        args.extra[name.strip()] = shlex.split(extra)
    args.merge = bool(args.only)
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
    cmd += args.extra.get(name, [])
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
            print(line if args.jobs <= 1 else f"[{name}] {line}", end="", flush=True)
            lines.append(line)
    seconds = time.time() - started
    result = json.loads(result_file.read_text()) if proc.returncode == 0 and result_file.is_file() else None
    return {"name": name, "rc": proc.returncode, "seconds": seconds, "result": result, "output": "".join(lines)}


def _env() -> dict:
    import os

    # Warnings a library prints on every call say nothing about the figures.
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONWARNINGS": "ignore::FutureWarning"}


def facts_lines(args, commit: str) -> dict[str, str]:
    facts = machine()
    return {
        "machine": f"- machine: {facts['cpu']}, {facts['cores']} cores, {facts['memory']}, GPU: {facts['gpu']}; "
        f"{facts['os']}, Python {facts['python']}",
        "packages": "- packages: " + ", ".join(f"{k} {v}" for k, v in versions().items()),
        "commit": f"- commit: {commit}; torch threads per benchmark: {args.threads}",
    }


def section(run: dict, measured: str) -> tuple[list[str], list[str]]:
    """A benchmark's section of the page and its lines in the Rows block."""
    out = [f"## {run['name']}", "", f"- measured: {measured}"]
    result = run["result"]
    if result is None:
        rows = [f"{run['name']}: FAILED (exit code {run['rc']}; its output is below)"]
    else:
        rows = [f"{row['name']}: ratio {row['ratio']:.2f} ({row['what']} / {row['against']})" for row in result["rows"]]
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
    out += [
        "",
        "<details><summary>printed report</summary>",
        "",
        "```",
        run["output"].rstrip(),
        "```",
        "",
        "</details>",
        "",
    ]
    return out, rows


def earlier_sections(path: Path, facts: dict[str, str], rerun: list[str]) -> dict[str, tuple[list[str], list[str]]]:
    """The sections of an existing page that this run does not replace, with their Rows lines.

    Kept only if the page was measured on this machine with these packages: figures from
    elsewhere cannot sit beside this run's. A section written before pages named their sections'
    commits gets the page's commit and date.
    """
    if not path.is_file():
        return {}
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    for key in ("machine", "packages"):
        old = next((line for line in lines if line.startswith(f"- {key}: ")), None)
        if old != facts[key]:
            raise SystemExit(
                f"{path}: measured with another {key} ({old!r}, now {facts[key]!r}); its other sections cannot be "
                "kept beside this run's figures: run every benchmark (no --only)"
            )
    written = re.search(r" on (\d{4}-\d\d-\d\d \d\d:\d\d UTC)", lines[2] if len(lines) > 2 else "")
    commit = next((line.split(": ", 1)[1].split(";")[0] for line in lines if line.startswith("- commit: ")), "unknown")
    row_block = text.split("## Rows", 1)[1].split("```")[1].strip().splitlines() if "## Rows" in text else []
    kept = {}
    for chunk in re.split(r"^(?=## )", text, flags=re.M):
        name = chunk[3:].split("\n", 1)[0].strip() if chunk.startswith("## ") else None
        if name in (None, "Rows") or name in rerun or name not in BENCHMARKS:
            continue
        body = chunk.rstrip("\n").splitlines()
        if not any(line.startswith("- measured: ") for line in body):
            when = written.group(1) if written else "an earlier date"
            body[1:1] = ["", f"- measured: commit {commit} on {when}, by an earlier `python benchmarks/run_all.py`"]
            if body[3] == "":
                del body[3]
        names = set(re.findall(r"^- \*\*(\w+)\*\*", chunk, flags=re.M))
        failed = f"{name}: FAILED"
        rows = [r for r in row_block if r.split(":", 1)[0] in names or r.startswith(failed)]
        kept[name] = (body + [""], rows)
    return kept


def page(runs: list[dict], args, command: str, wall: float, commit: str) -> str:
    facts = facts_lines(args, commit)
    sections = earlier_sections(args.output, facts, [r["name"] for r in runs]) if args.merge else {}
    for run in runs:
        sections[run["name"]] = section(run, f"commit {commit} on {today()}, by this run")
    names = [n for n in BENCHMARKS if n in sections]
    out = [
        "# Benchmark results" + (" (quick settings)" if args.quick else ""),
        "",
        f"Written by `{command}` on {today()} in {wall / 60:.1f} minutes; do not edit by hand, run it again.",
        "Every ratio compares two sides measured in the same run, on this machine, at settings the",
        "benchmark checked are identical (it exits 3 otherwise). A figure holds for the machine below;",
        "each section names the commit and date it was measured at.",
        "",
        facts["machine"],
        facts["packages"],
        facts["commit"],
        "",
        "## Rows",
        "",
        "```",
        *[row for n in names for row in sections[n][1]],
        "```",
        "",
    ]
    for n in names:
        out += sections[n][0]
    return "\n".join(out)


def main(argv=None) -> int:
    args = parse_args(argv)
    command = " ".join(["python benchmarks/run_all.py", *(argv if argv is not None else sys.argv[1:])])
    commit = git_commit()  # at the start: what the benchmarks ran, whatever changes while they run
    facts = facts_lines(args, commit)
    if args.merge:
        earlier_sections(args.output, facts, args.only)  # refuse before an hour of work, not after
    started = time.time()
    work = Path(tempfile.mkdtemp(prefix="posttrain-bench-"))
    try:
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:  # each job is a process; threads wait
            runs = list(pool.map(lambda name: run_one(name, args, work), args.only))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = page(runs, args, command, time.time() - started, commit)
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
