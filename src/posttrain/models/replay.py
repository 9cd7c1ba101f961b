"""Routing replay for MoE policies, and the training-inference mismatch it removes.

An MoE picks its top-k experts again in every forward. Sampling (KV-cache decoding, one token at a
time, its own batch shapes and precision) and the training forward (whole sequences at once) can
pick different experts for the same token, and a flipped choice moves that token's probability far
more than numeric noise does: the importance ratio then mixes policy change with routing noise.
Routing replay forces the training forward to use recorded experts -- the rollout's (R3) or the old
policy's (R2) -- while the gate weights still come from the live router logits
(`moe.gate_weights`), so the router keeps its gradient and the loss-free bias counts the replayed
selection. It works through the routing hook of `posttrain.models.moe`, hence for every family
that module knows (sigmoid routers with a correction bias, softmax top-k, top-k-softmax).

`RoutingReplay(model)` owns one override per router:

- `recording()` around `generate`: each router's experts for every prompt token and every fed
  token, the fed token ids, and the sampler's log-prob of each sampled token
  (log-softmax of logits / temperature, before top-p: the distribution the trainer scores);
  `.rollout(prompt_ids, completion_ids)` cuts it into rows.
- `recording()` around full-sequence forwards (R2's old-policy pass): `.aligned(input_ids)`.
- `Rollout.aligned(input_ids, logits_to_keep)`: the experts in the trainer's layout
  (left-padded prompt, right-padded completion), (batch, positions, layers, k), -1 where no forward
  routed the token (padding, the last sampled token). The token ids are checked against the
  batch's, so a misaligned batch raises instead of replaying the wrong experts.
- `target(experts, replay, reference)`: the following forwards -- and their gradient-checkpoint
  recomputation during backward -- use `experts` where known (`replay`), and count, against
  `reference`, how often the selection used and the router's own choice differ (`take_stats`).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from posttrain.errors import PosttrainError
from posttrain.models.moe import ROUTING_OVERRIDE, MoELayer, find_moe_layers, in_backward, install_routing_hook

UNKNOWN = -1  # no recorded expert for this (token, layer): the router's own choice stands


class RoutingMismatchError(PosttrainError):
    """Recorded routing does not line up with the batch it is replayed on."""


@dataclass
class RowRecord:
    """One sequence as the sampler saw it: prompt tokens, then the completion tokens it fed back."""

    prompt_len: int
    tokens: torch.Tensor  # (T,) the token ids that went through a forward
    experts: torch.Tensor  # (T, layers, k) int16
    logps: list[float]  # the sampler's log-prob of every completion token


@dataclass
class Rollout:
    rows: list[RowRecord]
    num_layers: int
    top_k: int

    @property
    def logps(self) -> list[list[float]]:
        return [row.logps for row in self.rows]

    def aligned(self, input_ids: torch.Tensor, logits_to_keep: int) -> torch.Tensor:
        """(B, S, layers, k) int16 in the layout of `input_ids` (B, S): prompts end at S - logits_to_keep."""
        batch, width = input_ids.shape
        if batch != len(self.rows):
            raise RoutingMismatchError(
                f"routing replay: the batch has {batch} sequences, the rollout recorded {len(self.rows)}"
            )
        prompt_end = width - logits_to_keep
        out = torch.full((batch, width, self.num_layers, self.top_k), UNKNOWN, dtype=torch.int16)
        ids = input_ids.detach().cpu()
        for i, row in enumerate(self.rows):
            start, end = prompt_end - row.prompt_len, prompt_end - row.prompt_len + row.tokens.numel()
            if start < 0 or end > width or not torch.equal(ids[i, start:end], row.tokens):
                raise RoutingMismatchError(
                    f"routing replay: sequence {i} of the batch is not the one the rollout routed "
                    f"(prompt {row.prompt_len} tokens ending at position {prompt_end}, {row.tokens.numel()} routed tokens, "
                    f"batch width {width}); refusing to replay misaligned experts"
                )
            out[i, start:end] = row.experts
        return out.to(input_ids.device)


@dataclass
class _Recording:
    """What the hooks saw during one `recording()` block."""

    temperature: float
    ids: list[torch.Tensor] = field(default_factory=list)  # per forward: (B, s) fed token ids
    masks: list[torch.Tensor | None] = field(default_factory=list)  # per forward: its 2-D attention mask
    experts: list[list[torch.Tensor]] = field(default_factory=list)  # per layer, per forward: (B*s, k)
    picked: list[torch.Tensor] = field(default_factory=list)  # per decode step: (B,) log-prob of the fed token
    last_logps: torch.Tensor | None = None  # (B, V) of the newest forward

    # per forward of `models.decoding.decode`: each original row's batch row in it, -1 when absent
    # (its prefill runs each distinct prompt once; finished rows leave the batch). Empty under `generate`.
    row_maps: list[torch.Tensor] = field(default_factory=list)

    def map_rows(self, batch_row: torch.Tensor) -> None:
        """Called by the decode loop before each forward, with (rows,) batch-row indices."""
        self.row_maps.append(batch_row.detach())

    def rollout(
        self,
        prompt_ids: list[list[int]],
        completion_ids: list[list[int]],
        top_k: int,
        logps: list[list[float]] | None = None,
    ) -> Rollout:
        """Rows of one decoding call: a prefill forward, then one forward per fed token. `logps`: the
        sampler's own log-probs (the decode loop's), else read off the recorded logits (`generate`)."""
        if not self.ids:
            raise RoutingMismatchError("routing replay: no forward was recorded during generation")
        batch = len(prompt_ids)
        maps = self.row_maps or [torch.arange(ids.shape[0], device=ids.device) for ids in self.ids]
        if len(maps) != len(self.ids) or maps[0].numel() != batch or len(completion_ids) != batch:
            raise RoutingMismatchError(
                f"routing replay: generation ran {maps[0].numel()} sequences, TRL returned {len(prompt_ids)}"
            )
        prompt_width, decoded = self.ids[0].shape[1], len(self.ids) - 1
        fed, experts, present = self._per_row(maps, batch, top_k)
        mask = self.masks[0]
        logps = self._logps(completion_ids) if logps is None else logps
        rows = []
        for i in range(batch):
            src = int(maps[0][i])
            real = (
                torch.arange(prompt_width)
                if mask is None
                else torch.nonzero(mask[src].cpu().bool(), as_tuple=False).flatten()
            )
            n_fed = min(len(completion_ids[i]), decoded, int(present[i]))
            positions = torch.cat([real, torch.arange(prompt_width, prompt_width + n_fed)])
            tokens = fed[i, positions]
            want = torch.tensor(list(prompt_ids[i]) + list(completion_ids[i][:n_fed]), dtype=tokens.dtype)
            if not torch.equal(tokens, want):
                raise RoutingMismatchError(
                    f"routing replay: sequence {i}'s recorded tokens differ from the prompt and completion TRL returned"
                )
            rows.append(RowRecord(len(prompt_ids[i]), tokens, experts[i, positions], logps[i]))
        return Rollout(rows, len(self.experts), top_k)

    def _per_row(self, maps: list[torch.Tensor], batch: int, top_k: int):
        """(fed token ids (B, P + D), experts (B, P + D, layers, k) int16, decode forwards each row was in (B,)),
        gathered from every forward by the row maps: the prefill's P columns, then the newest token of
        each of the D decode forwards (-1 where a row was not in that forward)."""
        prompt_width, decoded = self.ids[0].shape[1], len(self.ids) - 1
        layers = len(self.experts)
        fed = torch.full((batch, prompt_width + decoded), UNKNOWN, dtype=torch.long)
        experts = torch.full((batch, prompt_width + decoded, layers, top_k), UNKNOWN, dtype=torch.int16)
        present = torch.zeros(batch, dtype=torch.long)
        src = maps[0].cpu()
        fed[:, :prompt_width] = self.ids[0].cpu()[src]
        for slot, layer in enumerate(self.experts):
            experts[:, :prompt_width, slot] = layer[0].reshape(-1, prompt_width, top_k).cpu()[src].to(torch.int16)
        if not decoded:
            return fed, experts, present
        # All decode forwards at once: forward s's rows sit at offsets[s] + (their batch row) in the
        # concatenation of every forward's newest column.
        counts = torch.tensor([ids.shape[0] for ids in self.ids[1:]])
        offsets = torch.cumsum(counts, 0) - counts
        index = torch.stack([m.cpu() for m in maps[1:]])  # (D, B), -1 where a row was absent
        valid = index >= 0
        flat = (offsets[:, None] + index).clamp_(min=0)
        present = valid.sum(0)
        newest = torch.cat([ids[:, -1].cpu() for ids in self.ids[1:]])
        fed[:, prompt_width:] = torch.where(valid, newest[flat], UNKNOWN).T
        for slot, layer in enumerate(self.experts):
            steps = layer[1:]
            if all(ids.shape[1] == 1 for ids in self.ids[1:]):  # one token per row each forward: no slicing
                newest = torch.cat(steps).cpu()
            else:
                newest = torch.cat(
                    [e.reshape(ids.shape[0], -1, top_k)[:, -1] for e, ids in zip(steps, self.ids[1:])]
                ).cpu()
            gathered = torch.where(valid[..., None], newest[flat].to(torch.int16), UNKNOWN)  # (D, B, k)
            experts[:, prompt_width:, slot] = gathered.transpose(0, 1)
        return fed, experts, present

    def aligned(self, top_k: int) -> torch.Tensor:
        """Full-sequence forwards (chunks of one batch, same width): (B, S, layers, k), -1 on padding."""
        widths = {ids.shape[1] for ids in self.ids}
        if len(widths) != 1:
            raise RoutingMismatchError(f"routing replay: recorded forwards of different widths {sorted(widths)}")
        batch = sum(ids.shape[0] for ids in self.ids)
        width = widths.pop()
        out = torch.stack([torch.cat(layer).reshape(batch, width, top_k) for layer in self.experts], dim=2).to(
            torch.int16
        )
        if all(m is not None for m in self.masks):
            pad = torch.cat(self.masks).to(out.device) == 0
            out[pad] = UNKNOWN
        return out

    def _logps(self, completions: list[list[int]]) -> list[list[float]]:
        """The sampler's log-prob of every completion token: step j's distribution at token j."""
        picked = torch.stack(self.picked, dim=1).cpu().tolist() if self.picked else [[] for _ in completions]
        steps = len(self.picked)
        out = []
        for i, completion in enumerate(completions):
            row = picked[i][: len(completion)]
            if len(completion) > steps and self.last_logps is not None:  # the last token: sampled, never fed
                row.append(float(self.last_logps[i, completion[steps]]))
            out.append(row)
        return out


@dataclass
class _Target:
    experts: torch.Tensor | None  # (B*S, layers, k) long: the selection to force, -1 unknown
    reference: torch.Tensor | None  # (B*S, layers, k) long: what flips are counted against
    replay: bool
    # Counts stay on the device until `take_stats` (no host sync per router call).
    pairs: torch.Tensor | int = 0
    flipped: torch.Tensor | int = 0  # (token, layer) pairs whose used selection differs from the reference
    router_flipped: torch.Tensor | int = 0  # ... whose router's own choice differs
    token_flip: torch.Tensor | None = None  # (B*S,) bool: a flip in any layer
    known: torch.Tensor | None = None  # (B*S,) bool: tokens with a reference


@dataclass
class FlipStats:
    pairs: int
    tokens: int
    flip_rate: float  # of (token, MoE layer) pairs: the selection the forward used vs the reference
    token_flip_rate: float  # of tokens: a flip in any layer
    router_flip_rate: float  # the router's own choice vs the reference (what replay prevented)


class RoutingReplay:
    """Recording and replay for one model's routers (`moe.find_moe_layers`); see the module docstring.

    A dense model gets no routers: recording still yields the sampler's log-probs, and targets are no-ops.
    """

    def __init__(self, model, temperature: float = 1.0, layers: list[MoELayer] | None = None) -> None:
        self.model = model
        self.temperature = temperature
        self.layers = find_moe_layers(model) if layers is None else layers
        tops = {layer.top_k for layer in self.layers}
        if len(tops) > 1:
            raise RoutingMismatchError(f"routing replay: routers with different top-k {sorted(tops)}")
        self.top_k = tops.pop() if tops else 0
        self._record: _Recording | None = None
        self._target: _Target | None = None
        install_routing_hook(self.layers)
        for slot, layer in enumerate(self.layers):
            setattr(layer.router, ROUTING_OVERRIDE, self._override(slot))

    # -- recording -------------------------------------------------------------------------------

    @contextmanager
    def recording(self):
        """Record every forward inside the block; yields the `_Recording` (`.rollout(...)`, `.aligned()`)."""
        self._target = None
        record = _Recording(self.temperature, experts=[[] for _ in self.layers])
        handles = [
            self.model.register_forward_pre_hook(self._remember_inputs, with_kwargs=True),
            self.model.register_forward_hook(self._remember_logits),
        ]
        self._record = record
        try:
            yield record
        finally:
            self._record = None
            for handle in handles:
                handle.remove()

    @property
    def active(self) -> _Recording | None:
        """The recording open now (a decode loop inside it reports its batches to it), else None."""
        return self._record

    def rollout(self, record: _Recording, prompt_ids, completion_ids, logps=None) -> Rollout:
        return record.rollout(prompt_ids, completion_ids, self.top_k, logps)

    def captured(self, record: _Recording) -> torch.Tensor:
        return record.aligned(self.top_k)

    def _remember_inputs(self, module, args, kwargs):
        record = self._record
        ids = kwargs.get("input_ids", args[0] if args else None)
        if record is None or ids is None:
            return
        # The decode loop reports its own log-probs, and its batches change shape between forwards.
        if record.last_logps is not None and ids.shape[1] >= 1 and not record.row_maps:
            record.picked.append(record.last_logps.gather(1, ids[:, -1:].to(record.last_logps.device)).squeeze(1))
        mask = kwargs.get("attention_mask")
        record.ids.append(ids.detach())
        record.masks.append(mask.detach() if mask is not None and mask.dim() == 2 else None)

    def _remember_logits(self, module, args, output):
        record = self._record
        logits = getattr(output, "logits", None)
        if record is None or logits is None or record.row_maps:
            return
        record.last_logps = torch.log_softmax(logits[:, -1].detach().float() / self.temperature, dim=-1)

    # -- replay ----------------------------------------------------------------------------------

    def target(self, experts: torch.Tensor | None, *, replay: bool, reference: torch.Tensor | None = None) -> None:
        """Until `clear()`: forwards of (B, S) tokens force `experts` (B, S, layers, k) where known (when
        `replay`) and count flips against `reference` (same shape). Stays set through backward, so a
        gradient-checkpointed layer recomputes with the same experts."""
        if not self.layers or (experts is None and reference is None):
            self._target = None
            return
        flat = lambda t: None if t is None else t.reshape(-1, t.shape[2], t.shape[3]).long()  # noqa: E731
        self._target = _Target(flat(experts), flat(reference), replay and experts is not None)

    def clear(self) -> None:
        self._target = None

    def take_stats(self) -> FlipStats | None:
        """Flip counts of the forwards since `target`, then reset them; None when nothing was compared."""
        t = self._target
        pairs = 0 if t is None else int(t.pairs)
        if pairs == 0:
            return None
        tokens = int(t.known.sum())
        stats = FlipStats(
            pairs=pairs,
            tokens=tokens,
            flip_rate=int(t.flipped) / pairs,
            token_flip_rate=int((t.token_flip & t.known).sum()) / max(tokens, 1),
            router_flip_rate=int(t.router_flipped) / pairs,
        )
        t.pairs = t.flipped = t.router_flipped = 0
        t.token_flip = t.known = None
        return stats

    def _override(self, slot: int):
        name = self.layers[slot].name

        def override(chosen: torch.Tensor):
            if self._record is not None:
                self._record.experts[slot].append(chosen.detach())
                return None
            t = self._target
            if t is None:
                return None
            rows = (t.experts if t.experts is not None else t.reference).shape[0]
            if chosen.shape[0] != rows:
                raise RoutingMismatchError(
                    f"routing replay: {name} routed {chosen.shape[0]} tokens, the recorded batch has {rows} "
                    "(batch x positions); refusing to replay misaligned experts"
                )
            used = chosen
            if t.replay:
                forced = t.experts[:, slot].to(chosen.device)
                used = torch.where(forced[:, :1] >= 0, forced, chosen)
            # Gradient-checkpoint recomputation runs the routers again inside backward: replayed, counted once.
            if t.reference is not None and not in_backward():
                _count(t, t.reference[:, slot].to(chosen.device), chosen, used)
            return used if t.replay else None

        return override


def _count(t: _Target, reference, chosen, used) -> None:
    known = reference[:, 0] >= 0
    flips = ~_same_set(used, reference) & known
    t.pairs = t.pairs + known.sum()
    t.flipped = t.flipped + flips.sum()
    t.router_flipped = t.router_flipped + (~_same_set(chosen, reference) & known).sum()
    t.token_flip = flips if t.token_flip is None else t.token_flip | flips
    t.known = known if t.known is None else t.known | known


def _same_set(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per row: the same experts, in any order."""
    return (a.sort(dim=-1).values == b.sort(dim=-1).values).all(dim=-1)


