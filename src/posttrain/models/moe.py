"""MoE routers by model family: find them, count the experts they pick, bias their selection, freeze them.

Every transformers MoE router this module knows returns `(router_logits, top_k_weights, top_k_index)`,
so one forward hook counts selections for all of them. The loss-free balancing bias
(DeepSeek-V3) affects which experts are *selected*, never the gate weights:

- DeepSeek-V3-style routers (`deepseek_v3`, `glm4_moe`, `dots1`) have it built in: the buffer
  `e_score_correction_bias` is added to the sigmoid scores for top-k choice only, and saved
  with the weights. transformers loads it but never updates it; `posttrain.models.balancing` does.
- Softmax routers (`mixtral`, `qwen2_moe`, `qwen3_moe`, `olmoe`, `deepseek_v2`), and top-k-softmax
  routers (`granitemoe`, `gpt_oss`: softmax over the chosen logits only) have none.
  `install_selection_bias` adds a float32 buffer `selection_bias` to each router plus a forward
  hook (`install_routing_hook`, which also applies routing replay's override) that re-picks the
  top-k from `router_logits + selection_bias` and takes the gate weights
  from the *unbiased* logits the way the family does (softmax over all experts, renormalised when
  the model renormalises; DeepSeek-V2: times `routed_scaling_factor`; top-k-softmax: softmax over
  the chosen logits). With a zero bias the output is the model's own.
  The buffer is saved in checkpoints and Trainer resumes restore it; `from_pretrained` of such a
  family drops it as an unexpected key, so `posttrain.models.loading.load_model` calls
  `install_selection_bias` and `restore_selection_bias(layers, path)` when a checkpoint has one.

Any other MoE family raises `UnsupportedMoEError` naming the supported ones.
"""

from __future__ import annotations

import logging
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open

from posttrain.errors import PosttrainError

log = logging.getLogger(__name__)

SELECTION_BIAS = "selection_bias"
NATIVE_BIAS = "e_score_correction_bias"
ROUTING_OVERRIDE = "posttrain_routing_override"  # set by posttrain.models.replay
_HOOKED = "_posttrain_routing_hook"

# model_type -> (router class name, how the selection bias is applied)
FAMILIES: dict[str, tuple[str, str]] = {
    "deepseek_v3": ("DeepseekV3TopkRouter", "native"),
    "glm4_moe": ("Glm4MoeTopkRouter", "native"),
    "dots1": ("Dots1TopkRouter", "native"),
    "deepseek_v2": ("DeepseekV2TopkRouter", "scaled"),
    "mixtral": ("MixtralTopKRouter", "softmax"),
    "qwen2_moe": ("Qwen2MoeTopKRouter", "softmax"),
    "qwen3_moe": ("Qwen3MoeTopKRouter", "softmax"),
    "olmoe": ("OlmoeTopKRouter", "softmax"),
    "granitemoe": ("GraniteMoeTopKRouter", "topk_softmax"),
    "gpt_oss": ("GptOssTopKRouter", "topk_softmax"),
}
_EXPERT_COUNT_KEYS = ("n_routed_experts", "num_experts", "num_local_experts")


class UnsupportedMoEError(PosttrainError):
    """An MoE model whose router this module does not know."""


@dataclass
class MoELayer:
    """One routed layer: its decoder index, module path, router, and routing shape."""

    index: int
    name: str
    router: object  # torch.nn.Module
    num_experts: int
    top_k: int
    kind: str  # "native" | "softmax" | "scaled" | "topk_softmax"

    @property
    def key(self) -> str:
        return f"layer{self.index}"

    @property
    def bias(self):
        """The selection bias tensor, or None when none is installed."""
        return getattr(self.router, NATIVE_BIAS if self.kind == "native" else SELECTION_BIAS, None)


def family(model) -> str:
    return getattr(_text_config(model), "model_type", "") or ""


def is_moe(model) -> bool:
    """Whether the config declares routed experts (any family, known or not)."""
    config = _text_config(model)
    return any((getattr(config, k, 0) or 0) > 0 for k in _EXPERT_COUNT_KEYS)


def find_moe_layers(model) -> list[MoELayer]:
    """The model's routers in layer order; [] for a dense model, `UnsupportedMoEError` for an unknown MoE."""
    if not is_moe(model):
        return []
    kind_of = family(model)
    if kind_of not in FAMILIES:
        raise UnsupportedMoEError(
            f"{type(model).__name__} (model_type {kind_of!r}) is an MoE family posttrain cannot route-count or "
            f"balance; supported: {', '.join(FAMILIES)}. Set moe.balancing=none and moe.telemetry=false to train it."
        )
    class_name, kind = FAMILIES[kind_of]
    layers = []
    for name, module in model.named_modules():
        if type(module).__name__ == class_name:
            match = re.search(r"layers\.(\d+)\.", name)
            layers.append(
                MoELayer(
                    index=int(match.group(1)) if match else len(layers),
                    name=name,
                    router=module,
                    num_experts=int(module.weight.shape[0]),
                    top_k=int(module.top_k),
                    kind=kind,
                )
            )
    if not layers:
        raise UnsupportedMoEError(
            f"{type(model).__name__}: config declares experts but no {class_name} module was found"
        )
    return layers


