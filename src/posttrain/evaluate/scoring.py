"""Score sampled completions with reward functions: the one way grpo, distill and eval score.

Reward functions keep TRL's contract `fn(completions, **columns) -> list[float | None]`, so the
functions a recipe trains with are the ones it evaluates with. The output records are what
`posttrain.evaluate.metrics.summarize` reads.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from posttrain.evaluate.sampling import Sample
from posttrain.rewards.guard import error_counts
from posttrain.rewards.registry import AnswerRule, answer_rule, build

RewardFn = Callable[..., list]


def reward_name(fn: RewardFn) -> str:
    return getattr(fn, "__name__", type(fn).__name__)


def build_rewards(
    specs, correctness_reward: str, base_dir=None, *, strict: bool = False
) -> tuple[list[RewardFn], RewardFn]:
    """The recipe's reward functions, and the one that decides correctness (built on its own when
    the recipe does not list it). grpo, distill and eval all score through this pair.

    A reward that fails scores None on the rows it fails and is counted (`reward_errors`); with
    *strict* (the recipe's `rewards.strict`) its first failure raises RewardError instead."""

    rewards, _ = build(specs, base_dir=base_dir, strict=strict)
    by_name = {reward_name(fn): fn for fn in rewards}
    if correctness_reward in by_name:
        return rewards, by_name[correctness_reward]
    (correctness,), _ = build([{"name": correctness_reward}], base_dir=base_dir, strict=strict)
    return rewards, correctness


def answers_of(correctness: RewardFn) -> AnswerRule:
    """How answers are read and grouped for maj@k, for the reward that judges correctness."""
    return answer_rule(reward_name(correctness))


def reward_errors(rewards: Sequence[RewardFn], correctness: RewardFn) -> dict[str, int]:
    """Rows scored None because a reward failed, by name: the `reward_errors` of summaries and reports."""

    return error_counts([*rewards, correctness])


def score_rows(
    rows: Sequence[dict],
    samples: Sequence[Sequence[Sample]],
    reward_funcs: Sequence[RewardFn],
    correctness: RewardFn,
    extract: Callable[[str], str | None],
    prompts: Sequence | None = None,
) -> list[dict]:
    """One record per row: each sample with its extracted answer, correctness and every reward."""
    flat_rows = [row for row, group in zip(rows, samples) for _ in group]
    texts = [s.text for group in samples for s in group]
    columns = _columns(flat_rows)
    scores = {reward_name(fn): _call(fn, texts, columns) for fn in reward_funcs}
    correct = _call(correctness, texts, columns)
    records, k = [], 0
    for i, (row, group) in enumerate(zip(rows, samples)):
        scored = []
        for sample in group:
            scored.append(
                {
                    "text": sample.text,
                    "extracted": extract(sample.text),
                    "correct": None if correct[k] is None else correct[k] >= 1.0,
                    "rewards": {name: values[k] for name, values in scores.items()},
                    "num_tokens": sample.num_tokens,
                    "truncated": sample.truncated,
                }
            )
            k += 1
        prompt = prompts[i] if prompts is not None else row.get("question")
        records.append({"id": row.get("id", str(i)), "prompt": prompt, "answer": row.get("answer"), "samples": scored})
    return records


def _columns(rows: Sequence[dict]) -> dict[str, list]:
    """Every dataset column as a list aligned with the completions, as TRL passes them."""
    keys = {k for row in rows for k in row}
    return {k: [row.get(k) for row in rows] for k in keys if k not in ("prompt", "completion")}


def _call(fn: RewardFn, texts: list[str], columns: dict[str, list]) -> list:
    values = fn(completions=texts, **columns)
    if len(values) != len(texts):
        raise ValueError(f"reward {reward_name(fn)} returned {len(values)} scores for {len(texts)} completions")
    return list(values)


def accuracy_summary(records: Sequence[dict]) -> dict[str, float | None]:
    """Mean correctness over every sample (pass@1 as the mean over samples), None-free problems only."""
    values = [s["correct"] for r in records for s in r["samples"] if s["correct"] is not None]
    return {"accuracy": sum(values) / len(values) if values else None, "n": len(values)}
