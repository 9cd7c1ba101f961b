"""`expert_load.png`: each expert's load by layer over logged steps, and MaxVio per layer.

Input is metrics rows (`metrics.jsonl` or the balancing callback's history) holding
`moe/layer{i}/load` (load shares) and `moe/layer{i}/max_vio`. The heat-map stacks every layer's
experts as rows and logged steps as columns; colour is load / mean load, so 1 (white) is balanced,
red is overloaded (clipped at 2x) and blue starved. Renders with matplotlib's Agg (no display).
"""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np

from posttrain.telemetry.plots import save_figure

_LOAD = re.compile(r"^moe/layer(\d+)/load$")


def load_matrix(rows: list[dict]) -> tuple[list[int], list[int], list[list[float]]]:
    """(steps, layer indices, matrix) with one row per (layer, expert) and one column per step,
    values load / mean; a step that lacks a layer gets NaN there."""
    rows = [r for r in rows if "step" in r and any(_LOAD.match(k) for k in r)]
    layers = sorted({int(m.group(1)) for r in rows for k in r if (m := _LOAD.match(k))})
    widths = {i: max(len(r[f"moe/layer{i}/load"]) for r in rows if f"moe/layer{i}/load" in r) for i in layers}
    matrix = []
    for i in layers:
        for expert in range(widths[i]):
            line = []
            for r in rows:
                share = r.get(f"moe/layer{i}/load")
                line.append(float(share[expert]) * len(share) if share and expert < len(share) else float("nan"))
            matrix.append(line)
    return [int(r["step"]) for r in rows], layers, matrix


def plot_expert_load(rows: list[dict], out_path: Path) -> Path | None:
    """Write the heat-map; returns the path, or None when no row carries per-layer loads."""
    steps, layers, matrix = load_matrix(rows)
    if not matrix:
        return None

    matplotlib.use("Agg")

    data = np.asarray(matrix, dtype=float)
    experts_per_layer = len(matrix) // len(layers)
    fig, (ax_map, ax_vio) = plt.subplots(
        1, 2, figsize=(12, max(3.5, min(14, 0.5 + 0.06 * len(matrix)))), gridspec_kw={"width_ratios": [3, 2]}
    )
    image = ax_map.imshow(
        data,
        aspect="auto",
        interpolation="nearest",
        cmap="RdBu_r",
        vmin=0,
        vmax=2,
        extent=(-0.5, len(steps) - 0.5, len(matrix) - 0.5, -0.5),
    )
    for boundary in range(1, len(layers)):
        ax_map.axhline(boundary * experts_per_layer - 0.5, color="black", lw=0.6)
    ax_map.set_yticks([(k + 0.5) * experts_per_layer - 0.5 for k in range(len(layers))], [f"layer {i}" for i in layers])
    ticks = np.linspace(0, len(steps) - 1, num=min(len(steps), 8), dtype=int)
    ax_map.set_xticks(ticks, [str(steps[t]) for t in ticks])
    ax_map.set(xlabel="step", title="expert load / mean (rows: experts, grouped by layer)")
    fig.colorbar(image, ax=ax_map, fraction=0.04, extend="max")
    for i in layers:
        points = [(r["step"], r[f"moe/layer{i}/max_vio"]) for r in rows if f"moe/layer{i}/max_vio" in r]
        if points:
            ax_vio.plot(*zip(*points), label=f"layer {i}", lw=1)
    ax_vio.set(xlabel="step", ylabel="MaxVio (max / mean load - 1)", title="imbalance per layer")
    if len(layers) <= 12:
        ax_vio.legend(fontsize=7)

    return save_figure(fig, out_path)


def plot_routing_load(routing: dict | None, out_path: Path) -> Path | None:
    """An eval's expert load (`report.json`'s `routing`): one row per MoE layer, one column per expert,
    colour load / mean as in expert_load.png. None for a dense model or when routing was not recorded."""
    layers = (routing or {}).get("layers") or {}
    shares = {name: stats.get("load_share") for name, stats in layers.items() if stats.get("load_share")}
    if not shares:
        return None

    matplotlib.use("Agg")

    width = max(len(share) for share in shares.values())
    data = np.full((len(shares), width), np.nan)
    for row, share in enumerate(shares.values()):
        data[row, : len(share)] = np.asarray(share, dtype=float) * len(share)
    fig, ax = plt.subplots(figsize=(min(12, 2 + 0.35 * width), max(2.5, 0.5 + 0.4 * len(shares))))
    image = ax.imshow(data, aspect="auto", interpolation="nearest", cmap="RdBu_r", vmin=0, vmax=2)
    ax.set(xlabel="expert", ylabel="MoE layer", title="expert load / mean (1 = balanced)")
    ax.set_yticks(range(len(shares)), list(shares))
    fig.colorbar(image, ax=ax)
    return save_figure(fig, out_path)
