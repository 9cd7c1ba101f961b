"""Offline teacher targets: the teacher's top-k log-probs per trace token, so logit KD runs without it.

They come from one teacher forward pass over each kept trace tokenised exactly as the student will
see it, not from the sampler's scores: those are temperature/top-p warped, and a re-tokenised trace
need not split where the sampled tokens did. Storage is safetensors (no pickle), flat arrays with
per-trace offsets.

The loss compares the two distributions coarsened onto k+1 outcomes -- the teacher's top-k tokens
and "everything else" -- with TRL's generalised JSD. That is exact on the coarsened outcomes and a
lower bound of the full-vocabulary divergence; `gap_stats` measures how much lower.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from posttrain.evaluate.sampling import render_prompt

# exp(-1e-7) ~ 1 - 1e-7: keeps log(1 - mass) finite when the top-k hold (nearly) all the mass.
_MAX_LOG_MASS = -1e-7
GAP_KS = (1, 2, 4, 8, 16, 32, 64)


def encode_trace(tokenizer, prompt, completion: str, template_kwargs=None) -> tuple[list[int], int]:
    """Token ids of prompt + completion + end of turn, and the index where the completion starts.

    The same layout TRL's SFTTrainer trains on (chat template over prompt + assistant message, with
    `data.chat_template_kwargs`).
    """
    head = render_prompt(tokenizer, prompt, template_kwargs)
    if isinstance(prompt, list):
        full = tokenizer.apply_chat_template(
            [*prompt, {"role": "assistant", "content": completion}], tokenize=False, **(template_kwargs or {})
        )
    else:
        full = head + completion + tokenizer.eos_token
    ids = tokenizer(full, add_special_tokens=False)["input_ids"]
    return ids, len(tokenizer(head, add_special_tokens=False)["input_ids"])


@dataclass
class TopKTargets:
    """Row t of `ids`/`logprobs` is the teacher's top-k at one completion token; trace i owns rows
    offsets[i]:offsets[i+1], one per completion token, in order."""

    ids: object  # torch.LongTensor [T, k]
    logprobs: object  # torch.FloatTensor [T, k]
    offsets: object  # torch.LongTensor [n + 1]

    @property
    def k(self) -> int:
        return int(self.ids.shape[1])

    def rows(self, i: int):
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        return self.ids[a:b], self.logprobs[a:b]

    def save(self, path: Path) -> None:

        tmp = path.with_name(path.name + ".tmp")
        save_file(
            {"ids": self.ids.int().contiguous(), "logprobs": self.logprobs.contiguous(), "offsets": self.offsets},
            str(tmp),
        )
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> TopKTargets:

        data = load_file(str(path))
        return cls(data["ids"].long(), data["logprobs"].float(), data["offsets"].long())


def capture(
    model, encoded: Sequence[tuple[list[int], int]], k: int, pad_id: int, batch_size: int = 32, on_batch=None
) -> tuple[TopKTargets, dict]:
    """Teacher top-k log-probs at every completion token of `encoded`, and the top-k gap statistics."""

    ids, logprobs, counts = [], [], []
    gaps = _GapAccumulator(k)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(encoded), batch_size):
            batch = encoded[start : start + batch_size]
            logits = _forward(model, [x for x, _ in batch], pad_id, device)
            # Logits at position p predict token p + 1: completion tokens are predicted from prompt_len - 1
            # on. The batch's completion positions are taken together, so the log-softmax, top-k and gap
            # statistics run once per batch rather than once per trace (per-trace calls cost more than
            # the teacher's forward on small models).
            keep = torch.zeros(logits.shape[:2], dtype=torch.bool, device=logits.device)
            for i, (tokens, prompt_len) in enumerate(batch):
                keep[i, prompt_len - 1 : len(tokens) - 1] = True
            logp = torch.log_softmax(logits[keep].float(), dim=-1)
            top = logp.topk(min(max(k, max(GAP_KS)), logp.shape[-1]), dim=-1)
            ids.append(top.indices[:, :k].cpu())
            logprobs.append(top.values[:, :k].cpu())
            counts.extend(max(len(tokens) - prompt_len, 0) for tokens, prompt_len in batch)
            gaps.add(logp, top.values)
            if on_batch:
                on_batch(len(batch))
    finally:
        model.train(was_training)
    offsets = torch.tensor([0, *counts]).cumsum(0)
    empty = torch.zeros(0, k)
    targets = TopKTargets(torch.cat(ids) if ids else empty.long(), torch.cat(logprobs) if logprobs else empty, offsets)
    return targets, gaps.summary()


def _forward(model, sequences: list[list[int]], pad_id: int, device):

    width = max(len(s) for s in sequences)
    input_ids = torch.tensor([s + [pad_id] * (width - len(s)) for s in sequences], device=device)
    mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in sequences], device=device)
    with torch.inference_mode():
        return model(input_ids=input_ids, attention_mask=mask).logits


class _GapAccumulator:
    """Per-token top-k mass and KL gap, averaged over every completion token, for several k.

    The gap is sum over tokens outside the top-k of p log p - r log(r / (V - k)), with r their total
    mass: exactly how much the full-vocabulary forward KL exceeds the top-k+rest one for a student
    that spreads its own rest mass evenly. Zero when the top-k hold all the teacher's mass.
    """

    def __init__(self, k: int) -> None:
        self.k = k
        self.tokens = 0
        self.sums: dict[int, list[float]] = {}

    def add(self, logp, top_values) -> None:

        vocab = logp.shape[-1]
        neg_entropy = torch.special.xlogy(logp.exp(), logp.exp()).sum(-1)
        p_top = top_values.exp()
        for k in sorted({*[g for g in GAP_KS if g < vocab], min(self.k, vocab)}):
            if k > top_values.shape[-1]:
                continue
            mass = p_top[:, :k].sum(-1).clamp(max=1.0)
            rest = (1.0 - mass).clamp(min=0.0)
            rest_neg_entropy = neg_entropy - torch.special.xlogy(p_top[:, :k], p_top[:, :k]).sum(-1)
            lifted = torch.special.xlogy(rest, rest / max(vocab - k, 1))
            gap = (rest_neg_entropy - lifted).clamp(min=0.0)
            acc = self.sums.setdefault(k, [0.0, 0.0, 0.0])
            acc[0] += float(mass.sum())
            acc[1] += float(gap.sum())
            acc[2] = max(acc[2], float(gap.max())) if gap.numel() else acc[2]
        self.tokens += logp.shape[0]

    def summary(self) -> dict:
        n = max(self.tokens, 1)
        by_k = {
            k: {"teacher_mass": round(m / n, 6), "kl_gap_nats": round(g / n, 6), "kl_gap_max": round(mx, 6)}
            for k, (m, g, mx) in sorted(self.sums.items())
        }
        chosen = by_k.get(self.k) or by_k[max(by_k)] if by_k else {}
        return {"k": self.k, "tokens": self.tokens, **chosen, "by_k": by_k}


def log1mexp(x):
    """log(1 - exp(x)) for x <= 0, stable at both ends (Maechler 2012)."""

    x = x.clamp(max=_MAX_LOG_MASS)
    return torch.where(x > -math.log(2), torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def coarsen(logp_top):
    """[..., k] log-probs of the top-k -> [..., k + 1] log-probs with the rest of the mass appended."""

    rest = log1mexp(torch.logsumexp(logp_top, dim=-1, keepdim=True))
    return torch.cat([logp_top, rest], dim=-1)


def topk_divergence(student_logits, target_ids, target_logprobs, labels, beta: float, num_items_in_batch=None):
    """Generalised JSD(beta) between teacher top-k targets and the student, per completion token.

    `student_logits` [B, L, V] and the targets [B, L, k] are aligned (position p predicts token
    p + 1); `labels` [B, L] is -100 where there is no target. beta 0 = KL(teacher||student),
    1 = KL(student||teacher), as in TRL.
    """

    student_top = torch.log_softmax(student_logits.float(), dim=-1).gather(-1, target_ids)
    # TRL's loss applies log_softmax to what it is given; on normalised log-probs that is the identity,
    # so the coarsened distributions pass through unchanged.
    return gkd_trainer_class().generalized_jsd_loss(
        coarsen(student_top),
        coarsen(target_logprobs.float()),
        labels=labels,
        beta=beta,
        num_items_in_batch=num_items_in_batch,
    )


def gkd_trainer_class():
    """TRL's GKDTrainer (see `gkd_classes`)."""
    return gkd_classes()[1]


def gkd_classes():
    """(GKDConfig, GKDTrainer), imported without TRL's "experimental API" warning: we chose them
    knowingly -- GKD is TRL's trainer with an on-policy fraction lambda (trl.DistillationTrainer is
    on-policy only) -- and the warning would print on every run."""

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*trl.experimental.*")
        from trl.experimental.gkd import GKDConfig, GKDTrainer
    return GKDConfig, GKDTrainer
