"""A lean decode forward for DeepSeek-V3's multi-head latent attention (MLA), for the decode loop.

transformers caches MLA's compressed latent (`kv_lora_rank` + `qk_rope_head_dim` per token) and,
in every decode forward, expands the whole cached latent back into per-head keys and values through
`kv_b_proj` -- work that grows with the sequence and is repeated at every step. DeepSeek's own
inference absorbs `kv_b_proj` into the query and the output instead: with `W_uk` and `W_uv` the key
and value halves of `kv_b_proj` for head h,

    q_h . k_h,j  = (W_uk_h^T q_nope_h) . c_j  + q_rot_h . k_rot_j
    o_h          = W_uv_h  sum_j p_h,j c_j

so attention runs against the latents `c_j` themselves and nothing is re-expanded. The two forms are
equal up to float rounding (tests/unit/models/test_mla.py bounds the gap of every sampled token's
log-prob against transformers' own forward).

`MLADecoder.for_model(model)` returns a decoder, or None where this module cannot promise the model's
own forward: not DeepSeek-V3, attention dropout, an adapter or quantized weight on `kv_b_proj`
(whose weight is absorbed), or under autocast (which would round differently from transformers').
Every other module -- embeddings, norms, the q/kv/o projections (LoRA included), the MoE block with
its routing hooks (replay, telemetry, balancing), the LM head -- is called as the model calls it;
only attention's arithmetic and transformers' per-forward bookkeeping (masks, cache objects, output
dataclasses) are replaced. The latents live in one preallocated buffer per layer, so a step writes
one column instead of concatenating the cache.
"""

from __future__ import annotations

import functools
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from transformers import DynamicCache
from transformers.modeling_outputs import CausalLMOutputWithPast
from transformers.models.deepseek_v3.modeling_deepseek_v3 import (
    DeepseekV3Experts,
    DeepseekV3MoE,
    DeepseekV3RMSNorm,
    DeepseekV3TopkRouter,
)

FAMILIES = ("deepseek_v3",)  # kimi_k2 and the DeepSeek-V3 derivatives share this model_type
# Expert weights per layer up to which a decode step runs every expert on every row: one dense product
# costs less than dispatching a few tokens to each expert (2-core Xeon, bench_grpo's tiny MoE with
# 196k expert weights per layer: 194 us against 252 us at 32 rows, 104 against 181 at 8). Real
# checkpoints have hundreds of millions per layer and keep transformers' sparse experts.
DENSE_EXPERT_WEIGHTS = 1 << 22


