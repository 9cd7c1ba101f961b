"""Shared helpers for rewards: completion text from TRL's two completion shapes, column access."""

from __future__ import annotations

from typing import Any


def completion_text(completion: Any) -> str:
    """Text of one completion: a string, or (conversational) a list of messages.

    >>> completion_text([{"role": "assistant", "content": "42"}])
    '42'
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return _content(completion.get("content"))
    if isinstance(completion, (list, tuple)):
        messages = [m for m in completion if isinstance(m, dict)]
        assistant = [m for m in messages if m.get("role", "assistant") == "assistant"]
        chosen = assistant or messages
        return "".join(_content(m.get("content")) for m in chosen)
    return "" if completion is None else str(completion)


def _content(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # multimodal parts: [{"type": "text", "text": ...}]
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


def completion_texts(completions) -> list[str]:
    return [completion_text(c) for c in completions]


def column(values, n: int) -> list:
    """A per-completion column as a list of length *n* (None when the column is absent)."""
    if values is None:
        return [None] * n
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
        return [values] * n
    values = list(values)
    if len(values) != n:
        raise ValueError(f"column has {len(values)} values for {n} completions")
    return values
