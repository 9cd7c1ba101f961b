"""The decode loop behind every rollout and held-out sample: KV-cache sampling without `generate`'s overhead.

Three things `model.generate` does not do, each leaving the sampled distribution unchanged:

- **a prompt is prefilled once**: a GRPO group's `num_generations` rows (and eval's n samples) share
  their prompt, so the prompt's KV cache is computed once and copied to every row of the group;
- **finished rows leave the batch**: a row that sampled EOS drops out of the cache, so the next
  forwards run on the rows still decoding, not on the whole batch padded with finished ones;
- **no processor pipeline**: temperature, top-k and top-p are applied as transformers applies them
  (same order, same thresholds), and nothing else runs per token.

On the tiny CPU models per-call overhead is a large share of a decode forward, and `generate`'s own
bookkeeping per step (input preparation, processors, stopping criteria) is a third of a step; on
long prompts the shared prefill dominates instead. Where the rest goes (ad-hoc profile, not a
published figure: 2-core AMD EPYC, one thread, bench_grpo's tiny DeepSeek-V3, 32 rows): a decode
forward costs 2.0 ms at 1 row and 4.0 ms at 32, so pruning pays from the first finished rows;
inside it attention is about 37% (MLA re-expands the whole cached latent through `kv_b_proj` every
step), the MoE block 44% (routed experts 27%, the router 8%), transformers' per-forward bookkeeping
(masks, output dataclasses, config lookups) about 15%, this loop's sampling 8%. Computing every
expert densely for the few decode tokens measured slower than grouped_mm: the expert matmuls are
already compute-bound at one thread. The loop runs eager: `torch.compile` of the
decode forward was tried once (an ad-hoc measurement, not a published figure: 2-core Xeon, tiny
MoE, 32 rows x 32 tokens) and took 96 s to compile and 90 s more for each new batch or prompt
shape, for 0.21 s per decode against 0.27 s eager. Settings this loop does not implement
(`supported` names them: repetition penalty, min-p, a static or quantized cache, ...) go to
`generate` instead, as does anything under a sharded engine (ZeRO-3 and FSDP gather weights inside
each forward, so every rank must run the same number of forwards).

Each row's tokens depend only on its own prompt and the random draws, so the rows sampled here are
draws from the same distribution `generate` samples; with `prune=False, share_prompts=False` the
loop consumes the random stream exactly as `generate` does and reproduces its tokens for a seed
(tests/unit/models/test_decoding.py checks both, and the log-prob of every sampled token against a
full forward).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass

import torch
from transformers import DynamicCache, GenerationConfig

from posttrain.models.mla import MLADecoder

# GenerationConfig fields that add a logits processor or stopping rule this loop does not implement:
# any of them away from transformers' default sends the call to `generate`.
_UNSUPPORTED = (
    "repetition_penalty",
    "min_p",
    "typical_p",
    "epsilon_cutoff",
    "eta_cutoff",
    "top_h",
    "no_repeat_ngram_size",
    "encoder_no_repeat_ngram_size",
    "bad_words_ids",
    "sequence_bias",
    "min_length",
    "min_new_tokens",
    "suppress_tokens",
    "begin_suppress_tokens",
    "forced_bos_token_id",
    "forced_eos_token_id",
    "exponential_decay_length_penalty",
    "renormalize_logits",
    "watermarking_config",
    "cache_implementation",
    "stop_strings",
    "max_time",
    "num_beams",
    "penalty_alpha",
    "prompt_lookup_num_tokens",
    "assistant_model",
    "dola_layers",
    "guidance_scale",
)


# Values at which transformers adds no logits processor or stopping rule for a field above (its
# `_get_logits_processor` tests `!= 1.0`, `> 0`, `< 1.0`, ...): TRL passes `repetition_penalty=1.0`
# on every run, and a GenerationConfig saved by a model's authors often spells out the others.
_NO_OP = {
    "repetition_penalty": 1.0,
    "min_p": 0.0,
    "typical_p": 1.0,
    "epsilon_cutoff": 0.0,
    "eta_cutoff": 0.0,
    "no_repeat_ngram_size": 0,
    "encoder_no_repeat_ngram_size": 0,
    "min_length": 0,
    "min_new_tokens": 0,
    "renormalize_logits": False,
    "num_beams": 1,
    "penalty_alpha": 0.0,
    "guidance_scale": 1.0,
    "cache_implementation": "dynamic",  # the DynamicCache this loop decodes with
}


@dataclass(frozen=True)
class Decoding:
    """What to sample: `temperature` 0 decodes greedily (top-k and top-p then ignored)."""

    max_new_tokens: int
    eos_token_ids: tuple[int, ...]
    pad_token_id: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    prune: bool = True  # finished rows leave the batch
    share_prompts: bool = True  # identical prompts prefilled once
    lean: bool = True  # DeepSeek-V3: decode forwards through posttrain.models.mla (absorbed MLA)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass
class Decoded:
    """Per row: the completion's token ids (up to and including the first EOS) and the sampler's
    log-prob of each, log-softmax(logits / temperature) before top-k/top-p (temperature 1 when greedy):
    the distribution a trainer scores the same tokens under."""

    completions: list[list[int]]
    logps: list[list[float]] | None  # None from `generate` (evaluate.sampling's fallback)

    def truncated(self, eos_token_ids: Sequence[int]) -> list[bool]:
        return [not row or row[-1] not in eos_token_ids for row in self.completions]


def supported(*configs: GenerationConfig | None) -> str | None:
    """None when this loop samples what `generate` would under these configs, else the first setting it
    lacks (`generation_config.repetition_penalty=1.1`), for a log line. A field at its no-op value
    (`repetition_penalty=1.0`, which TRL always passes) adds nothing `generate` would run."""
    default = GenerationConfig()
    for config in configs:
        if config is None:
            continue
        for name in _UNSUPPORTED:
            value = getattr(config, name, None)
            if not _no_op(name, value, getattr(default, name, None)):
                return f"generation_config.{name}={value!r}"
    return None


def _no_op(name: str, value, default) -> bool:
    if value is None or value == default:
        return True
    if isinstance(value, list | tuple | dict) and not value:  # bad_words_ids=[], sequence_bias={}
        return True
    return name in _NO_OP and value == _NO_OP[name]


def decode(model, prompts: Sequence[Sequence[int]], settings: Decoding, record=None) -> Decoded:
    """Sample one completion per prompt row (repeat a prompt for several samples); torch's global RNG.

    `record`: a `posttrain.models.replay` recording open around this call; it is told which original
    rows each forward ran (`record.map_rows`), since prefill and pruning change the batch.
    """
    device = next(model.parameters()).device
    rows = len(prompts)
    unique, group = _groups(prompts, settings.share_prompts)
    input_ids, mask = _left_pad(unique, settings.pad_token_id, device)
    position_ids = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
    # As `generate` does: a mask of all ones is dropped, which makes mask creation free.
    padded = bool((mask == 0).any())
    cache = DynamicCache(config=model.config)
    accepts = _accepted(model)
    keep_last = {"logits_to_keep": 1} if "logits_to_keep" in accepts else {}
    cache_key = "cache" if "cache" in accepts else "past_key_values"  # remote code may predate the rename

    out = torch.full((rows, settings.max_new_tokens), settings.pad_token_id, dtype=torch.long, device=device)
    logps = torch.zeros((rows, settings.max_new_tokens), dtype=torch.float32, device=device)
    lengths = torch.full((rows,), settings.max_new_tokens, dtype=torch.long, device=device)
    eos = torch.tensor(settings.eos_token_ids, device=device)
    alive = torch.arange(rows, device=device)  # original row of each batch row
    unfinished = torch.ones(rows, dtype=torch.bool, device=device)

    with torch.inference_mode(), _decode_experts(model), ExitStack() as stack:
        if record is not None:
            record.map_rows(group.to(device))
        logits = model(
            input_ids=input_ids,
            attention_mask=mask if padded else None,
            position_ids=position_ids,
            use_cache=True,
            **{cache_key: cache},
            **keep_last,
        ).logits[:, -1]
        group = group.to(device)
        if len(unique) < rows:  # each row takes its group's prefill
            cache.batch_select_indices(group)
            logits = logits[group]
        mask, position = mask[group], position_ids[group, -1]
        lean = _lean(model, settings)
        if lean is not None:  # from here on the model's forward is the MLA step, which keeps its own cache
            lean.start(cache, mask, settings.max_new_tokens)
            stack.enter_context(lean.installed())
            cache = None
        for step in range(settings.max_new_tokens):
            scores = logits.to(dtype=torch.float32, copy=True)
            token = _pick(scores, settings)
            temperature = settings.temperature if not settings.greedy else 1.0
            tempered = scores / temperature if temperature != 1.0 else scores
            picked = torch.log_softmax(tempered, dim=-1).gather(1, token[:, None]).squeeze(1)
            if not settings.prune:  # finished rows still draw (the random stream stays generate's) but emit pad
                token = torch.where(unfinished[alive], token, settings.pad_token_id)
            out[alive, step] = token
            logps[alive, step] = picked
            ended = torch.isin(token, eos) & unfinished[alive]
            lengths[alive[ended]] = step + 1
            unfinished[alive[ended]] = False
            if step + 1 == settings.max_new_tokens or not bool(unfinished.any()):
                break
            if settings.prune and bool(ended.any()):
                stay = torch.nonzero(~ended).squeeze(1)
                if lean is None:
                    cache.batch_select_indices(stay)
                else:
                    lean.select(stay)
                alive, token, mask, position = alive[stay], token[stay], mask[stay], position[stay]
            position = position + 1
            if record is not None:
                record.map_rows(_batch_row_of(alive, rows))
            if lean is None:
                mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
            # Through the model either way, so its hooks (routing recording, counters) see every forward;
            # the MLA step's rows are all real tokens, so it needs no mask.
            logits = model(
                input_ids=token[:, None],
                attention_mask=mask if padded and lean is None else None,
                position_ids=position[:, None],
                use_cache=True,
                **{cache_key: cache},
            ).logits[:, -1]

    counts = lengths.tolist()
    return Decoded(
        [row[:n] for row, n in zip(out.tolist(), counts)],
        [row[:n] for row, n in zip(logps.tolist(), counts)],
    )


def _lean(model, settings: Decoding) -> MLADecoder | None:
    if not settings.lean:
        return None
    lean = MLADecoder.for_model(model)
    return lean if lean is not None and lean.usable() else None


def _batch_row_of(alive: torch.Tensor, rows: int) -> torch.Tensor:
    """(rows,): each original row's index in a batch of the `alive` rows, -1 for rows not in it."""
    index = torch.full((rows,), -1, dtype=torch.long, device=alive.device)
    index[alive] = torch.arange(len(alive), device=alive.device)
    return index


