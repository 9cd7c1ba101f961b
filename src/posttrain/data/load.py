"""Turn a data source (built-in task, local file, Hub dataset) into uniform problem rows.

Every row leaves here as `{"id", "question", "answer", ...extra columns}` with `answer` a
string; prompts are built from `question` later (`to_prompt`), once the tokenizer is known.
Built-in tasks also carry `solution`, a worked completion used for warm-starts.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import datasets
import pyarrow.parquet as pq

from posttrain.data.tasks import TASKS
from posttrain.errors import DataError
from posttrain.io import iter_jsonl

log = logging.getLogger(__name__)

FILE_SUFFIXES = (".jsonl", ".json", ".parquet")

# Column conventions of the evaluation sets users ask for by name.
PRESETS: dict[str, dict[str, str]] = {
    "gsm8k": {"prompt_column": "question", "answer_column": "answer"},
    "math500": {"prompt_column": "problem", "answer_column": "answer"},
}


def source_kind(source: str) -> str:
    """'task', 'file' or 'hub' — a file wins over a task of the same name if it exists."""
    if Path(source).suffix in FILE_SUFFIXES or Path(source).is_file():
        return "file"
    if source in TASKS:
        return "task"
    return "hub"


def gsm8k_answer(text: str) -> str:
    """GSM8K golds end in `#### 1,234`: keep the number, drop thousands separators."""
    return text.rsplit("####", 1)[-1].strip().replace(",", "")


def detect_preset(columns: list[str], sample: dict) -> str:
    if "question" in columns and "answer" in columns and "####" in str(sample.get("answer", "")):
        return "gsm8k"
    if "problem" in columns and "answer" in columns:
        return "math500"
    return "none"


def generate_task(name: str, n: int, seed: int, task_args: dict[str, Any]) -> list[dict]:
    generate, _ = TASKS[name]
    try:
        rows = generate(n, seed=seed, **task_args)
    except TypeError as e:
        raise DataError(f"task {name!r}: bad task_args {task_args} ({e})") from None
    return [{"id": f"{name}-{seed}-{i}", **row} for i, row in enumerate(rows)]


def read_file_rows(path: Path, skip_bad_rows: bool, skipped: list[str] | None = None) -> list[dict]:
    if not path.is_file():
        raise DataError(f"{path}: data file not found")
    if path.suffix == ".jsonl":
        return list(iter_jsonl(path, skip_bad_rows=skip_bad_rows, skipped=skipped))
    if path.suffix == ".json":
        try:
            rows = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{e.lineno}: malformed JSON ({e.msg})") from None
        if not isinstance(rows, list):
            raise DataError(f"{path}: expected a JSON list of objects")
        return rows
    if path.suffix == ".parquet":
        return pq.read_table(path).to_pylist()
    raise DataError(f"{path}: unsupported file type {path.suffix!r}; use one of {', '.join(FILE_SUFFIXES)}")


def read_hub_rows(name: str, config_name: str | None, split: str) -> list[dict]:

    try:
        ds = datasets.load_dataset(name, config_name, split=split)
    except Exception as e:  # the Hub raises many types; the user needs the name and the reason
        raise DataError(
            f"could not load Hub dataset {name!r} (config {config_name!r}, split {split!r}): "
            f"{type(e).__name__}: {e}. Built-in tasks: {', '.join(TASKS)}; local files: "
            f"{', '.join(FILE_SUFFIXES)}"
        ) from None
    return ds.to_list()


def normalise_rows(
    rows: list[dict],
    origin: str,
    preset: str = "auto",
    prompt_column: str | None = None,
    answer_column: str | None = None,
    skip_bad_rows: bool = False,
) -> tuple[list[dict], int]:
    """Map raw rows onto `id`/`question`/`answer`; returns (rows, number skipped)."""
    if not rows:
        raise DataError(f"{origin}: no rows")
    columns = list(rows[0])
    if preset == "auto":
        preset = detect_preset(columns, rows[0])
    defaults = PRESETS.get(preset, {"prompt_column": "prompt", "answer_column": "answer"})
    prompt_col = prompt_column or defaults["prompt_column"]
    answer_col = answer_column or defaults["answer_column"]
    out, skipped = [], 0
    for i, row in enumerate(rows):
        missing = [c for c in (prompt_col, answer_col) if c not in row or row[c] is None]
        if missing:
            if skip_bad_rows:
                skipped += 1
                continue
            raise DataError(
                f"{origin}: row {i + 1} has no column {missing[0]!r}; columns are: "
                f"{', '.join(map(str, row))} (set data.prompt_column / data.answer_column)"
            )
        answer = str(row[answer_col])
        if preset == "gsm8k":
            answer = gsm8k_answer(answer)
        extra = {k: v for k, v in row.items() if k not in (prompt_col, answer_col, "id")}
        out.append(
            {
                **extra,
                "id": str(row.get("id", row.get("unique_id", i))),
                "question": str(row[prompt_col]),
                "answer": answer,
            }
        )
    if not out:
        raise DataError(f"{origin}: every row was malformed ({skipped} skipped)")
    return out, skipped


def load_rows(
    source: str,
    *,
    split: str = "train",
    config_name: str | None = None,
    preset: str = "auto",
    prompt_column: str | None = None,
    answer_column: str | None = None,
    task_args: dict[str, Any] | None = None,
    n: int | None = None,
    seed: int = 0,
    skip_bad_rows: bool = False,
) -> list[dict]:
    """Rows of `source`; `n` caps file/Hub rows and sets how many a task generates."""
    kind = source_kind(source)
    if kind == "task":
        return generate_task(source, n or 5000, seed, task_args or {})
    malformed: list[str] = []
    if kind == "file":
        raw, origin = read_file_rows(Path(source), skip_bad_rows, malformed), source
    else:
        raw, origin = read_hub_rows(source, config_name, split), f"{source}[{split}]"
    rows, incomplete = normalise_rows(raw, origin, preset, prompt_column, answer_column, skip_bad_rows)
    if malformed or incomplete:
        first = f" (first: {malformed[0]})" if malformed else ""
        log.warning(
            "%s: skipped %d bad rows (data.skip_bad_rows): %d malformed, %d without the prompt/answer columns%s",
            origin,
            len(malformed) + incomplete,
            len(malformed),
            incomplete,
            first,
        )
    return rows[:n] if n else rows


def without_questions(rows: list[dict], exclude: set[str]) -> list[dict]:
    """Drop rows whose question is in `exclude` (keeps held-out problems out of training)."""
    return [r for r in rows if r["question"] not in exclude]


def to_prompt(question: str, system_prompt: str | None, chat: bool) -> list[dict] | str:
    """A conversational prompt for tokenizers with a chat template, plain text otherwise."""
    if not chat:
        return f"{system_prompt}\n\n{question}" if system_prompt else question
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return [*messages, {"role": "user", "content": question}]
