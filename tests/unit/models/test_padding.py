"""Experts that skip padding (posttrain.models.padding): on every MoE family, a padded batch's real tokens
get the same log-probs and every parameter the same gradient, while the experts compute fewer tokens."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from posttrain.config.builders import MOE_FAMILIES
from posttrain.models.builders import build_model
from posttrain.models.padding import SkipPadding, experts_modules

TINY = json.loads((Path(__file__).resolve().parents[2] / "fixtures" / "tiny_models.json").read_text())["tiny_moe"]


def batch(pad: int):
    """Left-padded prompts, right-padded completions: the layout of TRL's log-prob passes."""
    rows = [([5, 6, 7, 8], [30, 31, 32]), ([9, 10], [33, 34, 35, 36, 37]), ([11, 12, 13], [38])]
    width, length = max(len(p) for p, _ in rows), max(len(c) for _, c in rows)
    ids = [[pad] * (width - len(p)) + p + c + [pad] * (length - len(c)) for p, c in rows]
    mask = [[0] * (width - len(p)) + [1] * (len(p) + len(c)) + [0] * (length - len(c)) for p, c in rows]
    return torch.tensor(ids), torch.tensor(mask)


def scored(model, ids, mask):
    """Sum of every real next-token log-prob, its per-token values, and the gradients of the sum."""
    model.zero_grad()
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
    logps = torch.log_softmax(logits.float(), dim=-1).gather(-1, ids[:, 1:, None]).squeeze(-1)
    real = (mask[:, :-1] * mask[:, 1:]).bool()  # a real token predicting a real token
    logps[real].sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return logps[real].detach(), grads


@pytest.mark.parametrize("family", MOE_FAMILIES)
def test_skipping_padding_changes_no_real_tokens_log_prob_or_any_gradient(char_tokenizer, family):
    model = build_model("tiny-moe", char_tokenizer, seed=0, family=family, **TINY).train()
    for m in model.modules():  # dropout off, so the two passes are comparable
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    ids, mask = batch(char_tokenizer.pad_token_id)
    full_logps, full_grads = scored(model, ids, mask)
    skip = SkipPadding(model).attach()
    seen = []  # the tokens each experts module computed (these hooks run after the skipping one)
    hooks = [m.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[0])) for m in experts_modules(model)]
    try:
        logps, grads = scored(model, ids, mask)
    finally:
        skip.detach()
        for hook in hooks:
            hook.remove()
    assert skip.skipped == int((mask == 0).sum()) * len(experts_modules(model))
    assert seen == [int(mask.sum())] * len(experts_modules(model)) and int(mask.sum()) < mask.numel()
    assert torch.allclose(logps, full_logps, atol=1e-6)
    assert grads.keys() == full_grads.keys()
    for name, grad in grads.items():
        assert torch.allclose(grad, full_grads[name], atol=1e-6), name


def test_a_batch_without_padding_runs_unchanged(char_tokenizer):
    model = build_model("tiny-moe", char_tokenizer, seed=0, **TINY)
    skip = SkipPadding(model).attach()
    with torch.no_grad():
        model(input_ids=torch.tensor([[5, 6, 7]]), attention_mask=torch.ones(1, 3, dtype=torch.long))
        model(input_ids=torch.tensor([[5, 6, 7]]))
    skip.detach()
    assert skip.skipped == 0
