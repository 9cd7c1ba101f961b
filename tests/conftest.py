"""Shared fixtures: tiny models and tokenizers built locally (no network), once per session."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

REPO = Path(__file__).resolve().parents[1]

# The tiny shapes every test shares (one file: pytest's importlib mode cannot import conftest).
_TINY = json.loads((Path(__file__).resolve().parent / "fixtures" / "tiny_models.json").read_text())
# Small enough that a GRPO step takes well under a second on 2 CPU cores.
TINY_MOE = _TINY["tiny_moe"]
TINY_DENSE = _TINY["tiny_dense"]


@pytest.fixture(scope="session")
def char_tokenizer():
    from posttrain.models.tokenizer import build_char_tokenizer

    return build_char_tokenizer()


@pytest.fixture(scope="session")
def tiny_moe_dir(tmp_path_factory, char_tokenizer) -> Path:
    """A saved random-init tiny MoE checkpoint + tokenizer."""
    from posttrain.models.builders import build_model
    from posttrain.models.loading import save_pretrained

    out = tmp_path_factory.mktemp("tiny-moe") / "model"
    save_pretrained(build_model("tiny-moe", char_tokenizer, seed=0, **TINY_MOE), char_tokenizer, out)
    return out


@pytest.fixture
def quick_overrides(tmp_path) -> list[str]:
    """--set overrides that shrink recipes/tiny-math.yaml to a seconds-long run (torchtune style)."""
    import json

    return [
        f"output.dir={tmp_path / 'run'}",
        f"model.builder_args={json.dumps(TINY_MOE)}",
        "model.warmstart.steps=3",
        "model.warmstart.until_greedy=null",  # 3 steps never reach the recipe's target: no extra rounds
        "model.warmstart.batch_size=8",
        "model.warmstart.num_examples=64",
        # The shipped task without the teacher's slips: these tests pin mechanics (and golden numbers),
        # not what GRPO adds beyond imitation (benchmarks/bench_efficacy.py measures that).
        "data.task_args={num_terms: 4, low: 1, high: 9}",
        "data.num_train=64",
        "grpo.max_steps=2",
        "grpo.warmup_steps=0",  # a 2-step run inside a 25-step warmup would barely train
        "grpo.per_device_train_batch_size=8",
        "grpo.num_generations=4",
        "grpo.max_completion_length=12",
        "grpo.logging_steps=1",
        "eval.num_problems=6",
        "eval.num_samples=2",
        "eval.max_new_tokens=12",
    ]


@pytest.fixture
def shaped_rewards() -> str:
    """A --set of the recipe's rewards plus DAPO's over-long penalty, for tests that need a gradient:
    quick_overrides' 3-step model never answers or closes its tags in 12 tokens, so the recipe's own
    rewards are all 0 and GRPO would train nothing; the penalty varies with each completion's length."""
    return (
        "rewards.functions=[{name: accuracy, weight: 1.0}, {name: format, weight: 0.2}, "
        "{name: step_arithmetic, weight: 0.5}, {name: overlong, weight: 1.0, kwargs: {max_length: 12, buffer: 8}}]"
    )


@pytest.fixture
def distill_overrides(tmp_path):
    """--set overrides that shrink recipes/tiny-distill.yaml to a seconds-long run."""
    import json

    return [
        f"output.dir={tmp_path / 'run'}",
        f"teacher.builder_args={json.dumps(TINY_MOE)}",
        f"student.builder_args={json.dumps(TINY_DENSE)}",
        "teacher.warmstart.steps=2",
        "teacher.warmstart.batch_size=8",
        "teacher.warmstart.num_examples=32",
        "data.num_train=12",
        "distill.traces.num_samples=2",
        "distill.traces.max_new_tokens=10",
        "distill.traces.require={}",  # a 2-step teacher is never correct: keep every untruncated trace
        "distill.traces.drop_truncated=false",
        "distill.max_steps=2",
        "distill.per_device_train_batch_size=8",
        "distill.logging_steps=1",
        "distill.logit_kd.max_steps=2",
        "distill.logit_kd.per_device_train_batch_size=8",
        "eval.num_problems=4",
        "eval.num_samples=2",
        "eval.max_new_tokens=10",
    ]
