"""Training, held-out and warm-start rows for a run, with held-out problems never seen in training.

Built-in tasks draw each split from its own seed and drop any training or warm-start problem
whose text equals a held-out one (also when the run's own evaluation is off). Files and Hub datasets use `eval.source`, else the source's
test split (Hub), else a seeded slice of the file set aside before training.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from posttrain.config.schema import DataConfig, EvalConfig, WarmstartConfig
from posttrain.data.load import load_rows, source_kind, without_questions
from posttrain.errors import DataError

# Offsets keep the three seeds of one recipe apart even when a user sets them equal.
EVAL_SEED_OFFSET = 1_000_003
WARM_SEED_OFFSET = 2_000_029


@dataclass
class Splits:
    train: list[dict]
    heldout: list[dict]
    warmstart: list[dict]


def _load(data: DataConfig, source: str, split: str, n: int | None, seed: int) -> list[dict]:
    return load_rows(
        source,
        split=split,
        config_name=data.config_name,
        preset=data.preset,
        prompt_column=data.prompt_column,
        answer_column=data.answer_column,
        task_args=data.task_args,
        n=n,
        seed=seed,
        skip_bad_rows=data.skip_bad_rows,
    )


def make_splits(data: DataConfig, evaluation: EvalConfig, warm: WarmstartConfig | None = None) -> Splits:
    kind = source_kind(data.source)
    heldout: list[dict] = []
    reserved: set[str] = set()
    if kind == "task":
        # Drawn even with eval.enabled=false: `posttrain eval --recipe` scores these problems later,
        # so training and the warm-start must never see them either way.
        drawn = _load(
            data,
            evaluation.source or data.source,
            evaluation.split,
            evaluation.num_problems,
            evaluation.seed + EVAL_SEED_OFFSET,
        )
        reserved = {r["question"] for r in drawn}
        heldout = drawn if evaluation.enabled else []
        train = _load(data, data.source, data.split, data.num_train or 5000, data.seed)
    else:
        train = _load(data, data.source, data.split, None, data.seed)
        if evaluation.enabled:
            train, heldout = _file_heldout(data, evaluation, train, kind)
        if data.num_train:
            train = train[: data.num_train]
    seen = {r["question"] for r in heldout} | reserved
    train = without_questions(train, seen)
    warm_rows: list[dict] = []
    if warm is not None and warm.steps > 0:
        warm_rows = _warm_rows(data, warm, train, kind, seen)
    if not train:
        raise DataError(f"{data.source}: no training rows left after removing held-out problems")
    return Splits(train=train, heldout=heldout, warmstart=warm_rows)


def _file_heldout(
    data: DataConfig, evaluation: EvalConfig, train: list[dict], kind: str
) -> tuple[list[dict], list[dict]]:
    if evaluation.source:
        heldout = _load(data, evaluation.source, evaluation.split, evaluation.num_problems, evaluation.seed)
        return train, heldout
    if kind == "hub":
        try:
            return train, _load(data, data.source, evaluation.split, evaluation.num_problems, evaluation.seed)
        except DataError:
            pass  # no test split: fall back to slicing the training data
    order = list(range(len(train)))
    random.Random(evaluation.seed).shuffle(order)
    cut = min(evaluation.num_problems, len(train) // 5 or 1)
    held = set(order[:cut])
    return [r for i, r in enumerate(train) if i not in held], [train[i] for i in order[:cut]]


def _warm_rows(data: DataConfig, warm: WarmstartConfig, train: list[dict], kind: str, seen: set[str]) -> list[dict]:
    if kind == "task":
        rows = _load(data, data.source, data.split, warm.num_examples, warm.seed + WARM_SEED_OFFSET)
        return without_questions(rows, seen)
    rows = [r for r in train if r.get("solution")]
    if not rows:
        raise DataError(
            f"{data.source}: model.warmstart needs worked solutions (a 'solution' column) or a "
            "built-in task; set model.warmstart.steps=0 to skip it"
        )
    return rows[: warm.num_examples]
