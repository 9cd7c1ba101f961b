"""What every benchmark shares: result rows, the identical-settings check, and the machine facts.

Each `bench_*.py` measures one thing against a reference it runs itself, in the same process and
run, and reports rows `name: ratio X.XX (what / against what)`. With `--json PATH` it also writes
its rows, settings and seeds there; `run_all.py` collects those files into the results page.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "data"
PACKAGES = (
    "posttrain",
    "torch",
    "transformers",
    "trl",
    "peft",
    "accelerate",
    "datasets",
    "bitsandbytes",
    "math-verify",
)


@dataclass
class Row:
    """One result: `ratio` is `what` divided by `against`, both measured in the same run."""

    name: str
    ratio: float
    what: str
    against: str
    detail: str = ""

    def line(self) -> str:
        return f"{self.name}: ratio {self.ratio:.2f} ({self.what} / {self.against})"


@dataclass
class Report:
    """A benchmark's rows with what produced them: its settings, seeds and command."""

    benchmark: str
    rows: list[Row] = field(default_factory=list)
    settings: dict = field(default_factory=dict)
    seeds: list[int] = field(default_factory=list)
    command: str = ""

    def add(self, row: Row) -> None:
        self.rows.append(row)
        print(row.line() + (f"  [{row.detail}]" if row.detail else ""), flush=True)

    def write(self, path: Path | None) -> None:
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1))
        tmp.replace(path)


def parser(doc: str) -> argparse.ArgumentParser:
    """The arguments every benchmark takes: --quick, --json, --threads, --no-pin."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument(
        "--quick", action="store_true", help="a smaller run (what the test suite and `run_all.py --quick` use)"
    )
    p.add_argument("--json", type=Path, help="write the rows, settings and seeds here")
    p.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads, the same for both sides (0: torch's default)"
    )
    p.add_argument(
        "--no-pin",
        action="store_true",
        help="do not pin the process to --threads CPUs (pinned, a shared VM's scheduler cannot move it between "
        "cores mid-run; unpinned ratios on a 2-core VM swing 0.68-0.81 for the same code)",
    )
    return p


def start(name: str, args: argparse.Namespace, settings: dict, seeds: list[int]) -> Report:
    """Set the thread count, pin the process to that many CPUs, print the settings, and open the report."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    import torch

    from posttrain.telemetry.progress import quiet_libraries

    quiet_libraries()
    if args.threads:
        torch.set_num_threads(args.threads)
    cpus = "all"
    if args.threads and not args.no_pin and hasattr(os, "sched_setaffinity"):
        # The lowest-numbered CPUs this process may use, one per thread: both sides run in this one
        # process, so they share the pinning as they share every other setting.
        chosen = sorted(os.sched_getaffinity(0))[: args.threads]
        os.sched_setaffinity(0, chosen)
        cpus = ",".join(map(str, chosen))
    script = Path(sys.argv[0]).resolve()
    command = " ".join(
        ["python", str(script.relative_to(REPO) if script.is_relative_to(REPO) else script), *sys.argv[1:]]
    )
    report = Report(
        name,
        settings={**settings, "threads": torch.get_num_threads(), "cpus": cpus},
        seeds=list(seeds),
        command=command,
    )
    print(f"{name}: {json.dumps(report.settings)}; seeds {seeds}", flush=True)
    return report


def require_identical(ours: dict, theirs: dict, what: str) -> None:
    """Refuse to compare unlike things: exit 3 naming every field where the two sides differ."""
    keys = sorted(set(ours) | set(theirs))
    differences = [
        f"{k}: {ours.get(k, '<absent>')!r} vs {theirs.get(k, '<absent>')!r}"
        for k in keys
        if ours.get(k) != theirs.get(k)
    ]
    if differences:
        print(f"refusing to compare {what}: the settings differ in\n  " + "\n  ".join(differences), file=sys.stderr)
        raise SystemExit(3)
    print(f"settings of {what}: identical ({len(keys)} fields compared)", flush=True)


def machine() -> dict:
    """What a figure depends on: CPU model and cores, memory, OS, Python, GPU."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        memory = f"{pages / 2**30:.0f} GiB"
    except (ValueError, OSError, AttributeError):
        memory = "unknown"
    gpu = "none"
    try:
        import torch

        if torch.cuda.is_available():
            gpu = f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
    except ImportError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory": memory,
        "os": platform.platform(),
        "python": platform.python_version(),
        "gpu": gpu,
    }


def versions() -> dict:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "absent"
    return out


def git_commit() -> str:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
        return commit + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def today() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


def heldout(model, tokenizer, recipe, splits, prompt, rewards, correctness) -> float:
    """Held-out pass@1 of `model` with the recipe's eval settings (the same code as a GRPO run's)."""
    from rich.console import Console

    from posttrain.evaluate.heldout import HeldOut, heldout_accuracy
    from posttrain.evaluate.sampling import SamplingSettings

    e = recipe.eval
    settings = SamplingSettings(
        n=e.num_samples, temperature=e.temperature, max_new_tokens=e.max_new_tokens, seed=e.seed
    )
    quiet = Console(quiet=True)
    heldout = HeldOut(splits.heldout, recipe.data.system_prompt, settings, rewards, correctness, quiet)
    result = heldout_accuracy(model, tokenizer, heldout, "eval")
    return result["accuracy"]


def tail_mean(rows: list[dict], key: str) -> float:
    """Mean of `key` over the last quarter of the logged rows that have it."""
    values = [r[key] for r in rows if r.get(key) is not None]
    tail = values[-max(1, len(values) // 4) :]
    return sum(tail) / len(tail)


def task_context(recipe, out: Path) -> tuple:
    """(tokenizer, rewards, correctness reward, splits, prompt) of a GRPO recipe whose model is built
    under `out`: what the MoE benchmarks share between their arms."""
    from transformers import set_seed

    from posttrain.data.load import to_prompt
    from posttrain.data.splits import make_splits
    from posttrain.models.loading import load_tokenizer, resolve_model_path
    from posttrain.rewards.registry import build

    out.mkdir(parents=True, exist_ok=True)
    set_seed(0)
    tokenizer = load_tokenizer(resolve_model_path(recipe.model, out, seed=0))
    splits = make_splits(recipe.data, recipe.eval, recipe.model.warmstart)
    prompt = lambda row: to_prompt(row["question"], recipe.data.system_prompt, True)  # noqa: E731
    rewards, _ = build(recipe.rewards.functions)
    correctness = next(fn for fn in rewards if fn.__name__ == recipe.eval.correctness_reward)
    return tokenizer, rewards, correctness, splits, prompt
