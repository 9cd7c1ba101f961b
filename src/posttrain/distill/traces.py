"""Stage 1: the teacher writes reasoning traces and the recipe's rewards keep the good ones.

Sampling and scoring are `posttrain.evaluate`'s (the same code GRPO and eval use). Every sample is
appended, scored, to `traces_raw.jsonl` one chunk of prompts at a time, so a stopped run resumes at
the next chunk; choosing what to keep is a pure function of those records (`select`), so a new
filter never needs the teacher again.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from posttrain.config.distill_schema import TracesConfig
from posttrain.distributed import on_main
from posttrain.errors import ConfigError, PosttrainError
from posttrain.evaluate.heldout import sample_and_score
from posttrain.evaluate.sampling import SamplingSettings
from posttrain.io import iter_jsonl


@dataclass(frozen=True)
class TraceFilter:
    """What a trace needs to be kept; `strict` names the reward whose None means 'unverified'."""

    require: dict[str, float]
    strict: str | None = None
    keep: str = "all"
    keep_per_prompt: int | None = None
    drop_truncated: bool = True


def make_filter(cfg: TracesConfig, reward_names: Sequence[str], correctness: str | None) -> TraceFilter:
    """The filter a recipe asks for; an unknown reward name is a recipe error, listed with the known ones."""
    require = dict(cfg.require) if cfg.require is not None else dict.fromkeys(reward_names, 1.0)
    unknown = sorted(set(require) - set(reward_names))
    if unknown:
        raise ConfigError(
            f"distill.traces.require: {', '.join(unknown)} not among the recipe's rewards "
            f"({', '.join(reward_names)}); add it under rewards: or remove it from require"
        )
    return TraceFilter(
        require, correctness if correctness in require else None, cfg.keep, cfg.keep_per_prompt, cfg.drop_truncated
    )


def rejection_reasons(sample: dict, flt: TraceFilter) -> list[str]:
    """Why a scored sample is rejected (empty: accepted).

    >>> flt = TraceFilter({"accuracy": 1.0, "format": 1.0}, strict="accuracy")
    >>> rejection_reasons({"rewards": {"accuracy": 1.0, "format": 0.0}, "truncated": False}, flt)
    ['format']
    >>> rejection_reasons({"rewards": {"accuracy": None, "format": 1.0}, "truncated": False}, flt)
    ['accuracy']
    """
    reasons = ["truncated"] if flt.drop_truncated and sample.get("truncated") else []
    for name, minimum in flt.require.items():
        value = sample["rewards"].get(name)
        # None means "does not apply" -- except for the correctness reward, where it means nothing
        # could check the answer, and an unchecked trace is not a good one.
        if (value is None and name == flt.strict) or (value is not None and value < minimum):
            reasons.append(name)
    return reasons


def _normalise(text: str) -> str:
    """Duplicate key: traces that differ only in whitespace teach the same thing."""
    return "".join(text.split())


def select(records: Sequence[dict], flt: TraceFilter) -> tuple[list[dict], dict]:
    """Kept traces (accepted, de-duplicated per prompt, capped) and the statistics of the choice."""
    kept: list[dict] = []
    stats = {
        "prompts": len(records),
        "samples": 0,
        "accepted": 0,
        "duplicates": 0,
        "kept": 0,
        "prompts_with_trace": 0,
        "tokens_kept": 0,
        "rejected_by": {},
    }
    for record in records:
        accepted = []
        for sample in record["samples"]:
            stats["samples"] += 1
            reasons = rejection_reasons(sample, flt)
            for reason in reasons:
                stats["rejected_by"][reason] = stats["rejected_by"].get(reason, 0) + 1
            if not reasons:
                accepted.append(sample)
        stats["accepted"] += len(accepted)
        if flt.keep == "shortest":
            accepted.sort(key=lambda s: s["num_tokens"])  # stable: ties keep sampling order
        chosen, seen = [], set()
        for sample in accepted:
            key = _normalise(sample["text"])
            if key in seen:
                stats["duplicates"] += 1
                continue
            seen.add(key)
            chosen.append(sample)
        chosen = chosen[: flt.keep_per_prompt] if flt.keep_per_prompt else chosen
        stats["prompts_with_trace"] += bool(chosen)
        for sample in chosen:
            kept.append(_trace_row(record, sample))
            stats["tokens_kept"] += sample["num_tokens"]
    stats["kept"] = len(kept)
    stats["acceptance_rate"] = stats["accepted"] / stats["samples"] if stats["samples"] else 0.0
    stats["mean_tokens_kept"] = stats["tokens_kept"] / len(kept) if kept else 0.0
    return kept, stats


def _trace_row(record: dict, sample: dict) -> dict:
    return {
        "id": record["id"],
        "prompt": record["prompt"],
        "answer": record["answer"],
        "completion": sample["text"],
        "num_tokens": sample["num_tokens"],
        "rewards": sample["rewards"],  # the scores that accepted it
    }


def settings_for(
    cfg: TracesConfig, start: int, cache: str = "dynamic", template_kwargs=None, sampler: str = "posttrain"
) -> SamplingSettings:
    """Each chunk seeds from its first prompt's index, so a resumed chunk samples as it would have."""
    return SamplingSettings(
        n=cfg.num_samples,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        max_new_tokens=cfg.max_new_tokens,
        batch_size=cfg.batch_size,
        seed=cfg.seed + start,
        cache=cache,
        sampler=sampler,
        template_kwargs=dict(template_kwargs or {}),
    )


def generate_traces(
    model,
    tokenizer,
    rows,
    prompts,
    cfg: TracesConfig,
    reward_funcs,
    correctness,
    raw_path: Path,
    console: Console,
    cache: str = "dynamic",
    template_kwargs=None,
    sampler: str = "posttrain",
) -> list[dict]:
    """Scored teacher samples for every row, resuming after the records already in `raw_path`."""

    done = list(iter_jsonl(raw_path)) if raw_path.is_file() else []
    _check_resumable(done, rows, raw_path)
    if done:
        console.print(f"traces: resuming after {len(done)} of {len(rows)} prompts in {raw_path.name}")
    for start in range(len(done), len(rows), cfg.chunk_prompts):
        stop = min(start + cfg.chunk_prompts, len(rows))
        label = f"teacher traces {start + 1}-{stop} of {len(rows)}"
        records = sample_and_score(
            model,
            tokenizer,
            rows[start:stop],
            prompts[start:stop],
            settings_for(cfg, start, cache, template_kwargs, sampler),
            reward_funcs,
            correctness,
            console,
            label,
        )
        on_main(functools.partial(_append_chunk, raw_path, records))  # every process samples, the main one writes
        done.extend(records)
    return done


def _check_resumable(done: list[dict], rows, raw_path: Path) -> None:
    expected = [str(r.get("id")) for r in rows[: len(done)]]
    if len(done) > len(rows) or [str(r.get("id")) for r in done] != expected:
        raise PosttrainError(
            f"{raw_path} holds traces for other prompts than this recipe's data; "
            "run with --overwrite, or point output.dir elsewhere"
        )


def _append_chunk(path: Path, records: list[dict]) -> None:
    """One write and one fsync per chunk: a crash loses at most the chunk being written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write("".join(json.dumps(r, default=str) + "\n" for r in records))
        f.flush()
        os.fsync(f.fileno())
