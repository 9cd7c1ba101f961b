"""Batched sampling with the KV cache: the one way grpo, distill and eval generate completions.

Prompts are sorted by length so each padded batch wastes little, each repeated `n` times (its
prompt prefilled once by `models.decoding.decode`, the decode loop GRPO's rollouts use too; a
static or quantized cache goes through `generate`), and seeded per batch so results do not
depend on what ran before. Outputs come back in the caller's order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from posttrain.distributed import shards_weights
from posttrain.models.decoding import Decoded, Decoding, decode, supported
from posttrain.models.generation import cache_kwargs, refused
from posttrain.models.replay import DecodeMismatch


@dataclass(frozen=True)
class SamplingSettings:
    n: int = 4
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 64
    batch_size: int = 256  # sequences (prompts x n) per generate call
    seed: int = 0
    cache: str = "dynamic"  # KV cache: dynamic, static or quantized (posttrain.models.generation)
    sampler: str = "posttrain"  # generation.sampler: the decode loop (models.decoding) or generate
    template_kwargs: Mapping[str, Any] = field(default_factory=dict)  # data.chat_template_kwargs

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass(frozen=True)
class Sample:
    text: str
    num_tokens: int
    truncated: bool


def render_prompt(tokenizer, prompt: str | list[dict], template_kwargs: Mapping[str, Any] | None = None) -> str:
    """Chat messages go through the tokenizer's template (with `data.chat_template_kwargs`); plain
    strings pass unchanged."""
    if isinstance(prompt, str):
        return prompt
    return tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True, **(template_kwargs or {}))


def generate(
    model,
    tokenizer,
    prompts: Sequence[str | list[dict]],
    settings: SamplingSettings,
    on_batch: Callable[[int], Any] | None = None,
) -> list[list[Sample]]:
    """`settings.n` samples per prompt (1 when greedy); `on_batch(k)` reports k prompts done."""
    results: list[list[Sample] | None] = [None] * len(prompts)
    for idx, samples in generate_batches(model, tokenizer, prompts, settings):
        for i, group in zip(idx, samples):
            results[i] = group
        if on_batch:
            on_batch(len(idx))
    return results  # type: ignore[return-value]


def generate_batches(
    model,
    tokenizer,
    prompts: Sequence[str | list[dict]],
    settings: SamplingSettings,
    skip: Callable[[list[int]], bool] | None = None,
    probe: DecodeMismatch | None = None,
) -> Iterator[tuple[list[int], list[list[Sample]]]]:
    """(prompt indices, their samples) batch by batch, in the plan's order.

    The plan (prompts sorted by length, `batch_size // n` per batch, batch b seeded `seed + b`)
    depends on the prompts only, so a caller that skips the batches it already has (`skip(indices)`
    true) gets every other batch exactly as one uninterrupted call would: `posttrain eval` resumes
    this way and reproduces a run's held-out figures. `probe` measures each batch's decoding against
    a full forward (`posttrain eval` on an MoE); it changes no sample.
    """
    n = 1 if settings.greedy else settings.n
    texts = [render_prompt(tokenizer, p, settings.template_kwargs) for p in prompts]
    encoded = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    order = sorted(range(len(texts)), key=lambda i: len(encoded[i]))
    per_batch = max(1, settings.batch_size // n)
    was_training = model.training
    model.eval()
    try:
        for b, start in enumerate(range(0, len(order), per_batch)):
            idx = order[start : start + per_batch]
            if skip is not None and skip(idx):
                continue
            batch = _generate_batch(
                model, tokenizer, [encoded[i] for i in idx], settings, n, seed=settings.seed + b, probe=probe
            )
            yield idx, [batch[j * n : (j + 1) * n] for j in range(len(idx))]
    finally:
        model.train(was_training)


def _generate_batch(
    model, tokenizer, ids: list[list[int]], settings: SamplingSettings, n: int, seed: int, probe=None
) -> list[Sample]:
    rows = [prompt for prompt in ids for _ in range(n)]  # each prompt's n samples side by side
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    reason = _needs_generate(model, settings)
    if reason is None:
        decoding = Decoding(
            max_new_tokens=settings.max_new_tokens,
            eos_token_ids=(eos,),
            pad_token_id=pad,
            temperature=settings.temperature,
            top_p=settings.top_p,
        )
        run = lambda record=None: decode(model, rows, decoding, record)  # noqa: E731
    else:
        run = lambda record=None: _with_generate(model, tokenizer, ids, settings, n)  # noqa: E731
    torch.manual_seed(seed)
    decoded = run() if probe is None else probe.observe(run, rows, pad)
    return [_to_sample(tokenizer, tokens) for tokens in decoded.completions]


def _needs_generate(model, settings: SamplingSettings) -> str | None:
    """Why this batch goes through `model.generate` instead of the decode loop, or None."""
    if settings.sampler == "generate":
        return "generation.sampler=generate"
    if settings.cache != "dynamic":
        return f"generation.cache={settings.cache}"
    if shards_weights():
        return "a sharded engine (every rank must run the same forwards)"
    return supported(getattr(model, "generation_config", None))


def _with_generate(model, tokenizer, ids: list[list[int]], settings: SamplingSettings, n: int) -> Decoded:
    """transformers' `generate` (a static or quantized KV cache, or a model's own generation settings
    the decode loop lacks); completions cut after EOS, no log-probs."""
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    width = max(len(x) for x in ids)
    device = next(model.parameters()).device
    # Left padding: every prompt ends at the same column, where generation starts.
    input_ids = torch.tensor([[pad] * (width - len(x)) + x for x in ids], device=device)
    attention = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids], device=device)
    kwargs: dict[str, Any] = {"do_sample": False}
    if not settings.greedy:
        kwargs = {
            "do_sample": True,
            "temperature": settings.temperature,
            "top_p": settings.top_p,
            "top_k": 0,
            "num_return_sequences": n,
        }
    try:
        with torch.inference_mode():
            out = model.generate(
                input_ids=input_ids,
                attention_mask=attention,
                max_new_tokens=settings.max_new_tokens,
                pad_token_id=pad,
                eos_token_id=eos,
                use_cache=True,
                **kwargs,
                **cache_kwargs(settings.cache),
            )
    except ValueError as e:  # transformers refuses a cache this architecture does not support
        if settings.cache == "dynamic":
            raise
        raise refused(settings.cache, model, e) from e
    completions = [row[: row.index(eos) + 1] if eos in row else row for row in out[:, width:].tolist()]
    return Decoded(completions, None)


def _to_sample(tokenizer, tokens: list[int]) -> Sample:
    eos = tokenizer.eos_token_id
    if eos in tokens:
        cut = tokens.index(eos)
        return Sample(tokenizer.decode(tokens[:cut], skip_special_tokens=True), cut + 1, False)
    pad = tokenizer.pad_token_id
    while tokens and tokens[-1] == pad and pad != eos:
        tokens = tokens[:-1]
    return Sample(tokenizer.decode(tokens, skip_special_tokens=True), len(tokens), True)