class MLADecoder:
    """Decode forwards of one DeepSeek-V3 model: `start` from the prefill's cache, then one `step`
    per fed token, `select` when rows leave the batch."""

    def __init__(self, base) -> None:
        self.base = base
        self.config = base.config
        self.layers = list(base.model.layers[: self.config.num_hidden_layers])
        c = self.config
        self.heads, self.rank = c.num_attention_heads, c.kv_lora_rank
        self.nope, self.rope, self.v = c.qk_nope_head_dim, c.qk_rope_head_dim, c.v_head_dim
        half = self.rope // 2
        if c.rope_interleave:  # see `_pairs`
            self.p_index = torch.cat([torch.arange(0, self.rope, 2), torch.arange(1, self.rope, 2)])
            self.q_index = torch.cat([torch.arange(1, self.rope, 2), torch.arange(0, self.rope, 2)])
        else:
            self.p_index = torch.arange(self.rope)
            self.q_index = torch.cat([torch.arange(half, self.rope), torch.arange(half)])
        weight = base.model.embed_tokens.weight
        self.q_sign = torch.cat([-torch.ones(half), torch.ones(self.rope - half)]).to(weight.dtype)
        self.p_index, self.q_index, self.q_sign = (
            t.to(weight.device) for t in (self.p_index, self.q_index, self.q_sign)
        )
        self.latents: list[torch.Tensor] = []  # per layer (B, width, rank + rope): normalised latent, roped key
        self.bias: torch.Tensor | None = None  # (B, 1, width): -inf on left padding
        self.length = 0  # cached positions
        self.rotations: torch.Tensor | None = None  # (positions, 2, rope): cos and sin per position
        self.mixes: dict[tuple[int, int], torch.Tensor] = {}
        self.dense = [_dense_experts(layer.mlp) for layer in self.layers]

    @classmethod
    def for_model(cls, model) -> MLADecoder | None:
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        config = getattr(base, "config", None)
        if getattr(config, "model_type", None) not in FAMILIES or not hasattr(base, "model"):
            return None
        if getattr(config, "attention_dropout", 0.0) or any(
            type(layer.self_attn.kv_b_proj) is not torch.nn.Linear for layer in base.model.layers
        ):
            return None
        if hasattr(base, "_hf_hook"):  # accelerate's device_map dispatch moves tensors inside forward
            return None
        return cls(base)

    @contextmanager
    def installed(self):
        """The base model's forward is `forward` inside the block, so the loop still calls the model (a PEFT
        wrapper, hooks and all) and every observer of its forwards sees the decode steps. TRL's fused
        LM head also sets an instance `forward`; it is put back after."""
        previous = self.base.__dict__.get("forward")
        self.base.forward = self.forward
        # Routers that keep every expert group run without the group selection (an all-ones mask there),
        # still called as modules: hooks wrap whichever forward the instance has.
        routers = [
            layer.mlp.gate
            for layer in self.layers
            if type(getattr(layer.mlp, "gate", None)) is DeepseekV3TopkRouter
            and layer.mlp.gate.topk_group >= layer.mlp.gate.num_group
            and "forward" not in layer.mlp.gate.__dict__
        ]
        for router in routers:
            router.forward = functools.partial(_route, router)
        try:
            yield
        finally:
            for router in routers:
                del router.forward
            if previous is None:
                del self.base.forward
            else:
                self.base.forward = previous

    def forward(self, input_ids, position_ids, **_) -> CausalLMOutputWithPast:
        """A decode forward as the loop calls it (one token per row; the cache is this decoder's)."""
        return CausalLMOutputWithPast(logits=self.step(input_ids[:, 0], position_ids[:, 0])[:, None])

    def usable(self) -> bool:
        """False under autocast: transformers' forward then rounds its own way, so the loop uses it."""
        device = next(self.base.parameters()).device.type
        return not torch.is_autocast_enabled(device)

    def start(self, cache: DynamicCache, mask: torch.Tensor, new_tokens: int) -> None:
        """Take the prefill's latents (rows as the loop's batch), `mask` (B, P) its 2-D attention mask."""
        rows, width = mask.shape
        self.latents = []
        for layer in range(len(self.layers)):
            latent, rot = cache.layers[layer].keys, cache.layers[layer].values  # (B, 1, P, rank), (B, 1, P, rope)
            buffer = latent.new_empty(rows, width + new_tokens, self.rank + self.rope)
            buffer[:, :width, : self.rank] = latent[:, 0]
            buffer[:, :width, self.rank :] = rot[:, 0]
            self.latents.append(buffer)
        bias = torch.zeros(rows, 1, width + new_tokens, dtype=self.latents[0].dtype, device=mask.device)
        self.bias = bias.masked_fill_(torch.nn.functional.pad(mask == 0, (0, new_tokens))[:, None], float("-inf"))
        self.length = width
        # Per layer: kv_b_proj's key half (heads, nope, rank) and value half transposed (heads, rank, v),
        # and the projections folded into plain linears where they are ones (weights change every
        # optimizer step, so this runs per decoding call: a few small products).
        self.absorbed, self.folded = [], []
        for layer in self.layers:
            w = layer.self_attn.kv_b_proj.weight.view(self.heads, self.nope + self.v, self.rank)
            w_key, w_value = w[:, : self.nope], w[:, self.nope :].transpose(1, 2)
            self.absorbed.append((w_key, w_value))
            self.folded.append(self._fold(layer.self_attn, w_key, w_value))
        self.stacked = [_stack(layer.mlp) if dense else None for layer, dense in zip(self.layers, self.dense)]
        self.mixes = {}  # (rows, width) -> the gate matrix before routing: one for the folded shared expert
        embeddings = self.base.model.embed_tokens.weight
        self.rotations = self._rotations(self.base.model.rotary_emb, width + new_tokens, embeddings[None, :1])

    def select(self, rows: torch.Tensor) -> None:
        self.latents = [buffer[rows] for buffer in self.latents]
        self.bias = self.bias[rows]

    def step(self, token: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        """Logits (B, V) after feeding `token` (B,) at `position` (B,)."""
        base = self.base
        hidden = base.model.embed_tokens(token[:, None])
        if self.rotations is not None:
            rotation = self.rotations[position][:, None]  # (B, 1, 2, rope): cos and sin
        else:
            rotation = torch.stack(base.model.rotary_emb(hidden, position[:, None]), dim=-2)
        at = self.length
        for index, layer in enumerate(self.layers):
            attended = self._attention(layer.self_attn, _norm(layer.input_layernorm, hidden), rotation, index, at)
            hidden = hidden + attended
            normed = _norm(layer.post_attention_layernorm, hidden)
            stacked = self.stacked[index]
            hidden = hidden + (self._moe(layer.mlp, stacked, normed) if stacked is not None else layer.mlp(normed))
        self.length = at + 1
        return base.lm_head(_norm(base.model.norm, hidden))[:, 0]

    def _rotations(self, rotary, positions: int, like: torch.Tensor) -> torch.Tensor | None:
        """(positions, 2, rope): the rotary module's cos and sin of every position a row can reach, so a step
        looks its rows up instead of recomputing them (the module's products are elementwise per position,
        so a row's values do not depend on the batch). None for dynamic RoPE, whose frequencies follow the
        sequence length: each step then calls the module."""
        if "dynamic" in str(getattr(rotary, "rope_type", "")):
            return None
        cos, sin = rotary(like, torch.arange(positions, device=like.device)[None])
        return torch.stack([cos[0], sin[0]], dim=1)

    def _fold(self, attn, w_key, w_value) -> _Folded:
        """Weights computing, per head, the query in latent space and both halves of its rotation at once
        (W_uk^T q_nope, P q_rot, Q q_rot: see `_pairs`), the key latent with both halves of the roped key,
        and o_proj after W_uv -- each where its projection is a plain bias-free linear (not LoRA or
        quantized: those are then called as modules). With no q LoRA rank, query and key share their
        input and become one product."""
        q = attn.q_proj if attn.q_lora_rank is None else attn.q_b_proj
        query = key = output = None
        if _plain(q):
            w_q = q.weight.view(self.heads, self.nope + self.rope, -1)
            q_latent = torch.einsum("hdr,hdi->hri", w_key, w_q[:, : self.nope])  # (H, rank, q_in)
            w_rot = w_q[:, self.nope :]
            first, second = w_rot[:, self.p_index], w_rot[:, self.q_index] * self.q_sign[:, None]
            query = torch.cat([q_latent, first, second], dim=1).reshape(-1, w_q.shape[-1])
        kv = attn.kv_a_proj_with_mqa
        if _plain(kv):
            w_rot = kv.weight[self.rank :]
            second = w_rot[self.q_index] * self.q_sign[:, None]
            key = torch.cat([kv.weight[: self.rank], w_rot[self.p_index], second])
        if type(attn.o_proj) is torch.nn.Linear:  # its bias is added after the product
            w_o = attn.o_proj.weight.view(-1, self.heads, self.v)
            output = torch.einsum("ohv,hrv->ohr", w_o, w_value).reshape(w_o.shape[0], -1)  # (hidden, H * rank)
        joint = torch.cat([query, key]) if query is not None and key is not None and attn.q_lora_rank is None else None
        return _Folded(joint, query, key, output)

    def _pairs(self, x: torch.Tensor) -> torch.Tensor:
        """(..., 2, rope): P x and Q x of a rope vector, where its rotation is P x * cos + Q x * sin (cos and
        sin as the rotary module returns them). P and Q are fixed permutations with signs: for rotate-half
        P = id and Q x = (-x2, x1); interleaved, P x = (x_even, x_odd) and Q x = (-x_odd, x_even)."""
        return torch.stack([x[..., self.p_index], x[..., self.q_index] * self.q_sign], dim=-2)

    def _attention(self, attn, x, rotation, index: int, at: int) -> torch.Tensor:
        """x (B, 1, hidden), rotation (B, 1, 2, rope): the attention block's output (B, 1, hidden)."""
        rows, heads, rank, rope = x.shape[0], self.heads, self.rank, self.rope
        folded = self.folded[index]
        if folded.joint is not None:
            query, compressed = torch.nn.functional.linear(x, folded.joint).split(
                [heads * (rank + 2 * rope), rank + 2 * rope], dim=-1
            )
        else:
            q_in = x if attn.q_lora_rank is None else _norm(attn.q_a_layernorm, attn.q_a_proj(x))
            if folded.query is not None:
                query = torch.nn.functional.linear(q_in, folded.query)
            else:
                q = attn.q_proj(q_in) if attn.q_lora_rank is None else attn.q_b_proj(q_in)
                q = q.view(rows, heads, self.nope + rope)
                q_latent = torch.matmul(q[..., : self.nope].transpose(0, 1), self.absorbed[index][0]).transpose(0, 1)
                query = torch.cat([q_latent, self._pairs(q[..., self.nope :]).flatten(-2)], dim=-1)
            if folded.key is not None:
                compressed = torch.nn.functional.linear(x, folded.key)
            else:
                compressed = attn.kv_a_proj_with_mqa(x)
                compressed = torch.cat([compressed[..., :rank], self._pairs(compressed[..., rank:]).flatten(-2)], -1)
        query = query.view(rows, heads, rank + 2 * rope)
        # Both halves of each rotation at once: P x * cos + Q x * sin as one product and one sum.
        q_rot = (query[..., rank:].view(rows, heads, 2, rope) * rotation).sum(-2)  # (B, H, rope)
        k_rot = (compressed[..., rank:].view(rows, 1, 2, rope) * rotation).sum(-2)  # (B, 1, rope)
        latent = _norm(attn.kv_a_layernorm, compressed[..., :rank])
        buffer = self.latents[index]
        buffer[:, at : at + 1] = torch.cat([latent, k_rot], dim=-1)
        keys = buffer[:, : at + 1]  # (B, T, rank + rope)

        query = torch.cat([query[..., :rank], q_rot], dim=-1)  # (B, H, rank + rope)
        scores = torch.baddbmm(self.bias[:, :, : at + 1], query, keys.transpose(1, 2), alpha=attn.scaling)
        weights = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
        context = torch.bmm(weights, keys[..., :rank])  # (B, H, rank)
        if folded.output is not None:
            return torch.nn.functional.linear(context.view(rows, 1, -1), folded.output, attn.o_proj.bias)
        values = torch.matmul(context.transpose(0, 1), self.absorbed[index][1]).transpose(0, 1)  # (B, H, v)
        return attn.o_proj(values.reshape(rows, 1, heads * self.v))

    def _moe(self, mlp, stacked, x: torch.Tensor) -> torch.Tensor:
        """DeepseekV3MoE's forward with every expert applied to every row, weighted by the router's gates
        (zero off the chosen top-k, one for the shared expert): the sum transformers' experts and shared
        expert compute, as two matrix products. The router is called as a module, so routing hooks
        (replay, telemetry, balancing) see and steer it."""
        gate_up, down, parts = stacked
        _, weights, index = mlp.gate(x)
        flat = x.view(-1, x.shape[-1])
        experts = mlp.experts
        routed = experts.num_experts
        gate, up = torch.nn.functional.linear(flat, gate_up).view(flat.shape[0], routed + parts, -1).chunk(2, dim=-1)
        key = (flat.shape[0], routed + parts)
        if key not in self.mixes:
            self.mixes[key] = flat.new_zeros(key).index_fill_(
                1, torch.arange(routed, routed + parts, device=flat.device), 1.0
            )
        mix = self.mixes[key].scatter(1, index, weights.to(flat.dtype))
        hidden = experts.act_fn(gate) * up * mix[..., None]  # (N, experts, I)
        out = torch.nn.functional.linear(hidden.flatten(1), down).view_as(x)
        return out if parts else out + mlp.shared_experts(x)


@dataclass
class _Folded:
    """One layer's folded weights (`MLADecoder._fold`); None where the module is called instead."""

    joint: torch.Tensor | None  # query and key rows stacked: both read the layer input
    query: torch.Tensor | None  # (H * (rank + 2 rope), q_in)
    key: torch.Tensor | None  # (rank + 2 rope, hidden)
    output: torch.Tensor | None  # (hidden, H * rank)


def _plain(linear) -> bool:
    return type(linear) is torch.nn.Linear and linear.bias is None


def _route(router: DeepseekV3TopkRouter, hidden_states: torch.Tensor):
    """DeepseekV3TopkRouter.forward where the top-k groups are all the groups: the same logits, weights
    and experts, bit for bit, in half the ops (its group scores, group top-k and masks select everything)."""
    hidden_states = hidden_states.view(-1, router.hidden_dim)
    router_logits = torch.nn.functional.linear(hidden_states.type(torch.float32), router.weight.type(torch.float32))
    scores = router_logits.sigmoid()
    topk_indices = torch.topk(scores + router.e_score_correction_bias, k=router.top_k, dim=-1, sorted=False)[1]
    topk_weights = scores.gather(1, topk_indices)
    if router.norm_topk_prob:
        topk_weights /= topk_weights.sum(dim=-1, keepdim=True) + 1e-20
    return router_logits, topk_weights * router.routed_scaling_factor, topk_indices


def _norm(norm, x: torch.Tensor) -> torch.Tensor:
    """DeepseekV3RMSNorm's arithmetic (float32 statistics, weight applied in the input dtype) in one fused
    kernel instead of six ops; another norm class is called as a module."""
    if type(norm) is not DeepseekV3RMSNorm:
        return norm(x)
    if x.dtype == torch.float32 and norm.weight.dtype == torch.float32:  # no rounding between: weight fused too
        return torch.nn.functional.rms_norm(x, norm.weight.shape, norm.weight, eps=norm.variance_epsilon)
    normed = torch.nn.functional.rms_norm(x.float(), norm.weight.shape, eps=norm.variance_epsilon)
    return norm.weight * normed.to(x.dtype)


def _dense_experts(mlp) -> bool:
    """Whether a decode step runs this layer's experts densely (transformers' own experts class, small)."""
    if not isinstance(mlp, DeepseekV3MoE) or type(mlp.experts) is not DeepseekV3Experts:
        return False  # a dense layer, or experts wrapped by an adapter: called as they are
    experts = mlp.experts
    return experts.gate_up_proj.numel() + experts.down_proj.numel() <= DENSE_EXPERT_WEIGHTS


def _stack(mlp) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Every expert of the layer as two matrices, (experts x 2I, H) in and (H, experts x I) out, for
    `_moe`; the shared expert joins as `shared` more experts of width I (a SwiGLU MLP splits along its
    intermediate dimension into independent parts) where it is a plain MLP, else it is called alone."""
    experts, shared = mlp.experts, mlp.shared_experts
    width = experts.intermediate_dim
    gate_up, down = [experts.gate_up_proj], [experts.down_proj]  # (E, 2I, H), (E, H, I)
    parts = 0
    linears = (shared.gate_proj, shared.up_proj, shared.down_proj)
    if (
        all(type(lin) is torch.nn.Linear and lin.bias is None for lin in linears)
        and type(shared.act_fn) is type(experts.act_fn)
        and shared.intermediate_size % width == 0
    ):
        parts = shared.intermediate_size // width
        hidden = shared.gate_proj.weight.shape[1]
        gates = shared.gate_proj.weight.view(parts, width, hidden)
        ups = shared.up_proj.weight.view(parts, width, hidden)
        gate_up.append(torch.cat([gates, ups], dim=1))
        down.append(shared.down_proj.weight.view(hidden, parts, width).transpose(0, 1))
    gate_up = torch.cat(gate_up).flatten(0, 1)
    down = torch.cat(down).permute(1, 0, 2).flatten(1)
    return gate_up, down, parts
