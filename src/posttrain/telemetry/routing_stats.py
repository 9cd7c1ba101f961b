"""Load-balance numbers for MoE routing, from per-layer expert token counts.

Counts come in as `{layer_name: [tokens routed to expert 0, expert 1, ...]}`. With top-k routing
each token is counted once per chosen expert, so a layer's total is tokens × k. The numbers:

- `load_share`: each expert's fraction of the layer's routed tokens.
- `max_vio`: max load / mean load − 1, the MaxVio of DeepSeek's loss-free balancing paper
  (Wang et al. 2024): 0 when perfectly balanced, E − 1 when one of E experts takes everything.
- `max_mean_ratio`: max load / mean load (= max_vio + 1), the form people quote in logs.
- `entropy`: Shannon entropy of `load_share` in nats; `normalized_entropy` divides it by
  log(E), so 1 is uniform and 0 is a single expert (a 1-expert layer counts as 1: balanced).
- `dead_experts`: indices of experts that got no token.

A layer with no tokens at all has no shares: its ratios and entropies are None and every
expert is dead. Pure numpy, no torch: GRPO telemetry and the eval report both call this.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

Counts = Sequence[float] | np.ndarray


def _as_counts(counts: Counts, where: str = "counts") -> np.ndarray:
    arr = np.asarray(counts, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{where}: expected a non-empty 1-D sequence of counts, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError(f"{where}: counts must be finite and non-negative, got {arr.tolist()}")
    return arr


def layer_stats(counts: Counts) -> dict[str, Any]:
    """Balance numbers for one layer (see the module docstring for each field).

    >>> layer_stats([10, 10, 10, 30])["max_vio"]   # 30 / 15 - 1
    1.0
    """
    arr = _as_counts(counts)
    num_experts, total = arr.size, float(arr.sum())
    dead = [int(i) for i in np.flatnonzero(arr == 0)]
    if total == 0:
        return {
            "num_experts": num_experts,
            "total": 0.0,
            "load_share": [0.0] * num_experts,
            "max_vio": None,
            "max_mean_ratio": None,
            "entropy": None,
            "normalized_entropy": None,
            "dead_experts": dead,
        }
    share = arr / total
    ratio = float(arr.max() / arr.mean())
    nonzero = share[share > 0]  # 0 · log 0 = 0 by convention
    entropy = max(0.0, float(-(nonzero * np.log(nonzero)).sum()))  # no "-0.000" for one expert
    normalized = entropy / float(np.log(num_experts)) if num_experts > 1 else 1.0
    return {
        "num_experts": num_experts,
        "total": total,
        "load_share": [float(x) for x in share],
        "max_vio": ratio - 1.0,
        "max_mean_ratio": ratio,
        "entropy": entropy,
        "normalized_entropy": normalized,
        "dead_experts": dead,
    }


def routing_summary(counts_by_layer: Mapping[str, Counts]) -> dict[str, Any]:
    """Per-layer stats plus an aggregate: `{"layers": {name: layer_stats}, "aggregate": {...}}`.

    The aggregate averages over layers that routed any token (an idle layer has no balance to
    average) but counts dead experts in every layer: `mean_max_vio`, `max_max_vio` with the
    `max_vio_layer` that has it, `mean_normalized_entropy`, `dead_experts` (a total over layers).
    """
    layers = {name: layer_stats(c) for name, c in counts_by_layer.items()}
    active = {name: s for name, s in layers.items() if s["max_vio"] is not None}
    worst = max(active, key=lambda name: active[name]["max_vio"], default=None)
    return {
        "layers": layers,
        "aggregate": {
            "num_layers": len(layers),
            "mean_max_vio": _mean(s["max_vio"] for s in active.values()),
            "max_max_vio": None if worst is None else active[worst]["max_vio"],
            "max_vio_layer": worst,
            "mean_normalized_entropy": _mean(s["normalized_entropy"] for s in active.values()),
            "dead_experts": sum(len(s["dead_experts"]) for s in layers.values()),
        },
    }


def merge_counts(batches: Iterable[Mapping[str, Counts]]) -> dict[str, list[float]]:
    """Sum per-layer expert counts over batches; a layer missing from a batch adds nothing.

    Counts stay whole numbers when they came in as whole numbers, so they read cleanly in JSON.
    """
    totals: dict[str, np.ndarray] = {}
    for batch in batches:
        for name, counts in batch.items():
            arr = _as_counts(counts, where=f"layer {name!r}")
            if name not in totals:
                totals[name] = arr.copy()
            elif totals[name].size != arr.size:
                raise ValueError(
                    f"layer {name!r}: {arr.size} expert counts in one batch, {totals[name].size} in another"
                )
            else:
                totals[name] += arr
    return {name: [int(x) if x.is_integer() else float(x) for x in arr] for name, arr in totals.items()}


def _mean(values: Iterable[float]) -> float | None:
    values = list(values)
    return float(np.mean(values)) if values else None


def routing_line(logs: dict) -> str:
    """The progress-bar fragment, e.g. "MaxVio 0.42 dead 0"; "" when the logs hold no routing stats.

    >>> routing_line({"moe/max_vio_mean": 0.4213, "moe/dead_experts": 0})
    'MaxVio 0.42 dead 0'
    """
    parts = []
    if "moe/max_vio_mean" in logs:
        parts.append(f"MaxVio {float(logs['moe/max_vio_mean']):.2f} dead {int(logs.get('moe/dead_experts', 0))}")
    mismatch = mismatch_line(logs)
    if mismatch:
        parts.append(mismatch)
    return "  ".join(parts)


def mismatch_line(logs: dict) -> str:
    """The sampler-trainer mismatch fragment (posttrain.models.replay); "" when not logged.

    >>> mismatch_line({"routing/flip_rate": 0.0, "routing/router_flip_rate": 0.031, "mismatch/logp_abs_mean": 2.1e-3})
    'flip 0.0% (router 3.1%) |dlogp| 2.1e-03'
    """
    if "routing/flip_rate" not in logs:
        return ""
    line = f"flip {100 * float(logs['routing/flip_rate']):.1f}%"
    if "routing/router_flip_rate" in logs and logs["routing/router_flip_rate"] != logs["routing/flip_rate"]:
        line += f" (router {100 * float(logs['routing/router_flip_rate']):.1f}%)"
    if "mismatch/logp_abs_mean" in logs:
        line += f" |dlogp| {float(logs['mismatch/logp_abs_mean']):.1e}"
    return line