class DecodeMismatch:
    """How cached decoding and one full forward of the same sequences differ, for `posttrain eval`:
    the routing flip rate between them and the |log-prob| gap of every sampled token.

    `observe(decode, prompts, pad_token_id)` runs one decoding call (the decode loop or `generate`)
    under recording, then one full forward of its output, and accumulates; `summary()` reports the totals.
    Log-probs are taken at the sampling temperature (1 for greedy decoding).
    """

    def __init__(self, model, temperature: float) -> None:
        self.model = model
        self.replay = RoutingReplay(model, temperature=temperature or 1.0)
        self.pairs = 0
        self.flipped = 0.0
        self.tokens = 0
        self.token_flipped = 0.0
        self.deltas: list[torch.Tensor] = []

    def observe(self, decode, prompts: list[list[int]], pad_token_id: int):
        """`decode(record)` samples one completion per prompt row (`models.decoding.Decoded`) under
        recording; then one full forward of prompts + completions is compared with it."""
        with self.replay.recording() as record:
            decoded = decode(record)
        completions = decoded.completions
        rollout = self.replay.rollout(record, prompts, completions, decoded.logps)
        width, length = max(map(len, prompts)), max(1, max(map(len, completions)))
        device = next(self.model.parameters()).device
        out = torch.tensor(
            [
                [pad_token_id] * (width - len(p)) + p + c + [pad_token_id] * (length - len(c))
                for p, c in zip(prompts, completions)
            ],
            device=device,
        )
        prompt_mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
        done = torch.tensor([[j < len(c) for j in range(length)] for c in completions], device=device)
        mask = torch.cat([prompt_mask.bool(), done], dim=1)
        self.replay.target(None, replay=False, reference=rollout.aligned(out, length))
        try:
            with torch.inference_mode():
                logits = self.model(input_ids=out, attention_mask=mask.long()).logits
            stats = self.replay.take_stats()
        finally:
            self.replay.clear()
        if stats is not None:
            self.pairs += stats.pairs
            self.flipped += stats.flip_rate * stats.pairs
            self.tokens += stats.tokens
            self.token_flipped += stats.token_flip_rate * stats.tokens
        full = torch.log_softmax(logits[:, width - 1 : -1].float() / self.replay.temperature, dim=-1)
        full = full.gather(-1, out[:, width:, None]).squeeze(-1)
        sampled = torch.zeros_like(full)
        for i, logps in enumerate(rollout.logps):
            sampled[i, : len(logps)] = torch.tensor(logps, device=full.device)
        self.deltas.append((sampled - full).abs()[done].cpu())
        return decoded

    def summary(self) -> dict | None:
        """{"flip_rate", "token_flip_rate", "logp_abs_mean", "logp_abs_p99", "tokens"}; None before any token."""
        delta = torch.cat(self.deltas) if self.deltas else torch.empty(0)
        if not self.pairs or delta.numel() == 0:
            return None
        return {
            "flip_rate": self.flipped / self.pairs,
            "token_flip_rate": self.token_flipped / max(self.tokens, 1),
            "logp_abs_mean": float(delta.mean()),
            "logp_abs_p99": float(torch.quantile(delta, 0.99)),
            "tokens": self.tokens,
        }
