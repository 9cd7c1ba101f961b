"""The decode loop (posttrain.models.decoding): generate's tokens for a seed when it neither prunes nor
shares, generate's greedy tokens when it does, the exact log-prob of every sampled token on every family,
batches that really shrink, routing records that line up, and the settings it hands to generate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import GenerationConfig

from posttrain.config.builders import MOE_FAMILIES
from posttrain.evaluate.sampling import SamplingSettings, _needs_generate
from posttrain.models.builders import build_model
from posttrain.models.decoding import Decoding, decode, supported
from posttrain.models.replay import RoutingReplay

TINY = json.loads((Path(__file__).resolve().parents[2] / "fixtures" / "tiny_models.json").read_text())["tiny_moe"]
# Unequal lengths (left padding), each prompt three times (a GRPO group).
PROMPTS = [p for p in ([5, 6, 7, 8, 9], [10, 11], [12, 13, 14]) for _ in range(3)]
# Many end tokens, so random-init rows finish at different steps and the batch shrinks.
ENDS = tuple(range(20, 50))


def moe(family: str, char_tokenizer):
    return build_model("tiny-moe", char_tokenizer, seed=0, family=family, **TINY).eval()


def with_generate(model, prompts, settings: Decoding) -> list[list[int]]:
    width = max(map(len, prompts))
    pad = settings.pad_token_id
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    sample = (
        {"do_sample": False}
        if settings.greedy
        else {"do_sample": True, "temperature": settings.temperature, "top_p": settings.top_p, "top_k": settings.top_k}
    )
    with torch.no_grad():
        out = model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=settings.max_new_tokens,
            pad_token_id=pad,
            eos_token_id=list(settings.eos_token_ids),
            **sample,
        )
    rows = out[:, width:].tolist()
    cut = lambda row: next((i + 1 for i, t in enumerate(row) if t in settings.eos_token_ids), len(row))  # noqa: E731
    return [row[: cut(row)] for row in rows]


def seeded(fn, seed=7):
    torch.manual_seed(seed)
    return fn()


@pytest.mark.parametrize(
    "sampling",
    [{"temperature": 1.0}, {"temperature": 0.7, "top_p": 0.9}, {"temperature": 1.3, "top_k": 5}, {"temperature": 0}],
    ids=["t1", "top-p", "top-k", "greedy"],
)
def test_without_pruning_or_sharing_the_loop_draws_generates_tokens(char_tokenizer, sampling):
    model = moe("deepseek_v3", char_tokenizer)
    settings = Decoding(12, ENDS, char_tokenizer.pad_token_id, prune=False, share_prompts=False, **sampling)
    theirs = seeded(lambda: with_generate(model, PROMPTS, settings))
    ours = seeded(lambda: decode(model, PROMPTS, settings).completions)
    assert ours == theirs
    if sampling["temperature"]:  # an untrained model's greedy rows may all run to the limit
        assert len({len(c) for c in ours}) > 2  # rows ended at different steps


@pytest.mark.parametrize("family", ["deepseek_v3", "qwen3_moe", "gpt_oss"])
def test_pruned_shared_greedy_decoding_is_generates(char_tokenizer, family):
    model = moe(family, char_tokenizer)
    settings = Decoding(12, ENDS, char_tokenizer.pad_token_id, temperature=0)
    assert decode(model, PROMPTS, settings).completions == with_generate(model, PROMPTS, settings)


@pytest.mark.parametrize("family", [*MOE_FAMILIES, "dense"])
def test_every_sampled_token_has_the_log_prob_a_full_forward_gives_it(char_tokenizer, family):
    model = (
        build_model("tiny-dense", char_tokenizer, seed=0, family="qwen3").eval()
        if family == "dense"
        else moe(family, char_tokenizer)
    )
    settings = Decoding(12, ENDS, char_tokenizer.pad_token_id, temperature=0.8)
    decoded = seeded(lambda: decode(model, PROMPTS, settings))
    gaps = []
    with torch.no_grad():
        for prompt, completion, logps in zip(PROMPTS, decoded.completions, decoded.logps):
            assert len(logps) == len(completion) >= 1
            logits = model(input_ids=torch.tensor([prompt + completion])).logits[0, len(prompt) - 1 : -1]
            full = torch.log_softmax(logits.float() / settings.temperature, dim=-1)
            gaps.append((full.gather(1, torch.tensor(completion)[:, None]).squeeze(1) - torch.tensor(logps)).abs())
    assert torch.cat(gaps).max() < 1e-4


@pytest.mark.parametrize("lean", [True, False], ids=["mla-step", "model-forward"])
def test_distinct_prompts_are_prefilled_once_and_finished_rows_leave_the_batch(char_tokenizer, lean):
    model = moe("deepseek_v3", char_tokenizer)
    batches = []
    # The first router sees every forward's tokens, through transformers' forward or the MLA step.
    block = model.model.layers[0].mlp.gate
    hook = block.register_forward_pre_hook(lambda m, args: batches.append(args[0].shape[:2]))
    try:
        settings = Decoding(12, ENDS, char_tokenizer.pad_token_id, lean=lean)
        decoded = seeded(lambda: decode(model, PROMPTS, settings))
    finally:
        hook.remove()
    assert batches[0] == (3, 5)  # three distinct prompts, the longest 5 tokens
    sizes = [shape[0] for shape in batches[1:]]
    assert sizes[0] <= len(PROMPTS) and sizes == sorted(sizes, reverse=True) and sizes[-1] < sizes[0]
    unfinished = [sum(len(c) > step + 1 for c in decoded.completions) for step in range(len(sizes))]
    assert sizes == unfinished  # each decode forward ran exactly the rows still decoding


def test_a_routing_recording_of_the_loop_lines_up_with_a_full_forward(char_tokenizer):
    model = moe("qwen3_moe", char_tokenizer)
    replay = RoutingReplay(model, temperature=1.0)
    with replay.recording() as record:
        decoded = seeded(lambda: decode(model, PROMPTS, Decoding(12, ENDS, char_tokenizer.pad_token_id), record))
    rollout = replay.rollout(record, PROMPTS, decoded.completions, decoded.logps)
    assert rollout.logps == decoded.logps
    width, length = max(map(len, PROMPTS)), max(map(len, decoded.completions))
    pad = char_tokenizer.pad_token_id
    ids = torch.tensor(
        [[pad] * (width - len(p)) + p + c + [pad] * (length - len(c)) for p, c in zip(PROMPTS, decoded.completions)]
    )
    experts = rollout.aligned(ids, length)
    # Every prompt token and every fed completion token routed; the last sampled token never fed.
    for i, (p, c) in enumerate(zip(PROMPTS, decoded.completions)):
        known = (experts[i, :, 0, 0] >= 0).nonzero().flatten().tolist()
        assert known == list(range(width - len(p), width + len(c) - 1))
    replay.target(None, replay=False, reference=experts)
    with torch.no_grad():
        model(input_ids=ids, attention_mask=(ids != pad).long())  # the pad id is not among the tokens
    stats = replay.take_stats()
    replay.clear()
    assert stats.pairs > 0 and stats.flip_rate < 0.02  # fp32: the loop routed as the full forward does


def test_settings_the_loop_lacks_go_to_generate(char_tokenizer):
    assert supported(GenerationConfig(do_sample=True, temperature=0.7, top_p=0.9, top_k=20)) is None
    assert supported(GenerationConfig(repetition_penalty=1.1)) == "generation_config.repetition_penalty=1.1"
    assert supported(None, GenerationConfig(min_p=0.05)) == "generation_config.min_p=0.05"
    # No-op values add no processor in generate: TRL passes repetition_penalty=1.0 on every GRPO run.
    neutral = GenerationConfig(repetition_penalty=1.0, min_p=0.0, typical_p=1.0, num_beams=1, bad_words_ids=[])
    assert supported(neutral, GenerationConfig(no_repeat_ngram_size=0, cache_implementation="dynamic")) is None
    assert supported(GenerationConfig(typical_p=0.9)) == "generation_config.typical_p=0.9"
    model = moe("deepseek_v3", char_tokenizer)
    assert _needs_generate(model, SamplingSettings()) is None
    assert _needs_generate(model, SamplingSettings(cache="static")) == "generation.cache=static"
    assert _needs_generate(model, SamplingSettings(sampler="generate")) == "generation.sampler=generate"
    model.generation_config.no_repeat_ngram_size = 3  # a Hub model's own generation_config.json
    assert _needs_generate(model, SamplingSettings()) == "generation_config.no_repeat_ngram_size=3"
