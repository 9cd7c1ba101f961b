"""The two logit-KD trainers and the batches they share; imported only when logit KD runs (TRL, torch).

`OnlineKDTrainer` is TRL's GKDTrainer (teacher in memory, on-policy fraction lambda). TRL has no
trainer for stored top-k targets, so `TopKDistillTrainer` is an SFTTrainer whose loss is TRL's
generalised JSD on the coarsened top-k distributions (`posttrain.distill.topk`). Both add the MoE
load-balancing loss (`moe.balancing: aux_loss`) that their KD losses would otherwise leave out.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from trl import SFTTrainer

from posttrain.distill.topk import TopKTargets, gkd_trainer_class, topk_divergence
from posttrain.trl_adapter import AtomicCheckpoints, check_attributes, check_trainer_class, count_tokens, with_aux_loss

GKDTrainer = gkd_trainer_class()


@dataclass
class TraceCollator:
    """Rows `{"input_ids", "prompt_len", "index"}` -> right-padded sequences with labels on the
    completion only; left-padded prompts for on-policy sampling (GKD); and, with `targets`, the
    teacher's top-k aligned so that position p holds the target for token p + 1."""

    pad_id: int
    targets: TopKTargets | None = None

    def __call__(self, rows: list[dict]) -> dict:
        width = max(len(r["input_ids"]) for r in rows)
        prompt_width = max(r["prompt_len"] for r in rows)
        batch = {
            "input_ids": torch.full((len(rows), width), self.pad_id, dtype=torch.long),
            "attention_mask": torch.zeros((len(rows), width), dtype=torch.long),
            "labels": torch.full((len(rows), width), -100, dtype=torch.long),
            "prompts": torch.full((len(rows), prompt_width), self.pad_id, dtype=torch.long),
            "prompt_attention_mask": torch.zeros((len(rows), prompt_width), dtype=torch.long),
        }
        if self.targets is not None:
            batch["target_ids"] = torch.zeros((len(rows), width, self.targets.k), dtype=torch.long)
            batch["target_logprobs"] = torch.zeros((len(rows), width, self.targets.k))
        for i, row in enumerate(rows):
            ids, start = torch.tensor(row["input_ids"]), row["prompt_len"]
            batch["input_ids"][i, : len(ids)] = ids
            batch["attention_mask"][i, : len(ids)] = 1
            batch["labels"][i, start : len(ids)] = ids[start:]
            batch["prompts"][i, prompt_width - start :] = ids[:start]
            batch["prompt_attention_mask"][i, prompt_width - start :] = 1
            if self.targets is not None:
                top_ids, top_lp = self.targets.rows(row["index"])
                n = min(len(top_ids), len(ids) - start)  # a trace cut at max_length keeps its first n targets
                batch["target_ids"][i, start - 1 : start - 1 + n] = top_ids[:n]
                batch["target_logprobs"][i, start - 1 : start - 1 + n] = top_lp[:n]
        return batch


class TopKDistillTrainer(AtomicCheckpoints, SFTTrainer):
    """Logit KD against stored teacher top-k log-probs: no teacher model anywhere."""

    def __init__(self, *args, beta: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        check_attributes(self)
        self.beta = beta

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        count_tokens(self, inputs["attention_mask"])
        outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
        loss = topk_divergence(
            outputs.logits[:, :-1],
            inputs["target_ids"][:, :-1],
            inputs["target_logprobs"][:, :-1],
            inputs["labels"][:, 1:],
            self.beta,
            num_items_in_batch=num_items_in_batch,
        )
        loss = with_aux_loss(self, loss, outputs, num_items_in_batch)
        return (loss, outputs) if return_outputs else loss


class OnlineKDTrainer(AtomicCheckpoints, GKDTrainer):
    """TRL's GKD (teacher beside the student, full vocabulary), with tokens counted for metrics."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        check_attributes(self)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        count_tokens(self, inputs["attention_mask"])
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        loss = with_aux_loss(self, loss, outputs, num_items_in_batch)
        return (loss, outputs) if return_outputs else loss


check_trainer_class(TopKDistillTrainer)
check_trainer_class(OnlineKDTrainer)
