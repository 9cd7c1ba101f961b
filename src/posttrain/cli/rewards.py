"""`posttrain rewards`: list the reward functions, and score a JSONL file of completions."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import typer

from posttrain.cli.common import console, run_or_exit
from posttrain.errors import DataError, PosttrainError

app = typer.Typer(help="List reward functions and score completions.", no_args_is_help=True)

DEFAULT_REWARDS = ("accuracy", "format")


@app.command("list")
def list_command() -> None:
    """Built-in rewards with their one-line descriptions and kwargs (defaults)."""
    from rich.markup import escape
    from rich.table import Table

    from posttrain.rewards.registry import available

    table = Table(title="Built-in rewards (plug-ins: rewards/file.py:function or package.module:function)")
    table.add_column("name", style="bold")
    table.add_column("description")
    table.add_column("kwargs")
    for info in available().values():
        kwargs = [f"{k} (required)" for k in info.required]
        kwargs += [f"{k}={_short(v)}" for k, v in info.kwargs.items()]
        description = info.description.replace("``", "").replace("*", "")
        table.add_row(info.name, escape(description), escape(", ".join(kwargs) or "-"))
    console().print(table)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


@app.command("score")
def score_command(
    file: Path = typer.Argument(
        ..., exists=True, dir_okay=False, readable=True, help="JSONL rows with a `completion` and the answer column."
    ),
    reward: list[str] = typer.Option(
        None, "--reward", "-r", help="Reward name (repeatable); default: accuracy and format."
    ),
    recipe: Path = typer.Option(
        None,
        "--recipe",
        exists=True,
        dir_okay=False,
        help="Take the rewards (name, weight, kwargs) from a recipe's `rewards:` list.",
    ),
    answer_column: str = typer.Option("answer", "--answer-column", help="Column holding the gold answer."),
    output: Path = typer.Option(None, "--output", "-o", help="Write per-row scores to this JSONL file."),
) -> None:
    """Score each row's `completion` and print mean, n scored and n None per reward."""
    run_or_exit(lambda: _score(file, reward or [], recipe, answer_column, output))


def _score(file: Path, names: list[str], recipe: Path | None, answer_column: str, output: Path | None) -> None:
    from posttrain.rewards.registry import build

    specs, base_dir, strict = [], Path.cwd(), False
    if recipe is not None:
        specs, strict = _recipe_rewards(recipe)
    specs += [{"name": n} for n in names]
    if not specs:
        specs = [{"name": n} for n in DEFAULT_REWARDS]
    funcs, weights = build(specs, base_dir=base_dir, strict=strict)
    rows = read_rows(file)
    scores = score_rows(rows, funcs, answer_column)
    if output is not None:
        write_jsonl_atomic(output, _output_rows(rows, funcs, weights, scores))
    _print_summary(file, funcs, weights, scores, output)


def read_recipe_rewards(path: Path) -> list[dict]:
    """The `rewards:` entries of a recipe YAML, read directly (tolerant of other keys)."""
    return _recipe_rewards(path)[0]


def _recipe_rewards(path: Path) -> tuple[list[dict], bool]:
    """(entries, strict) of a recipe's `rewards:`, a list or a mapping `{functions: [...], strict: ...}`."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise PosttrainError(f"{path}: not valid YAML: {exc}") from exc
    entries = data.get("rewards") if isinstance(data, dict) else None
    strict = False
    if isinstance(entries, dict):  # the mapping form; a plain list is shorthand for its `functions`
        entries, strict = entries.get("functions"), entries.get("strict", False)
        if not isinstance(strict, bool):
            raise PosttrainError(f"{path}: rewards.strict must be true or false, got {strict!r}")
    if not isinstance(entries, list) or not entries:
        raise PosttrainError(f"{path}: no `rewards:` list (entries look like `- {{name: accuracy, weight: 1.0}}`)")
    specs = []
    for i, entry in enumerate(entries):
        if isinstance(entry, str):
            entry = {"name": entry}
        if not isinstance(entry, dict):
            raise PosttrainError(f"{path}: rewards[{i}] must be a mapping with name, weight, kwargs")
        specs.append(entry)
    return specs, strict


def read_rows(path: Path) -> list[dict]:
    rows = []
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{number}: not valid JSON ({exc.msg})") from exc
            if not isinstance(row, dict) or "completion" not in row:
                raise DataError(f"{path}:{number}: each row needs a `completion` field")
            row.setdefault("_line", number)
            rows.append(row)
    if not rows:
        raise DataError(f"{path}: no rows")
    return rows


def score_rows(rows: list[dict], funcs: list, answer_column: str) -> list[list[float | None]]:
    """Scores per reward (outer list) per row (inner list), every reward called once on all rows."""
    completions = [row["completion"] for row in rows]
    keys = {k for row in rows for k in row} - {"completion", "_line", answer_column}
    columns = {k: [row.get(k) for row in rows] for k in keys}
    columns["answer"] = [row.get(answer_column) for row in rows]
    return [list(func(completions=completions, **columns)) for func in funcs]


def _output_rows(rows, funcs, weights, scores):
    for i, row in enumerate(rows):
        out = {"line": row["_line"]}
        if "id" in row:
            out["id"] = row["id"]
        values = {f.__name__: s[i] for f, s in zip(funcs, scores)}
        out.update(values)
        present = [(w, v) for w, v in zip(weights, values.values()) if v is not None]
        out["total"] = sum(w * v for w, v in present) if present else None
        yield out


def write_jsonl_atomic(path: Path, rows) -> None:
    """Write rows to *path* via a temporary file and os.replace, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _print_summary(file, funcs, weights, scores, output) -> None:
    from rich.markup import escape
    from rich.table import Table

    from posttrain.rewards.guard import error_counts

    errors = error_counts(funcs)
    table = Table(title=escape(f"{file} ({len(scores[0]) if scores else 0} rows)"))
    for column in ("reward", "weight", "mean", "n scored", "n None", "n errors"):
        table.add_column(column, justify="left" if column == "reward" else "right")
    for func, weight, values in zip(funcs, weights, scores):
        scored = [v for v in values if v is not None]
        mean = f"{sum(scored) / len(scored):.4f}" if scored else "-"
        table.add_row(
            escape(func.__name__),
            f"{weight:g}",
            mean,
            str(len(scored)),
            str(len(values) - len(scored)),
            str(errors.get(func.__name__, 0)),
        )
    out = console()
    out.print(table)
    if output is not None:
        out.print(f"per-row scores written to {output}")
