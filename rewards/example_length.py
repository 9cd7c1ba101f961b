"""Example user reward plug-in: a recipe loads it as ``rewards/example_length.py:short_answer_bonus``.

    rewards:
      - {name: accuracy, weight: 1.0}
      - {name: "rewards/example_length.py:short_answer_bonus", weight: 0.1, kwargs: {max_chars: 400}}

A reward is a pure function: completions (strings, or lists of chat messages) in, one
float -- or None where it does not apply -- out per completion.  Dataset columns such as
``answer`` arrive as keyword arguments; configuration is the keyword-only parameters.
"""

from __future__ import annotations


def _text(completion) -> str:
    if isinstance(completion, list):  # conversational: [{"role": "assistant", "content": ...}]
        return "".join(str(m.get("content", "")) for m in completion if isinstance(m, dict))
    return str(completion)


def short_answer_bonus(completions, *, max_chars: int = 400, **kwargs) -> list[float]:
    """1.0 for completions of at most *max_chars* characters, else 0.0.

    >>> short_answer_bonus(["<answer>4</answer>", "x" * 1000], max_chars=100)
    [1.0, 0.0]
    """
    return [1.0 if len(_text(c)) <= max_chars else 0.0 for c in completions]