def install_selection_bias(layers: list[MoELayer]) -> None:
    """Give every router a float32 selection-only bias (idempotent).

    Native routers keep their `e_score_correction_bias` (cast to float32 so small updates are not
    rounded away in bf16); the others get a `selection_bias` buffer that the routing hook applies.
    """

    for layer in layers:
        router = layer.router
        if layer.kind == "native":
            setattr(router, NATIVE_BIAS, getattr(router, NATIVE_BIAS).detach().float())
            continue
        if getattr(router, SELECTION_BIAS, None) is not None:
            continue
        if getattr(router, "topk_method", "greedy") != "greedy":
            # Group-limited top-k (DeepSeek-V2 full size) picks groups first; a bias on the plain
            # top-k would silently route differently from the model.
            raise UnsupportedMoEError(
                f"{layer.name}: topk_method {router.topk_method!r} is not balanced by posttrain (greedy only); "
                "set moe.balancing=none"
            )
        router.register_buffer(
            SELECTION_BIAS, torch.zeros(layer.num_experts, dtype=torch.float32, device=router.weight.device)
        )
    install_routing_hook(layers)


def install_routing_hook(layers: list[MoELayer]) -> None:
    """One forward hook per router (idempotent), ahead of any counting hook, that applies the
    selection bias (where installed) and then a selection override (routing replay, where set).

    The override is the router attribute `ROUTING_OVERRIDE`: a callable that takes the (tokens, k)
    selection the router made and returns the selection to use, or None to keep it. Whatever changed
    the selection, the gate weights are recomputed from the router's *live* logits at the chosen
    experts, the way the family computes them, so the router keeps its gradient.
    """
    for layer in layers:
        if not getattr(layer.router, _HOOKED, False):
            layer.router.register_forward_hook(_routing_hook(layer.kind), prepend=True)
            setattr(layer.router, _HOOKED, True)


def gate_weights(kind: str, router, logits, indices):
    """The family's gate weights for the experts `indices` (tokens, k), from router `logits` (tokens, E)."""
    scores = logits.float()
    if kind == "native":  # DeepSeek-V3: sigmoid scores of the chosen experts, renormalised, scaled
        gates = scores.sigmoid().gather(-1, indices)
        if router.norm_topk_prob:
            gates = gates / (gates.sum(dim=-1, keepdim=True) + 1e-20)
        return gates * router.routed_scaling_factor
    if kind == "topk_softmax":  # Granite, gpt-oss: softmax over the chosen logits only
        return scores.gather(-1, indices).softmax(dim=-1)
    if kind == "scaled":  # DeepSeek-V2: softmax over all experts, times the scaling factor
        return scores.softmax(dim=-1).gather(-1, indices) * router.routed_scaling_factor
    gates = scores.softmax(dim=-1).gather(-1, indices)
    if getattr(router, "norm_topk_prob", True):  # Mixtral always renormalises; Qwen/OLMoE by config
        gates = gates / gates.sum(dim=-1, keepdim=True)
    return gates


def _routing_hook(kind: str):

    def hook(router, args, output):
        logits, weights, indices = output
        flat_logits = logits.reshape(-1, logits.shape[-1])
        chosen = indices.reshape(-1, indices.shape[-1])
        changed = False
        bias = getattr(router, SELECTION_BIAS, None)
        if bias is not None:
            chosen = torch.topk(flat_logits.float() + bias, router.top_k, dim=-1).indices
            changed = True
        override = getattr(router, ROUTING_OVERRIDE, None)
        if override is not None:
            forced = override(chosen)
            if forced is not None:
                chosen, changed = forced, True
        if not changed:
            return None
        gates = gate_weights(kind, router, flat_logits, chosen)
        return logits, gates.reshape(weights.shape).to(weights.dtype), chosen.reshape(indices.shape)

    return hook


