"""`posttrain eval --baseline REPORT --min-gain METRIC=DELTA`: gate on a gain over another model.

"The trained policy beats the model it started from" is the CI question after post-training, and
a gain means something only between two evals of the same problems with the same sampling. So
the baseline report's data and sampling settings must equal this eval's (checked before any
sampling starts), and its problem count after; otherwise the eval stops with one line naming
what differs. Gains are this eval's metric minus the baseline's, for every metric both have.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from posttrain.errors import PosttrainError
from posttrain.evaluate.report import Report, Sampling, gate_values, read_report


def load_baseline(path: str | Path, data: str, sampling: Sampling) -> Report:
    """The baseline report, refused when it was evaluated on other data or with other sampling."""
    baseline = read_report(path)
    differences = [f"data {baseline.data!r} vs {data!r}"] if baseline.data != data else []
    ours, theirs = sampling.model_dump(), baseline.sampling.model_dump()
    differences += [f"{key} {theirs[key]!r} vs {ours[key]!r}" for key in ours if ours[key] != theirs[key]]
    if differences:
        raise PosttrainError(
            f"--baseline {path}: evaluated differently from this eval, so a gain would compare unlike "
            f"things (baseline vs this: {'; '.join(differences)})"
        )
    return baseline


def gains(metrics: Mapping[str, Any], baseline: Report) -> dict[str, float | None]:
    """This eval's gateable metrics minus the baseline's (None where either is missing)."""
    ours, theirs = gate_values(metrics), gate_values(baseline.metrics)
    return {
        name: None if ours[name] is None or theirs.get(name) is None else ours[name] - theirs[name]
        for name in ours
        if name in theirs and name not in ("n_problems", "n_excluded", "n_samples")
    }


def compare(
    metrics: Mapping[str, Any], baseline: Report, path: str | Path, bars: Mapping[str, float]
) -> tuple[dict, list[str]]:
    """(the report's `baseline` entry, one message per --min-gain bar missed)."""
    if metrics.get("n_problems") != baseline.metrics.get("n_problems"):
        raise PosttrainError(
            f"--baseline {path}: {baseline.metrics.get('n_problems')} problems there, "
            f"{metrics.get('n_problems')} here: not the same problems"
        )
    delta = gains(metrics, baseline)
    failures = []
    for name, bar in bars.items():
        if delta.get(name) is None:
            failures.append(
                f"{name}: no gain to compute (missing in this eval or the baseline): it misses the bar {bar:+g}"
            )
        elif delta[name] < bar:
            failures.append(
                f"{name} gained {delta[name]:+.4f} over the baseline ({gate_values(baseline.metrics)[name]:.4f} -> "
                f"{gate_values(metrics)[name]:.4f}), below the required {bar:+g}"
            )
    entry = {"report": str(path), "model": baseline.model, "metrics": gate_values(baseline.metrics), "gains": delta}
    return entry, failures
