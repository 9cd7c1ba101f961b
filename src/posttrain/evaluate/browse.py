"""report.html for a run's held-out evaluations: the models it evaluated (GRPO: base and trained;
distillation: teacher, student before and after) side by side, from the `heldout_<label>.jsonl`
files the run wrote, with their pass@k curves and the run's own figures (`telemetry.report_html`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from posttrain.evaluate.metrics import summarize
from posttrain.evaluate.scoring import answers_of
from posttrain.io import read_jsonl
from posttrain.telemetry import report_html
from posttrain.telemetry.plots import pass_at_k_curve, plot_pass_at_k


def write_heldout_html(
    out: Path,
    title: str,
    labels: Sequence[str],
    facts: Sequence[tuple[str, str]],
    correctness,
    num_samples: int,
    figures: Mapping[str, Path | None] | None = None,
) -> Path | None:
    """Write out/report.html (and out/pass_at_k.png) for the labels whose held-out file exists; None if none does."""
    files = {label: out / f"heldout_{label}.jsonl" for label in labels}
    runs = {label: read_jsonl(path) for label, path in files.items() if path.is_file()}
    if not runs:
        return None
    ks = [k for k in (1, 2, 4, 8, 16, 32, 64) if k <= num_samples]
    equivalent = answers_of(correctness).equivalent
    curves = {label: pass_at_k_curve(summarize(records, ks, equivalent)) for label, records in runs.items()}
    shown = {"held-out pass@k": plot_pass_at_k(curves, out / "pass_at_k.png"), **(figures or {})}
    shown = {caption: path for caption, path in shown.items() if path and Path(path).is_file()}
    return report_html.write(out / "report.html", title, facts, runs, shown)
