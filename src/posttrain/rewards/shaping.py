"""Shaping rewards: length (Kimi 1.5), cosine-scaled correctness, n-gram repetition, over-long.

Lengths are counted in tokens when TRL passes ``completion_ids`` (it always does during
GRPO) and otherwise estimated as ``ceil(characters / 4)`` -- e.g. when scoring a JSONL file
with ``posttrain rewards score``.  Pass ``unit="chars"`` to count characters instead.
"""

from __future__ import annotations

import math as _m

from posttrain.rewards._common import column, completion_texts
from posttrain.rewards.extract import DEFAULT_ORDER
from posttrain.rewards.math import verify

CHARS_PER_TOKEN = 4


def lengths(completions, completion_ids=None, unit: str = "tokens") -> list[int]:
    """Length of each completion in *unit* ("tokens" or "chars")."""
    texts = completion_texts(completions)
    if unit == "chars":
        return [len(t) for t in texts]
    if unit != "tokens":
        raise ValueError(f"unit must be 'tokens' or 'chars', got {unit!r}")
    if completion_ids is not None and len(completion_ids) == len(texts):
        return [len(ids) for ids in completion_ids]
    return [_m.ceil(len(t) / CHARS_PER_TOKEN) for t in texts]


def _correct(texts, answer, extract_order) -> list[bool | None]:
    return [
        verify(t, g if isinstance(g, str) else ("" if g is None else str(g)), extract_order)
        for t, g in zip(texts, column(answer, len(texts)))
    ]


def _groups(prompts, n: int) -> list[list[int]]:
    """Indices of completions that share a prompt (GRPO groups); one group without prompts."""
    if prompts is None:
        return [list(range(n))]
    by_prompt: dict[str, list[int]] = {}
    for i, p in enumerate(column(prompts, n)):
        by_prompt.setdefault(p if isinstance(p, str) else repr(p), []).append(i)
    return list(by_prompt.values())


def kimi_length(
    completions,
    answer=None,
    prompts=None,
    completion_ids=None,
    *,
    unit: str = "tokens",
    extract_order=DEFAULT_ORDER,
    **kwargs,
) -> list[float | None]:
    """Kimi 1.5 length reward: within each prompt's group, shorter correct answers score higher.

    lambda = 0.5 - (len - min_len) / (max_len - min_len); correct -> lambda, wrong ->
    min(0, lambda); 0.0 when all lengths in the group are equal; None if gold is unusable.

    >>> kimi_length(["The answer is 4", "After a lot of thought the answer is 4"],
    ...             answer=["4", "4"], unit="chars")
    [0.5, -0.5]
    """
    texts = completion_texts(completions)
    lens = lengths(completions, completion_ids, unit)
    correct = _correct(texts, answer, extract_order)
    scores: list[float | None] = [None] * len(texts)
    for group in _groups(prompts, len(texts)):
        lo, hi = min(lens[i] for i in group), max(lens[i] for i in group)
        for i in group:
            if correct[i] is None:
                continue
            lam = 0.0 if hi == lo else 0.5 - (lens[i] - lo) / (hi - lo)
            scores[i] = lam if correct[i] else min(0.0, lam)
    return scores


kimi_length.groupwise = True  # needs every completion of a prompt at once: never chunked


def cosine_scaled(
    completions,
    answer=None,
    completion_ids=None,
    *,
    max_len: int = 1000,
    min_value_wrong: float = -1.0,
    max_value_wrong: float = -0.5,
    min_value_correct: float = 0.5,
    max_value_correct: float = 1.0,
    unit: str = "tokens",
    extract_order=DEFAULT_ORDER,
    **kwargs,
) -> list[float | None]:
    """Correctness scaled by a cosine of length: short right answers best, short wrong ones worst.

    >>> cosine_scaled(["4"], answer=["4"], max_len=100, unit="chars")
    [0.99...]
    """
    texts = completion_texts(completions)
    lens = lengths(completions, completion_ids, unit)
    scores = []
    for n, ok in zip(lens, _correct(texts, answer, extract_order)):
        if ok is None:
            scores.append(None)
            continue
        cosine = _m.cos(min(n / max(1, max_len), 1.0) * _m.pi)
        lo, hi = (min_value_correct, max_value_correct) if ok else (max_value_wrong, min_value_wrong)
        scores.append(lo + 0.5 * (hi - lo) * (1.0 + cosine))
    return scores


def repetition_penalty(completions, *, ngram_size: int = 3, max_penalty: float = -1.0, **kwargs) -> list[float]:
    """Penalty in [max_penalty, 0] growing with the share of repeated word n-grams.

    >>> repetition_penalty(["a b c a b c a b c a b c", "one two three four"], ngram_size=3)
    [-0.7, 0.0]
    """
    scores = []
    for text in completion_texts(completions):
        words = text.lower().split()[:50_000]
        if len(words) < ngram_size or ngram_size < 1:
            scores.append(0.0)
            continue
        ngrams = [tuple(words[i : i + ngram_size]) for i in range(len(words) - ngram_size + 1)]
        scores.append((1.0 - len(set(ngrams)) / len(ngrams)) * max_penalty + 0.0)
    return scores


def soft_overlong(
    completions, completion_ids=None, *, max_length: int, buffer: int | None = None, unit: str = "tokens", **kwargs
) -> list[float]:
    """DAPO soft over-long punishment: 0 up to max_length - buffer, then linear down to -1.

    *max_length* is the generation limit (``max_completion_length``) in *unit*; *buffer*
    defaults to a fifth of it.  Beyond *max_length* the score is -1.

    >>> soft_overlong(["x" * 10, "x" * 90, "x" * 200], max_length=100, buffer=20, unit="chars")
    [0.0, -0.5, -1.0]
    """
    buffer = max(1, int(buffer if buffer is not None else max_length // 5))
    start = max_length - buffer
    scores = []
    for n in lengths(completions, completion_ids, unit):
        if n <= start:
            scores.append(0.0)
        elif n <= max_length:
            scores.append((start - n) / buffer)
        else:
            scores.append(-1.0)
    return scores
