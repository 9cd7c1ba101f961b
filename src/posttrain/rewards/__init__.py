"""Rule-based rewards for GRPO: math answer equivalence, format, chain of thought, shaping.

Every reward is a pure function with TRL's contract ``fn(completions, **columns) ->
list[float | None]`` (None where it does not apply).  ``registry`` turns recipe entries
into bound callables; nothing here imports torch.
"""

from __future__ import annotations

__all__ = ["available", "build", "validate", "verify", "extract_answer", "answers_equivalent"]


def __getattr__(name):
    # Lazy, so "import posttrain.rewards" costs nothing until a reward is used.
    if name in ("available", "build", "validate"):
        from posttrain.rewards import registry

        return getattr(registry, name)
    if name in ("verify", "extract_answer", "answers_equivalent"):
        from posttrain.rewards import math

        return getattr(math, name)
    raise AttributeError(name)