def _accepted(model) -> set[str]:
    """The keyword arguments the model's forward names (a PEFT wrapper's base model's)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return set(inspect.signature(base.forward).parameters)


def _groups(prompts: Sequence[Sequence[int]], share: bool) -> tuple[list[list[int]], torch.Tensor]:
    """(distinct prompts, each row's index among them); every row its own when not sharing."""
    if not share:
        return [list(p) for p in prompts], torch.arange(len(prompts))
    index: dict[tuple[int, ...], int] = {}
    group = [index.setdefault(tuple(p), len(index)) for p in prompts]
    return [list(p) for p in index], torch.tensor(group)


def _left_pad(prompts: list[list[int]], pad: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Left padding: every prompt ends at the same column, where decoding starts."""
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], dtype=torch.long, device=device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], dtype=torch.long, device=device)
    return ids, mask


def _pick(scores: torch.Tensor, settings: Decoding) -> torch.Tensor:
    """The next token of every row, as transformers' temperature, top-k and top-p warpers then
    multinomial sampling (or argmax) choose it."""
    if settings.greedy:
        return scores.argmax(dim=-1)
    if settings.temperature != 1.0:
        scores = scores / settings.temperature
    if settings.top_k:
        k = min(settings.top_k, scores.shape[-1])
        scores = scores.masked_fill(scores < torch.topk(scores, k)[0][..., -1, None], float("-inf"))
    if settings.top_p < 1.0:
        ordered, order = torch.sort(scores, descending=False)
        cumulative = ordered.softmax(dim=-1).cumsum(dim=-1)
        drop = cumulative <= (1 - settings.top_p)
        drop[..., -1:] = False  # always keep the most likely token
        scores = scores.masked_fill(drop.scatter(1, order, drop), float("-inf"))
    return torch.multinomial(torch.softmax(scores, dim=-1), num_samples=1).squeeze(1)


class _decode_experts:
    """While decoding on an accelerator, grouped_mm experts run as batched_mm, as `generate` switches
    them (few tokens per forward); on the CPU grouped_mm stays, as there."""

    def __init__(self, model) -> None:
        self.model = model
        self.original = None

    def __enter__(self):
        get = getattr(self.model, "get_experts_implementation", None)
        if get is None or self.model.device.type == "cpu":
            return self
        original = get()
        if isinstance(original, dict) and "grouped_mm" in original.values():
            self.original = original
            self.model.set_experts_implementation(
                {k: "batched_mm" if v == "grouped_mm" else v for k, v in original.items()}
            )
        return self

    def __exit__(self, *exc) -> None:
        if self.original is not None:
            self.model.set_experts_implementation(self.original)
