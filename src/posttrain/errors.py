"""Project errors: user mistakes become one clear message and a non-zero exit, never a traceback."""

from __future__ import annotations


class PosttrainError(Exception):
    """A problem the user can fix (bad recipe, missing file, unknown reward). Exit code 2 unless set."""

    exit_code = 2


class ConfigError(PosttrainError):
    """The recipe (or a --set override) does not validate; the message lists every problem."""


class DataError(PosttrainError):
    """A dataset is missing, malformed or lacks a needed column."""


class RewardError(PosttrainError):
    """A reward function failed while scoring and the recipe sets `rewards.strict: true`."""


class Interrupted(PosttrainError):
    """A run stopped on SIGINT/SIGTERM after saving a checkpoint."""

    exit_code = 130
