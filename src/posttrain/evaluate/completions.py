"""Read completions produced elsewhere (vLLM, an API, another toolkit) and join them to data rows.

Each JSONL row holds one completion (`completion`) or several (`completions`), and an `id`
that matches a data row's id — or, failing that, the `prompt` text equal to the row's question.
"""

from __future__ import annotations

from pathlib import Path

from posttrain.errors import DataError
from posttrain.evaluate.sampling import Sample
from posttrain.io import iter_jsonl


def _texts(row: dict, where: str) -> list[str]:
    if "completions" in row:
        values = row["completions"]
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise DataError(f"{where}: 'completions' must be a list of strings")
        return values
    if "completion" in row:
        if not isinstance(row["completion"], str):
            raise DataError(f"{where}: 'completion' must be a string")
        return [row["completion"]]
    raise DataError(f"{where}: no 'completion' or 'completions' field; fields are: {', '.join(row)}")


def join_completions(path: str | Path, rows: list[dict]) -> tuple[list[dict], list[list[Sample]]]:
    """Rows that have completions, in data order, with their samples; unmatched lines are errors."""
    by_id = {str(r["id"]): i for i, r in enumerate(rows)}
    by_prompt = {r["question"].strip(): i for i, r in enumerate(rows)}
    grouped: dict[int, list[Sample]] = {}
    for lineno, line in enumerate(iter_jsonl(path), start=1):
        where = f"{path}:{lineno}"
        index = _match(line, by_id, by_prompt, where)
        grouped.setdefault(index, []).extend(
            Sample(text=t, num_tokens=line.get("num_tokens"), truncated=bool(line.get("truncated", False)))
            for t in _texts(line, where)
        )
    if not grouped:
        raise DataError(f"{path}: no completions")
    order = sorted(grouped)
    return [rows[i] for i in order], [grouped[i] for i in order]


def _match(line: dict, by_id: dict, by_prompt: dict, where: str) -> int:
    if "id" in line and str(line["id"]) in by_id:
        return by_id[str(line["id"])]
    prompt = line.get("prompt")
    if isinstance(prompt, list):  # chat messages: the last user turn is the problem
        prompt = next((m.get("content") for m in reversed(prompt) if m.get("role") == "user"), None)
    if isinstance(prompt, str) and prompt.strip() in by_prompt:
        return by_prompt[prompt.strip()]
    key = f"id {line['id']!r}" if "id" in line else "its prompt"
    raise DataError(
        f"{where}: {key} matches no row of the data (join by 'id', or by 'prompt' equal to the problem text)"
    )
