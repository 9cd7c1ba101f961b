"""Guard reward functions: a reward that fails scores None on the rows it fails, and the run goes on.

Reward plug-ins are user code run on untrusted model output, so one odd completion must not end a
run hours in. `GuardedReward` wraps the outermost reward callable (the process-pool wrapper
included). When a batch call raises, the batch is scored again row by row, so only the rows that
fail get `None` (TRL then ignores the reward for them, as for a reward that does not apply). A
non-finite or non-numeric score fails its row; a result of the wrong length or type fails the
whole batch. Failing rows are counted per reward (`error_counts`) and the first error of each
reward is logged once, naming it. With `rewards.strict: true` the first error raises `RewardError`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping
from numbers import Real

from posttrain.errors import RewardError

log = logging.getLogger("posttrain.rewards")

_MAX_MESSAGE = 300  # characters of an exception message shown; a plug-in may echo a whole completion


class _BadResult(Exception):
    """A reward returned something other than one finite number or None per completion."""


class GuardedReward:
    """*func* under TRL's reward contract, with failing rows scored None, counted and shown once.

    A class rather than a closure so it pickles whenever *func* does. Attributes of *func*
    (`groupwise`, `kwargs`, ...) read through the guard, and `__name__` is kept: TRL logs by it.

    >>> def half(completions, **kwargs):
    ...     return [1 / len(c) for c in completions]
    >>> guarded = GuardedReward(half)
    >>> guarded(["ab", "", "abcd"]), guarded.errors  # logs: reward 'half' raised ZeroDivisionError ...
    ([0.5, None, 0.25], 1)
    """

    def __init__(self, func: Callable, *, strict: bool = False, name: str | None = None):
        self.wrapped = func
        self.__name__ = self.__qualname__ = name or getattr(func, "__name__", type(func).__name__)
        self.__doc__ = getattr(func, "__doc__", None)
        self.strict = strict
        self.errors = 0  # rows scored None because this reward failed
        self.warned = False

    def __getattr__(self, attr: str):
        # Reached only for attributes the guard lacks. Dunders stay the guard's own, and an
        # instance being unpickled (no `wrapped` yet) must not recurse.
        if attr.startswith("__") or "wrapped" not in self.__dict__:
            raise AttributeError(attr)
        return getattr(self.wrapped, attr)

    def __repr__(self) -> str:
        return f"<guarded {self.wrapped!r}>"

    def __call__(self, completions=None, **columns) -> list:
        n = len(completions)
        try:
            scores = _checked(self.wrapped(completions, **columns), n)
        except _BadResult as exc:  # wrong length or type: no score in it can be matched to a row
            self._fail(exc, n, n, columns)
            return [None] * n
        except Exception as exc:
            # A group-wise reward scored one row at a time would give different numbers, not errors.
            if self.strict or n == 1 or getattr(self.wrapped, "groupwise", False):
                self._fail(exc, n, n, columns)
                return [None] * n
            return self._row_by_row(completions, columns, n, exc)
        bad = [i for i, score in enumerate(scores) if not _valid(score)]
        if bad:
            self._fail(
                _BadResult(f"returned {_short(scores[bad[0]])} (expected a finite number or None)"),
                len(bad),
                n,
                columns,
            )
            for i in bad:
                scores[i] = None
        return scores

    def _row_by_row(self, completions, columns: dict, n: int, batch_error: Exception) -> list:
        scores, first, failed = [], None, 0
        for i in range(n):
            try:
                (score,) = _checked(self.wrapped(completions[i : i + 1], **_row(columns, n, i)), 1)
                if not _valid(score):
                    raise _BadResult(f"returned {_short(score)} (expected a finite number or None)")
            except Exception as exc:
                first, failed, score = first or exc, failed + 1, None
            scores.append(score)
        # When no row fails alone (the error depends on the batch), the rows keep the scores they
        # got on their own and only the batch error is shown.
        self._fail(first or batch_error, failed, n, columns)
        return scores

    def _fail(self, exc: Exception, rows: int, n: int, columns: dict) -> None:
        step = getattr(columns.get("trainer_state"), "global_step", None)
        at = f" at step {step}" if step is not None else ""
        what = f"reward '{self.__name__}' {_describe(exc)}{at}"
        if self.strict:
            raise RewardError(
                f"{what} (rewards.strict is true: fix the reward, or set `rewards.strict: false` to score "
                "the failing rows None and go on)"
            ) from exc
        self.errors += rows
        if not self.warned:
            self.warned = True
            outcome = (
                f"{rows} of {n} completions score None for it"
                if rows
                else "each completion scored on its own succeeded, so none scores None"
            )
            log.warning(
                "%s; %s. Later errors of this reward are only counted (reward_errors in summary.json or "
                "the eval report); set `rewards.strict: true` in the recipe to make them fatal.",
                what,
                outcome,
            )


def error_counts(rewards: Iterable[Callable]) -> dict[str, int]:
    """Rows scored None because a reward failed, by reward name (each guarded reward counted once).

    >>> error_counts([GuardedReward(len, name="accuracy"), len])
    {'accuracy': 0}
    """
    counts: dict[str, int] = {}
    seen: set[int] = set()
    for fn in rewards:
        if isinstance(fn, GuardedReward) and id(fn) not in seen:
            seen.add(id(fn))
            counts[fn.__name__] = counts.get(fn.__name__, 0) + fn.errors
    return counts


def _checked(result, n: int) -> list:
    if isinstance(result, (str, bytes, Mapping)) or not isinstance(result, Iterable):
        raise _BadResult(f"returned a {type(result).__name__}, not a list of scores")
    scores = list(result)
    if len(scores) != n:
        raise _BadResult(f"returned {len(scores)} scores for {n} completions")
    return scores


def _valid(score) -> bool:
    return score is None or (isinstance(score, Real) and math.isfinite(score))


def _row(columns: dict, n: int, i: int) -> dict:
    """Row *i* of every column aligned with the completions; other arguments (trainer_state) as they are."""
    return {k: v[i : i + 1] if isinstance(v, (list, tuple)) and len(v) == n else v for k, v in columns.items()}


def _describe(exc: Exception) -> str:
    if isinstance(exc, _BadResult):
        return str(exc)
    message = str(exc)
    if len(message) > _MAX_MESSAGE:
        message = message[: _MAX_MESSAGE - 3] + "..."
    return f"raised {type(exc).__name__}: {message}" if message else f"raised {type(exc).__name__}"


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
