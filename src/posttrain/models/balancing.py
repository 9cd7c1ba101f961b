"""MoE load balancing during training: the loss-free bias update (DeepSeek-V3) and routing telemetry.

Loss-free balancing (Wang et al. 2024; DeepSeek-V3 §2.1.2): each routed expert i has a bias b_i
added to its routing score for top-k *selection only*. After every optimizer step, with load_i the
tokens sent to expert i in that step's training forwards (summed over data-parallel ranks):

    b_i <- b_i + gamma * sign(mean_j load_j - load_i)

so overloaded experts become less likely to be picked and idle ones more, with no gradient
interfering with the policy loss. TRL only knows the Switch auxiliary loss (`router_aux_loss_coef`),
and transformers loads DeepSeek-V3's bias but never updates it, hence this callback.

`moe_callbacks(cfg, model, out_dir)` is the one entry point a trainer needs.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file
from transformers import TrainerCallback

from posttrain.config.schema import MoEConfig
from posttrain.errors import PosttrainError
from posttrain.models.moe import (
    FAMILIES,
    MoELayer,
    RoutingCounter,
    UnsupportedMoEError,
    family,
    find_moe_layers,
    freeze_router,
    install_selection_bias,
    is_moe,
)
from posttrain.telemetry.heatmap import plot_expert_load
from posttrain.telemetry.routing_stats import routing_summary

log = logging.getLogger(__name__)

# Families whose transformers forward computes the Switch loss from `output_router_logits`, and TRL
# 1.16's fused loss can weight it (it reads `config.num_experts`).
AUX_LOSS_FAMILIES = ("mixtral", "qwen2_moe", "qwen3_moe", "olmoe", "gpt_oss")
# Families transformers computes it for, but TRL cannot: why, for the refusal.
AUX_LOSS_BROKEN = {
    "granitemoe": "TRL 1.16's fused loss reads config.num_experts, which GraniteMoeConfig names num_local_experts"
}


def update_bias(bias, counts, gamma: float):
    """One loss-free step on (experts,) or (layers, experts) tensors; returns the new bias.

    >>> import torch
    >>> update_bias(torch.zeros(4), torch.tensor([10, 10, 10, 30]), 0.1)
    tensor([ 0.1000,  0.1000,  0.1000, -0.1000])
    """

    load = counts.to(device=bias.device, dtype=torch.float32)
    mean = load.mean(dim=-1, keepdim=True)
    return bias + gamma * torch.sign(mean - load).to(bias.dtype)


def aux_loss_coef(cfg: MoEConfig) -> float:
    """`trl.GRPOConfig.router_aux_loss_coef`: 0.0 unless `aux_loss`, so a config's own default
    (Qwen3-MoE ships 0.001, which TRL would otherwise apply) never sneaks in."""
    return cfg.aux_loss_coef if cfg.balancing == "aux_loss" else 0.0


def moe_callbacks(cfg: MoEConfig, model, out_dir: Path | None = None) -> list[TrainerCallback]:
    """Prepare `model` for `cfg` (freeze routers, install the selection bias) and return the callbacks.

    Put them before the metrics logger in the Trainer's list: they add `moe/*` keys to the logs.
    """
    wants_routers = cfg.balancing != "none" or cfg.freeze_router
    if not wants_routers and not cfg.telemetry:
        return []
    check_moe_settings(cfg, model)
    if not is_moe(model):
        return []
    try:
        layers = find_moe_layers(model)
    except UnsupportedMoEError as e:  # telemetry alone: check_moe_settings raised for balancing or freezing
        log.warning("MoE telemetry off: %s", e)
        return []
    if cfg.freeze_router:
        freeze_router(layers)
    gamma = None
    if cfg.balancing == "loss_free":
        install_selection_bias(layers)
        gamma = cfg.bias_update_speed
    if gamma is None and not cfg.telemetry:
        return []
    return [MoEBalancingCallback(model, layers, gamma=gamma, telemetry=cfg.telemetry, out_dir=out_dir)]


def check_moe_settings(cfg: MoEConfig, model) -> None:
    """Raise what `moe_callbacks` refuses, changing nothing. `model` may be a weightless meta-device
    instance, so a run can check its settings before its slow steps (distillation's traces)."""
    wants_routers = cfg.balancing != "none" or cfg.freeze_router or cfg.routing_replay != "none"
    if not is_moe(model):
        if cfg.routing_replay != "none":
            raise PosttrainError(f"moe.routing_replay={cfg.routing_replay}: {type(model).__name__} has no MoE layers")
        if wants_routers:
            setting = f"moe.balancing={cfg.balancing}" if cfg.balancing != "none" else "moe.freeze_router=true"
            raise PosttrainError(
                f"{setting}: {type(model).__name__} has no MoE layers; use moe.balancing=none "
                "and moe.freeze_router=false for a dense model"
            )
        return
    if cfg.balancing == "aux_loss":
        check_aux_loss(model)
    if wants_routers:
        find_moe_layers(model)  # an MoE family this module cannot route raises UnsupportedMoEError


def check_aux_loss(model) -> None:
    kind = family(model)
    if kind in AUX_LOSS_BROKEN:
        raise PosttrainError(
            f"moe.balancing=aux_loss: {type(model).__name__} cannot take it here ({AUX_LOSS_BROKEN[kind]}); "
            "use moe.balancing=loss_free"
        )
    if kind not in AUX_LOSS_FAMILIES:
        hint = " (DeepSeek-V3's own method)" if kind in FAMILIES and FAMILIES[kind][1] == "native" else ""
        raise PosttrainError(
            f"moe.balancing=aux_loss: {type(model).__name__} returns no auxiliary load-balancing loss in transformers; "
            f"it does for {', '.join(AUX_LOSS_FAMILIES)}. Use moe.balancing=loss_free{hint} or none."
        )


BIAS_FILE = "moe_router_bias.safetensors"


class MoEBalancingCallback(TrainerCallback):
    """Counts routing in each step's training forwards; applies the loss-free update when `gamma` is
    set; adds `moe/*` telemetry to each log; writes `expert_load.png` to `out_dir` at the end.

    The biases live in the model (so full checkpoints carry them); each checkpoint also gets them in
    `moe_router_bias.safetensors`, read back on resume, because LoRA checkpoints hold only the adapter.
    """

    def __init__(
        self,
        model,
        layers: list[MoELayer],
        gamma: float | None = None,
        telemetry: bool = True,
        out_dir: Path | None = None,
    ) -> None:
        self.layers, self.gamma, self.telemetry = layers, gamma, telemetry
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.counter = RoutingCounter(model, layers, training_only=True)
        self._interval = None  # counts since the last log, (layers, experts)
        self.history: list[dict] = []  # the logged moe/* rows, for the heat-map

    def on_train_begin(self, args, state, control, **kwargs):
        # The Trainer has loaded the checkpoint's state (global_step) and weights by now. Restoring
        # here, not at the first step, also covers a resume from the last step, which runs no step.
        self._restore(Path(args.output_dir) / f"checkpoint-{state.global_step}" / BIAS_FILE)
        self.counter.attach()

    def on_step_begin(self, args, state, control, **kwargs):
        self.counter.reset()

    def on_step_end(self, args, state, control, **kwargs):
        counts = _all_reduce(self.counter.tensor())
        self.counter.reset()
        self._interval = counts if self._interval is None else self._interval + counts
        if self.gamma is not None:
            self._apply_update(counts)

    def _apply_update(self, counts) -> None:

        with torch.no_grad():
            for layer, row in zip(self.layers, counts):
                layer.bias.copy_(update_bias(layer.bias, row, self.gamma))

    def on_save(self, args, state, control, **kwargs):
        if self.gamma is None or not state.is_world_process_zero:
            return

        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if folder.is_dir():
            save_file(
                {layer.key: layer.bias.detach().cpu().contiguous() for layer in self.layers}, str(folder / BIAS_FILE)
            )

    def _restore(self, path: Path) -> None:
        if self.gamma is None or not path.is_file():
            return

        saved = load_file(str(path))
        with torch.no_grad():
            for layer in self.layers:
                if layer.key in saved:
                    layer.bias.copy_(saved[layer.key])

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is None or "train_runtime" in logs or self._interval is None or not self.telemetry:
            return
        counts = {layer.key: row for layer, row in zip(self.layers, self._interval.tolist())}
        self._interval = None
        if self.gamma is not None:
            logs["moe/bias_absmax"] = max(float(layer.bias.abs().max()) for layer in self.layers)
        row = telemetry_logs(counts)
        logs.update(row)
        self.history.append({"step": state.global_step, **row})

    def on_train_end(self, args, state, control, **kwargs):
        self.counter.detach()
        if self.out_dir is not None and self.history and state.is_world_process_zero:
            plot_expert_load(self.history, self.out_dir / "expert_load.png")


def telemetry_logs(counts: dict[str, list]) -> dict:
    """`moe/*` log keys from `{"layer{i}": expert counts}`: aggregates plus per-layer MaxVio and load shares."""
    summary = routing_summary(counts)
    agg = summary["aggregate"]
    out = {
        "moe/max_vio_mean": agg["mean_max_vio"],
        "moe/max_vio_max": agg["max_max_vio"],
        "moe/entropy_mean": agg["mean_normalized_entropy"],  # normalised: 1 = uniform over experts
        "moe/dead_experts": agg["dead_experts"],
    }
    for name, stats in summary["layers"].items():
        out[f"moe/{name}/max_vio"] = stats["max_vio"]
        out[f"moe/{name}/load"] = [round(x, 4) for x in stats["load_share"]]
    return {k: v for k, v in out.items() if v is not None}


def _all_reduce(counts):
    """Sum counts over data-parallel ranks (a no-op in a single process)."""

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(counts, op=dist.ReduceOp.SUM)
    return counts
