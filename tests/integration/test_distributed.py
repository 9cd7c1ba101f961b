"""`accelerate launch` with 2 CPU processes (DDP over gloo) on the real recipes, shrunk by overrides.

Each launched run is compared with the same run in one process (in-process, CliRunner): the same
files, the same summary keys, every metrics step once, the held-out and trace records in the same
order. A write watcher (tests/fixtures/write_watch) checks that rank 1 wrote nothing in the run
folder but its Trainer checkpoint shard, and the console shows each line once.

On CPU, `accelerate launch --cpu` starts one process whatever --num_processes says (several need
MPI), so these use the multi-GPU launcher (torchrun) with ACCELERATE_USE_CPU=true, as the README's
laptop command does.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from posttrain.cli.app import app

REPO = Path(__file__).resolve().parents[2]
WATCH = REPO / "tests" / "fixtures" / "write_watch"
LAUNCH = [
    sys.executable,
    "-m",
    "accelerate.commands.launch",
    "--multi_gpu",
    "--num_processes",
    "2",
    "--num_machines",
    "1",
    "--mixed_precision",
    "no",
    "--dynamo_backend",
    "no",
    "--main_process_port",
    "0",
    "-m",
    "posttrain",
]

# The tiny shapes every test shares (one file: pytest's importlib mode cannot import conftest).
_TINY = json.loads((Path(__file__).resolve().parents[1] / "fixtures" / "tiny_models.json").read_text())
TINY_MOE = _TINY["tiny_moe"]
TINY_DENSE = _TINY["tiny_dense"]

# 4 prompts x 1 per process: 2 processes x 4 completions = 8, two groups of num_generations=4.
GRPO_SETS = [
    f"model.builder_args={json.dumps(TINY_MOE)}",
    "model.warmstart.steps=3",
    "model.warmstart.batch_size=8",
    "model.warmstart.num_examples=64",
    "data.num_train=64",
    "grpo.max_steps=2",
    "grpo.per_device_train_batch_size=4",
    "grpo.num_generations=4",
    "grpo.max_completion_length=12",
    "grpo.logging_steps=1",
    "output.save_steps=1",
    "eval.num_problems=5",
    "eval.num_samples=2",
    "eval.max_new_tokens=12",  # 5: the processes' shares differ in size
]
DISTILL_SETS = [
    f"teacher.builder_args={json.dumps(TINY_MOE)}",
    f"student.builder_args={json.dumps(TINY_DENSE)}",
    "teacher.warmstart.steps=2",
    "teacher.warmstart.batch_size=8",
    "teacher.warmstart.num_examples=32",
    "data.num_train=11",
    "distill.traces.num_samples=2",
    "distill.traces.max_new_tokens=10",
    "distill.traces.chunk_prompts=4",
    "distill.traces.require={}",
    "distill.traces.drop_truncated=false",
    "distill.max_steps=2",
    "distill.per_device_train_batch_size=4",
    "distill.logging_steps=1",
    "distill.logit_kd.max_steps=2",
    "distill.logit_kd.per_device_train_batch_size=4",
    "eval.num_problems=3",
    "eval.num_samples=2",
    "eval.max_new_tokens=10",
]


def _sets(overrides):
    return [arg for o in overrides for arg in ("--set", o)]


def _launch(command: str, recipe: str, sets: list[str], out: Path, log_dir: Path) -> subprocess.CompletedProcess:
    log_dir.mkdir()
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "ACCELERATE_USE_CPU": "true",
        "PYTHONPATH": os.pathsep.join([str(WATCH), *filter(None, [os.environ.get("PYTHONPATH")])]),
        "POSTTRAIN_WATCH_DIR": str(out),
        "POSTTRAIN_WATCH_LOG": str(log_dir),
        "COLUMNS": "200",
    }
    args = [*LAUNCH, command, str(REPO / recipe), *_sets([*sets, f"output.dir={out}"])]
    return subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)


def _single(command: str, recipe: str, sets: list[str], out: Path) -> None:
    result = CliRunner().invoke(app, [command, str(REPO / recipe), *_sets([*sets, f"output.dir={out}"])])
    assert result.exit_code == 0, result.output


def _relative(out: Path) -> set[str]:
    """Every file of a run; the Trainer's RNG state (rng_state.pth, or rng_state_<rank>.pth per
    process) under one name."""
    return {
        p.relative_to(out).parent.as_posix() + "/" + ("rng_state.pth" if p.name.startswith("rng_state") else p.name)
        for p in out.rglob("*")
        if p.is_file()
    }


def _key_paths(value, prefix="") -> set[str]:
    if isinstance(value, dict):
        return {k for key, v in value.items() for k in {f"{prefix}{key}"} | _key_paths(v, f"{prefix}{key}.")}
    return set()


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _writes_by_rank(log_dir: Path) -> dict[str, list[str]]:
    writes: dict[str, list[str]] = {}
    for log in log_dir.glob("rank*.txt"):
        rank = log.name.split("-")[0].removeprefix("rank")
        writes.setdefault(rank, []).extend(log.read_text().splitlines())
    return writes


def _check_one_writer(result, log_dir: Path) -> None:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert sum(line.startswith("done in") for line in lines) == 1, result.stdout
    assert sum(line.startswith("data:") for line in lines) == 1, result.stdout
    writes = _writes_by_rank(log_dir)
    assert set(writes) == {"_launcher", "0", "1"}, writes.keys()  # the launcher and both processes reported
    assert writes["_launcher"] == []
    assert writes["0"], "the watcher saw no write by rank 0"
    # Rank 1 takes part in Trainer checkpoints (its RNG state), and writes nothing else.
    stray = [w for w in writes["1"] if "checkpoints/" not in w]
    assert stray == [], stray


def _launch_and_compare(command: str, recipe: str, sets: list[str], tmp_path: Path):
    """Two-process launch and one-process run of the same recipe: same files, same summary keys,
    one writer, nothing half-written. Returns both folders and both summaries."""
    out, single = tmp_path / "ddp", tmp_path / "single"
    result = _launch(command, recipe, sets, out, tmp_path / "writes")
    _check_one_writer(result, tmp_path / "writes")
    _single(command, recipe, sets, single)
    assert _relative(out) == _relative(single)
    assert not [p for p in out.rglob("*") if ".tmp" in p.name or p.name.startswith(".staging")]
    summary, reference = (
        json.loads((out / "summary.json").read_text()),
        json.loads((single / "summary.json").read_text()),
    )
    assert _key_paths(summary) == _key_paths(reference)
    return out, single, summary, reference


@pytest.mark.slow
def test_grpo_under_two_processes_matches_one_and_only_rank0_writes(tmp_path):
    out, single, summary, reference = _launch_and_compare("grpo", "recipes/tiny-math.yaml", GRPO_SETS, tmp_path)
    assert summary["steps"] == 2 and summary["eval"]["num_problems"] == 5
    assert summary["cost"]["num_devices"] == 2 and reference["cost"]["num_devices"] == 1
    assert [r["step"] for r in _jsonl(out / "metrics.jsonl")] == [1, 2]
    for label in ("base", "trained"):  # every held-out problem once, in order, though sampled in two shares
        records, expected = _jsonl(out / f"heldout_{label}.jsonl"), _jsonl(single / f"heldout_{label}.jsonl")
        assert [r["id"] for r in records] == [r["id"] for r in expected]
        assert all(len(r["samples"]) == 2 for r in records)
    assert sorted(p.name for p in (out / "checkpoints").iterdir() if p.is_dir()) == ["checkpoint-1", "checkpoint-2"]

    from transformers import AutoModelForCausalLM

    assert type(AutoModelForCausalLM.from_pretrained(out)).__name__ == "DeepseekV3ForCausalLM"

    # The main process finds the finished run; both processes stop with its message, printed once.
    again = _launch("grpo", "recipes/tiny-math.yaml", GRPO_SETS, out, tmp_path / "writes-again")
    assert again.returncode != 0
    assert (again.stdout + again.stderr).count("already holds a run") == 1, again.stderr[-3000:]


@pytest.mark.slow
def test_distill_under_two_processes_matches_one_and_only_rank0_writes(tmp_path):
    out, single, summary, reference = _launch_and_compare(
        "distill", "recipes/tiny-distill.yaml", DISTILL_SETS, tmp_path
    )
    assert summary["traces"]["prompts"] == 11 and summary["traces"]["samples"] == 22
    raw, expected = _jsonl(out / "traces_raw.jsonl"), _jsonl(single / "traces_raw.jsonl")
    assert [r["id"] for r in raw] == [r["id"] for r in expected]  # each prompt once, in order
    rows = [(r["stage"], r["step"]) for r in _jsonl(out / "metrics.jsonl")]
    assert rows == [("sequence_kd", 1), ("sequence_kd", 2), ("logit_kd", 1), ("logit_kd", 2)]

    from transformers import AutoModelForCausalLM

    assert type(AutoModelForCausalLM.from_pretrained(out)).__name__ == "Qwen3ForCausalLM"
