"""MoE experts that skip padding: in a padded batch, pad tokens go through the router but not the experts.

A GRPO batch is padded twice -- prompts on the left, completions on the right to the longest one --
and the log-prob passes (the policy's, through backward, and the KL reference's) run every pad token
through every layer. No real token ever reads a pad's hidden state: left padding is masked out of
attention, and right padding comes after the last real token under a causal mask. So the experts can
leave pad tokens out (their output there is zero) without changing any real token's output or gradient
(tests/unit/models/test_padding.py checks log-probs and gradients equal). The router still sees every
token, so router logits, the load-balancing loss, routing replay and the routing counters are as before.

`SkipPadding(model).attach()` hooks the model (its 2-D `attention_mask` per forward) and each experts
module of transformers' MoE families (`@use_experts_implementation`: `(hidden, top_k_index,
top_k_weights)` in, `(tokens, hidden)` out). Forwards without padding, or whose tokens do not line up
with the mask, run unchanged. Not for gradient-checkpointed models: recomputation in backward would
see the mask of a later forward.

Measured and not adopted: running each distinct prompt of a GRPO batch once in these passes (a prefill
of the shared columns, its KV cache gathered to the group's rows, then a cached forward of every
completion) is exact, but on the quickstart's tiny MoE it saved nothing (benchmarks/bench_grpo.py's
median optimisation phase 0.112 and 0.110 s per step with it, 0.113 and 0.108 without, alternating
12-step runs, seed 0, Xeon, 2026-12-06): the experts' cost there is per call, not per token, and the
second forward adds calls.
"""

from __future__ import annotations

import torch

from posttrain.models.moe import in_backward


def experts_modules(model) -> list[torch.nn.Module]:
    """transformers' experts modules (the classes `use_experts_implementation` decorates)."""
    return [m for m in model.modules() if hasattr(m, "has_gate") and hasattr(m, "is_transposed")]


class SkipPadding:
    def __init__(self, model) -> None:
        self.model = model
        self.experts = experts_modules(model)
        self._keep: torch.Tensor | None = None  # (tokens,) bool of the newest model forward, None: no padding
        self._index: dict[int, torch.Tensor] = {}  # per experts module: the real tokens of its current call
        self._handles: list = []
        self.skipped = 0  # pad tokens the experts did not compute (for tests and logs)

    def attach(self) -> SkipPadding:
        if self._handles or not self.experts:
            return self
        self._handles.append(self.model.register_forward_pre_hook(self._remember, with_kwargs=True))
        for module in self.experts:
            self._handles.append(module.register_forward_pre_hook(self._drop))
            self._handles.append(module.register_forward_hook(self._restore))
        return self

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles, self._keep, self._index = [], None, {}

    def _remember(self, module, args, kwargs) -> None:
        mask = kwargs.get("attention_mask")
        if mask is None or not isinstance(mask, torch.Tensor) or mask.dim() != 2 or bool(mask.all()):
            self._keep = None
        else:
            self._keep = mask.reshape(-1).bool()

    def _drop(self, module, args):
        keep = self._keep
        hidden = args[0]
        if keep is None or len(args) < 3 or hidden.dim() != 2 or keep.numel() != hidden.shape[0] or in_backward():
            self._index.pop(id(module), None)
            return None
        index = torch.nonzero(keep.to(hidden.device)).squeeze(1)
        self._index[id(module)] = index
        self.skipped += hidden.shape[0] - index.numel()
        return (hidden[index], args[1][index], args[2][index], *args[3:])

    def _restore(self, module, args, output):
        index = self._index.pop(id(module), None)
        if index is None:
            return None
        full = output.new_zeros((self._keep.numel(), output.shape[-1]))
        return full.index_copy(0, index, output)