def restore_selection_bias(layers: list[MoELayer], checkpoint_dir) -> int:
    """Load saved `selection_bias` tensors into installed routers, matched by layer index (checkpoints
    may store modules under their original names, e.g. Mixtral's `block_sparse_moe`); returns how many."""

    by_index = {layer.index: layer for layer in layers if layer.kind != "native"}
    loaded = 0
    for file in sorted(Path(checkpoint_dir).glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as f:
            for key in f.keys():
                match = re.search(r"layers\.(\d+)\..*\." + SELECTION_BIAS + "$", key)
                if match and int(match.group(1)) in by_index:
                    by_index[int(match.group(1))].bias.copy_(f.get_tensor(key))
                    loaded += 1
    return loaded


def has_saved_selection_bias(checkpoint_dir) -> bool:
    """Whether a checkpoint folder holds `selection_bias` tensors (a softmax-family model posttrain balanced)."""
    for file in sorted(Path(checkpoint_dir).glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as f:
            if any(key.endswith("." + SELECTION_BIAS) for key in f.keys()):
                return True
    return False


def reattach_selection_bias(model, checkpoint_dir) -> int:
    """After `from_pretrained`: put back the saved selection biases transformers dropped; returns how many.

    Without this a reloaded Mixtral/Qwen/OLMoE/Granite policy routes as if it had never been balanced."""
    if not has_saved_selection_bias(checkpoint_dir):
        return 0
    layers = find_moe_layers(model)
    install_selection_bias(layers)
    return restore_selection_bias(layers, checkpoint_dir)


def freeze_router(layers: list[MoELayer]) -> int:
    """Stop gradients to router weights; returns the number of parameters frozen."""
    frozen = 0
    for layer in layers:
        for param in layer.router.parameters(recurse=False):
            param.requires_grad_(False)
            frozen += param.numel()
    return frozen


class RoutingCounter:
    """Counts, per layer, the tokens each expert was selected for, via forward hooks on the routers.

    Padding is excluded when the model's forward got a 2-D `attention_mask` (also during cached
    generation, where the mask covers past + new tokens). `training_only` counts only forwards
    that build a graph in train mode (the policy-gradient pass, not sampling or old log-probs).
    Router calls replayed during backward (gradient-checkpoint recomputation) are skipped: their
    forward was already counted.
    """

    def __init__(self, model, layers: list[MoELayer], training_only: bool = False) -> None:
        self.model, self.layers, self.training_only = model, layers, training_only
        self._counts: list = [None] * len(layers)
        self._mask = None
        self._handles: list = []

    def attach(self) -> RoutingCounter:
        if not self._handles:
            self._handles.append(self.model.register_forward_pre_hook(self._remember_mask, with_kwargs=True))
            for i, layer in enumerate(self.layers):
                self._handles.append(layer.router.register_forward_hook(self._counter(i)))
        return self

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles, self._mask = [], None

    def reset(self) -> None:
        self._counts = [None] * len(self.layers)

    def tensor(self):
        """Counts as an int64 tensor (layers, experts) on the first router's device."""

        device = self.layers[0].router.weight.device
        rows = [
            torch.zeros(layer.num_experts, dtype=torch.long, device=device) if c is None else c.to(device)
            for layer, c in zip(self.layers, self._counts)
        ]
        return torch.stack(rows)

    def counts(self) -> dict[str, list[int]]:
        """`{"layer{i}": [tokens per expert]}`, the input of `telemetry.routing_stats.routing_summary`."""
        if not self.layers:
            return {}
        return {layer.key: row for layer, row in zip(self.layers, self.tensor().tolist())}

    def _remember_mask(self, module, args, kwargs):
        mask = kwargs.get("attention_mask")
        self._mask = mask if mask is not None and getattr(mask, "dim", lambda: 0)() == 2 else None

    def _counter(self, i: int):

        num_experts = self.layers[i].num_experts

        def hook(router, args, output):
            if self.training_only and not (router.training and torch.is_grad_enabled()):
                return
            if in_backward():
                return
            indices = output[2].reshape(-1, output[2].shape[-1])
            keep = _token_mask(self._mask, indices.shape[0])
            if keep is not None:
                indices = indices[keep.to(indices.device)]
            counts = torch.bincount(indices.reshape(-1), minlength=num_experts)
            self._counts[i] = counts if self._counts[i] is None else self._counts[i] + counts

        return hook


def _token_mask(mask, num_tokens: int):
    """Which of the router's flattened tokens are real, or None when the mask does not line up."""
    if mask is None:
        return None
    if mask.numel() == num_tokens:
        return mask.reshape(-1).bool()
    batch = mask.shape[0]
    if num_tokens % batch == 0 and num_tokens // batch <= mask.shape[1]:  # cached decoding: the newest columns
        return mask[:, -(num_tokens // batch) :].reshape(-1).bool()
    return None


def in_backward() -> bool:
    """Whether autograd is running backward now (gradient-checkpoint recomputation calls routers there)."""

    graph_task_id = getattr(torch._C, "_current_graph_task_id", None)  # private; absent -> count everything
    return graph_task_id is not None and graph_task_id() != -1


@contextmanager
def count_routing(model, strict: bool = False):
    """Count expert selections of every forward inside the block (generation, eval).

    >>> with count_routing(model) as routing:      # doctest: +SKIP
    ...     model.generate(**batch)
    >>> routing_summary(routing.counts())          # doctest: +SKIP

    Yields a `RoutingCounter`. A dense model, or (unless `strict`) an MoE family this module does
    not know, yields one with no layers: `counts()` == {}.
    """
    try:
        layers = find_moe_layers(model)
    except UnsupportedMoEError as e:
        if strict:
            raise
        log.warning("routing counts skipped: %s", e)
        layers = []
    counter = RoutingCounter(model, layers)
    if layers:
        counter.attach()
    try:
        yield counter
    finally:
        counter.detach()


def _text_config(model):
    config = model.config
    return config.get_text_config() if hasattr(config, "get_text_config") else config
