"""The eval report: its schema, the files it is written to, its terminal table, and --min gates.

`report.json` (schema_version 1) holds one object:

- `schema_version` (int): 1. Bumped when a field changes meaning or is removed; adding a key
  inside `metrics` or `routing` does not bump it.
- `model` (str): the model evaluated, as given to `--model` (Hub id or local path).
- `data` (str): the dataset, as given to `--data` (or the `--completions` file scored).
- `sampling` (object): how completions were drawn; a field is null when unknown (completions
  scored from a file). `n` samples per problem, `temperature`, `top_p`, `max_new_tokens`, `seed`.
- `metrics` (object), from `posttrain.evaluate.metrics.summarize`:
  - `n_problems`, `n_excluded` (gold unparseable; left out of pass@k and maj@k), `n_samples`.
  - `pass@1` (float | null): mean over problems of the fraction of correct samples.
  - `pass@1_ci95` ([lo, hi] | null): 95% CI of pass@1 over problems (normal approximation,
    clipped to [0, 1]; [pass@1, pass@1] with one problem).
  - `pass@k` for each k > 1 in `--k`: unbiased estimator of Chen et al. 2021, mean over problems.
  - `maj@k` for each k > 1 in `--k`: fraction of problems whose majority answer over the first
    k samples is correct.
  - `format_rate` (float | null): mean of the format reward (null when no such reward ran).
  - `rewards`: `{name: {"mean": float | null, "n": non-null values, "n_none": null values}}`.
  - `length`: completion length in tokens, `{"mean", "median", "max"}` (null when unknown).
  - `truncation_rate` (float | null): fraction of samples cut at `max_new_tokens`.
  Accuracy metrics are null when every problem is excluded.
- `routing` (object | null): MoE load balance from
  `posttrain.telemetry.routing_stats.routing_summary` (`{"layers": {...}, "aggregate": {...}}`),
  and `decode_mismatch` (`posttrain.models.replay.DecodeMismatch`): how cached decoding and a full
  forward of the same sequences differ (`flip_rate` of (token, layer) pairs, `token_flip_rate`,
  `logp_abs_mean`, `logp_abs_p99`, `tokens`); null for dense models or when routing was not recorded.
- `created_at` (str): ISO 8601 UTC time the report was made.
- `wall_seconds` (float | null): wall-clock seconds of the whole eval.

`report.md` shows the same numbers as a Markdown table to paste into a pull request;
`samples.jsonl` holds one row per problem with every sample, its extracted answer and rewards.
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from rich.console import Console
from rich.table import Table

from posttrain.errors import PosttrainError
from posttrain.io import atomic_write_json, atomic_write_jsonl, atomic_write_text

SCHEMA_VERSION = 1


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Sampling(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_new_tokens: int | None = None
    seed: int | None = None


class Report(BaseModel):
    model_config = ConfigDict(extra="forbid")
    schema_version: int = SCHEMA_VERSION
    model: str
    data: str
    sampling: Sampling = Field(default_factory=Sampling)
    metrics: dict[str, Any]
    routing: dict[str, Any] | None = None
    baseline: dict[str, Any] | None = None  # `--baseline`: its path, metrics and this eval's gains (evaluate.baseline)
    created_at: str = Field(default_factory=_utc_now)
    wall_seconds: float | None = None

    @field_validator("schema_version")
    @classmethod
    def _known_version(cls, v: int) -> int:
        if v != SCHEMA_VERSION:
            raise ValueError(f"schema_version {v} is not readable here; this posttrain reads {SCHEMA_VERSION}")
        return v


def write_report(report: Report | Mapping[str, Any], out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Write `report.json` and `report.md` into `out_dir` (atomically); return their paths."""
    report = report if isinstance(report, Report) else Report.model_validate(report)
    out = Path(out_dir)
    atomic_write_json(out / "report.json", report.model_dump(mode="json"))
    atomic_write_text(out / "report.md", render_markdown(report))
    return out / "report.json", out / "report.md"


def read_report(path: str | os.PathLike) -> Report:
    path = Path(path)
    if not path.is_file():
        raise PosttrainError(f"{path}: report not found")
    try:
        return Report.model_validate_json(path.read_text(encoding="utf-8"))
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, x['loc'])) or 'report'}: {x['msg']}" for x in e.errors())
        raise PosttrainError(f"{path}: not a valid eval report ({problems})") from None


_SAMPLE_KEYS = ("text", "extracted", "correct", "rewards", "num_tokens", "truncated")


