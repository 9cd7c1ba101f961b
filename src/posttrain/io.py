"""Files that survive a crash: atomic writes (temp file, fsync, rename) and JSONL helpers."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from posttrain.errors import DataError


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` so a reader sees the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def atomic_write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, default=str) + "\n" for r in rows))


def append_jsonl(path: str | os.PathLike, row: dict, sync: bool = True) -> None:
    """Append one row and flush it: a crash of the process loses at most the row being written. `sync`
    also fsyncs it, for a machine crash; without, call `sync_file` where the rows must be durable."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row, default=str) + "\n")
        f.flush()
        if sync:
            os.fsync(f.fileno())


def sync_file(path: str | os.PathLike) -> None:
    """fsync `path` if it exists."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def repair_torn_tail(path: str | os.PathLike) -> bool:
    """Cut a partial last line (left by a crash mid-append) so new rows start on a fresh line."""
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        return False
    with open(path, "rb+") as f:
        data = f.read()
        if data.endswith(b"\n"):
            return False
        f.truncate(data.rfind(b"\n") + 1)
    return True


def iter_jsonl(
    path: str | os.PathLike, *, skip_bad_rows: bool = False, skipped: list[str] | None = None
) -> Iterator[dict]:
    """Yield the JSON objects of a JSONL file; a malformed line names the file and line number.

    A torn last line (a crash mid-append) is skipped silently only when it is the final line,
    since that is what an interrupted `append_jsonl` leaves behind. With `skip_bad_rows`, each
    skipped line's `file:line: reason` is appended to `skipped` when given.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    with open(path, encoding="utf-8") as f:
        lines = f.readlines()
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            if lineno == len(lines) and not line.endswith("\n"):
                return
            problem = f"{path}:{lineno}: malformed JSON ({e.msg}, column {e.colno})"
            if skip_bad_rows:
                _note(skipped, problem)
                continue
            raise DataError(problem) from None
        if not isinstance(row, dict):
            problem = f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}"
            if skip_bad_rows:
                _note(skipped, problem)
                continue
            raise DataError(problem)
        yield row


def _note(skipped: list[str] | None, problem: str) -> None:
    if skipped is not None:
        skipped.append(problem)


def read_jsonl(path: str | os.PathLike, *, skip_bad_rows: bool = False) -> list[dict]:
    return list(iter_jsonl(path, skip_bad_rows=skip_bad_rows))
