"""Built-in generated tasks: each makes problems with a gold answer and a worked solution.

A task is deterministic given a seed, so the held-out split (a different seed, with any
problem that also appears in training removed) is the same on every machine.
"""

from __future__ import annotations

from collections.abc import Callable

from posttrain.data.tasks import arithmetic, countdown

# name -> (generator, one-line description). A generator returns rows with at least
# `question`, `answer` and `solution` (a worked completion in the reasoning format).
TASKS: dict[str, tuple[Callable[..., list[dict]], str]] = {
    "arithmetic": (arithmetic.generate, arithmetic.__doc__.splitlines()[0]),
    "countdown": (countdown.generate, countdown.__doc__.splitlines()[0]),
}