def write_samples(records: Iterable[Mapping[str, Any]], out_dir: str | os.PathLike) -> Path:
    """Write `samples.jsonl`: one row per problem (id, prompt, answer, samples)."""
    rows = (
        {
            "id": r.get("id"),
            "prompt": r.get("prompt"),
            "answer": r.get("answer"),
            "samples": [{k: s.get(k) for k in _SAMPLE_KEYS} for s in r.get("samples", [])],
        }
        for r in records
    )
    path = Path(out_dir) / "samples.jsonl"
    atomic_write_jsonl(path, rows)
    return path


# ---- rendering: one list of rows feeds both the Markdown file and the terminal table ----


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def metric_rows(metrics: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(metric, value) rows in the order of `metrics`; keys unknown here are shown as they are."""
    rows: list[tuple[str, str]] = []
    for key, v in metrics.items():
        if key == "pass@1_ci95":
            continue
        if key == "pass@1" and metrics.get("pass@1_ci95"):
            lo, hi = metrics["pass@1_ci95"]
            rows.append((key, f"{_fmt(v)} (95% CI {lo:.3f}–{hi:.3f})"))
        elif key == "rewards":
            for name, r in v.items():
                rows.append((f"reward/{name}", f"{_fmt(r['mean'])} (n={r['n']}, None={r['n_none']})"))
        elif key == "length":
            lengths = " / ".join(_fmt(v[s], 1) for s in ("mean", "median", "max"))
            rows.append(("length mean / median / max", f"{lengths} tokens"))
        else:
            rows.append((key, _fmt(v)))
    return rows


_ROUTING_COLUMNS = ("layer", "experts", "MaxVio", "max/mean", "entropy", "norm. entropy", "dead")


def routing_rows(routing: Mapping[str, Any]) -> list[tuple[str, ...]]:
    rows = [
        (
            name,
            str(s["num_experts"]),
            _fmt(s["max_vio"]),
            _fmt(s["max_mean_ratio"]),
            _fmt(s["entropy"]),
            _fmt(s["normalized_entropy"]),
            str(len(s["dead_experts"])),
        )
        for name, s in routing["layers"].items()
    ]
    agg = routing["aggregate"]
    rows.append(
        (
            "mean (max)",
            "",
            f"{_fmt(agg['mean_max_vio'])} ({_fmt(agg['max_max_vio'])})",
            "",
            "",
            _fmt(agg["mean_normalized_entropy"]),
            str(agg["dead_experts"]),
        )
    )
    return rows


def render_markdown(report: Report) -> str:
    m, s = report.metrics, report.sampling
    sampling = ", ".join(f"{k}={'n/a' if v is None else v}" for k, v in s.model_dump().items())
    lines = [
        f"# Eval: `{report.model}`",
        "",
        f"- data: `{report.data}`",
        f"- sampling: {sampling}",
        f"- problems: {m.get('n_problems')} ({m.get('n_excluded')} excluded: unparseable gold), "
        f"samples: {m.get('n_samples')}",
        f"- created: {report.created_at}, wall time: {_fmt(report.wall_seconds, 1)} s",
        "",
        *_md_table(("metric", "value"), metric_rows(m)),
    ]
    if report.baseline:
        b = report.baseline
        rows = [
            (name, _fmt(b["metrics"].get(name), 3), _fmt(m.get(name), 3), "n/a" if gain is None else f"{gain:+.3f}")
            for name, gain in b["gains"].items()
        ]
        lines += [
            "",
            f"## Against the baseline `{b['model']}` ({b['report']})",
            "",
            *_md_table(("metric", "baseline", "this model", "gain"), rows),
        ]
    if report.routing:
        lines += ["", "## MoE routing", "", *_md_table(_ROUTING_COLUMNS, routing_rows(report.routing))]
        if report.routing.get("decode_mismatch"):
            lines += ["", mismatch_line(report.routing["decode_mismatch"])]
    return "\n".join(lines) + "\n"


def mismatch_line(m: Mapping[str, Any]) -> str:
    """One sentence: cached decoding vs a full forward of the same sequences."""
    return (
        f"Cached decoding vs a full forward ({m['tokens']} tokens): experts differ in {100 * m['flip_rate']:.2f}% "
        f"of (token, layer) pairs and {100 * m['token_flip_rate']:.2f}% of tokens; |log-prob gap| mean "
        f"{m['logp_abs_mean']:.2e}, p99 {m['logp_abs_p99']:.2e}."
    )


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return [line(header), line(["---"] * len(header)), *(line(r) for r in rows)]


def render_table(report: Report, console: Console) -> None:
    """Print the metrics (and routing, when present) as rich tables."""
    table = Table(title=f"eval: {report.model} on {report.data}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for row in metric_rows(report.metrics):
        table.add_row(*row)
    console.print(table)
    if report.routing:
        routing = Table(title="MoE routing")
        for col in _ROUTING_COLUMNS:
            routing.add_column(col, justify="left" if col == "layer" else "right")
        for row in routing_rows(report.routing):
            routing.add_row(*row)
        console.print(routing)
        if report.routing.get("decode_mismatch"):
            console.print(mismatch_line(report.routing["decode_mismatch"]))


# ---- gates: --min METRIC=VALUE ----

_NOT_GATEABLE = {"pass@1_ci95"}


def gate_values(metrics: Mapping[str, Any]) -> dict[str, float | None]:
    """The metrics a gate can name: each top-level number in `metrics`, and `reward/<name>`."""
    out: dict[str, float | None] = {}
    for key, v in metrics.items():
        if key in _NOT_GATEABLE or isinstance(v, (bool, dict, list)):
            continue
        if v is None or isinstance(v, (int, float)):
            out[key] = v
    for name, r in (metrics.get("rewards") or {}).items():
        out[f"reward/{name}"] = r["mean"]
    return out


def gate_names(ks: Iterable[int], reward_names: Iterable[str] = ()) -> list[str]:
    """The names `gate_values(summarize(...))` will have, to check --min before sampling starts."""
    ks = sorted({k for k in ks if k > 1})
    return [
        "n_problems",
        "n_excluded",
        "n_samples",
        "pass@1",
        *(f"pass@{k}" for k in ks),
        *(f"maj@{k}" for k in ks),
        "format_rate",
        "truncation_rate",
        *(f"reward/{r}" for r in reward_names),
    ]


def _is_rate(name: str) -> bool:
    return name.startswith(("pass@", "maj@")) or name.endswith("_rate")


def _unknown(name: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return f"unknown metric {name!r}{hint}; known metrics: {', '.join(known)}"


def parse_gates(items: Iterable[str], known: Iterable[str] | None = None, flag: str = "--min") -> dict[str, float]:
    """Parse `--min METRIC=VALUE` items; with `known` metric names, reject the others.

    Every bad item is reported in one PosttrainError, so one run fixes them all. With
    `flag="--min-gain"` the values are differences, so a rate's bar lies in [-1, 1].

    >>> parse_gates(["pass@1=0.35", "format_rate = 0.9"])
    {'pass@1': 0.35, 'format_rate': 0.9}
    """
    low = -1 if flag == "--min-gain" else 0
    known = list(known) if known is not None else None
    gates: dict[str, float] = {}
    errors: list[str] = []
    for item in items:
        name, sep, raw = (part.strip() for part in item.partition("="))
        where = f"{flag} {item!r}"
        if not sep or not name or not raw:
            errors.append(f"{where}: expected METRIC=VALUE, e.g. pass@1=0.35")
            continue
        try:
            value = float(raw)
        except ValueError:
            errors.append(f"{where}: {raw!r} is not a number (expected METRIC=VALUE, e.g. pass@1=0.35)")
            continue
        if not math.isfinite(value):
            errors.append(f"{where}: the bar must be a finite number")
        elif known is not None and name not in known:
            errors.append(f"{where}: {_unknown(name, known)}")
        elif _is_rate(name) and not low <= value <= 1:
            hint = f"; did you mean {name}={value / 100:g}?" if 1 < abs(value) <= 100 else ""
            errors.append(f"{where}: {name} is a fraction in [{low}, 1]{hint}")
        elif name in gates:
            errors.append(f"{where}: {name} is already gated at {gates[name]:g}")
        else:
            gates[name] = value
    if errors:
        raise PosttrainError(f"bad {flag} gate(s):\n  " + "\n  ".join(errors))
    return gates


def _fmt_against(value: float, bar: float) -> str:
    """Enough digits that a failing value never prints as equal to its bar (0.3499 vs 0.35)."""
    if isinstance(value, int):
        return str(value)
    for digits in range(3, 10):
        text = f"{value:.{digits}f}"
        if float(text) < bar:
            return text
    return repr(value)


def check_gates(metrics: Mapping[str, Any], gates: Mapping[str, float]) -> list[str]:
    """One message per gate the metrics fail (a value equal to the bar passes); [] when all pass.

    A gated metric that could not be computed (e.g. every gold unparseable) fails: a gate that
    cannot be checked must not pass silently. A name `metrics` lacks is a user mistake.
    """
    values = gate_values(metrics)
    unknown = [name for name in gates if name not in values]
    if unknown:
        raise PosttrainError("; ".join(_unknown(name, list(values)) for name in unknown))
    failures = []
    for name, bar in gates.items():
        value = values[name]
        if value is None:
            failures.append(f"{name} is not available (nothing to compute it from): it misses the bar {bar:g}")
        elif value < bar:
            failures.append(f"{name} = {_fmt_against(value, bar)} is below the bar {bar:g}")
    return failures
