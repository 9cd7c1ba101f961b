"""`reward.png`: reward per reward function and training accuracy over steps, with the held-out
accuracy before and after as reference lines. Renders with matplotlib's Agg (no display)."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import matplotlib.ticker


def plot_rewards(rows: list[dict], out_path: Path, heldout: dict | None = None, title: str = "GRPO") -> Path | None:
    """Plot `metrics.jsonl` rows; returns the path, or None when there is nothing to plot."""

    matplotlib.use("Agg")

    rows = [r for r in rows if "step" in r]
    if not rows:
        return None
    steps = [r["step"] for r in rows]
    reward_keys = sorted({k for r in rows for k in r if k.startswith("rewards/") and k.endswith("/mean")})
    fig, (ax_reward, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    if any("reward_mean" in r for r in rows):
        ax_reward.plot(steps, [r.get("reward_mean") for r in rows], label="total (weighted)", lw=2)
    for key in reward_keys:
        ax_reward.plot(steps, [r.get(key) for r in rows], label=key.split("/")[1], alpha=0.8)
    ax_reward.set(xlabel="step", ylabel="mean reward", title=f"{title}: rewards")
    ax_reward.legend(fontsize=8)
    acc_key = "rewards/accuracy/mean"
    if any(acc_key in r for r in rows):
        ax_acc.plot(steps, _smooth([r.get(acc_key) for r in rows]), label="train accuracy (smoothed)")
    for label, value, style in _heldout_lines(heldout or {}):
        ax_acc.axhline(value, ls=style, lw=1, color="gray" if "base" in label else "green", label=label)
    ax_acc.set(xlabel="step", ylabel="accuracy", title=f"{title}: accuracy", ylim=(0, 1))
    ax_acc.legend(fontsize=8)
    return save_figure(fig, out_path)


def pass_at_k_curve(metrics: dict) -> dict[int, float]:
    """{k: pass@k} from a summarize() result (pass@1 and each pass@k it holds); nulls left out."""
    curve = {int(key[5:]): value for key, value in metrics.items() if key.startswith("pass@") and key[5:].isdigit()}
    return {k: curve[k] for k in sorted(curve) if isinstance(curve[k], int | float)}


def plot_pass_at_k(curves: dict[str, dict[int, float]], out_path: Path, title: str = "held-out") -> Path | None:
    """pass@k against k for one or more models (label -> {k: value}); None when no curve has a point."""
    curves = {label: curve for label, curve in curves.items() if curve}
    if not curves:
        return None

    matplotlib.use("Agg")

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for label, curve in curves.items():
        ks = sorted(curve)
        ax.plot(ks, [curve[k] for k in ks], marker="o", label=label)
    ax.set(xlabel="k (samples per problem)", ylabel="pass@k", title=f"{title}: pass@k", ylim=(0, 1.02))
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted({k for curve in curves.values() for k in curve}))
    ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.legend(fontsize=8)
    return save_figure(fig, out_path)


def save_figure(fig, out_path: Path) -> Path:
    """Write a PNG through a temporary file, so a crash never leaves half an image."""

    fig.tight_layout()
    out_path = Path(out_path)
    tmp = out_path.with_name(f".{out_path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(out_path)
    return out_path


def _heldout_lines(heldout: dict):
    names = {
        "base_accuracy": ("held-out pass@1, base", "--"),
        "final_accuracy": ("held-out pass@1, trained", "--"),
        "base_greedy_accuracy": ("held-out greedy, base", ":"),
        "final_greedy_accuracy": ("held-out greedy, trained", ":"),
    }
    for key, (label, style) in names.items():
        if heldout.get(key) is not None:
            yield label, heldout[key], style


def _smooth(values: list, window: int = 10) -> list:
    out, acc = [], []
    for v in values:
        if v is not None:
            acc = (acc + [v])[-window:]
        out.append(sum(acc) / len(acc) if acc else None)
    return out
