"""Reward registry: recipe entries ``{name, weight, kwargs}`` -> TRL reward callables.

A name is a built-in (``posttrain rewards list``), a file plug-in ``rewards/x.py:fn``
(relative to *base_dir*: every command passes the directory it runs in), or a module plug-in
``package.module:fn``.  Reward functions follow TRL's contract
``fn(completions, **columns) -> list[float | None]``; their configuration is the
keyword-only parameters, checked against the recipe's ``kwargs`` when it is loaded.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from posttrain.errors import PosttrainError
from posttrain.rewards import cot, countdown, shaping
from posttrain.rewards import format as fmt
from posttrain.rewards import math as math_rewards
from posttrain.rewards.extract import check_order
from posttrain.rewards.guard import GuardedReward
from posttrain.rewards.pool import parallel


@dataclass(frozen=True)
class AnswerRule:
    """How evaluation reads a sample's answer (`extracted` in reports) and which answers maj@k counts
    as one vote, for the reward that judges correctness (`eval.correctness_reward`)."""

    extract: Callable[[str], str | None]
    equivalent: Callable[[str, str], bool]


MATH_ANSWERS = AnswerRule(math_rewards.extract_answer, math_rewards.answers_equivalent)
# Correctness rewards whose answers are not math answers; every other reward (plug-ins too) reads
# answers as math answers, as `accuracy` does.
ANSWER_RULES = {"countdown": AnswerRule(countdown.answer_expression, countdown.same_expression)}


def answer_rule(correctness_reward: str) -> AnswerRule:
    return ANSWER_RULES.get(correctness_reward, MATH_ANSWERS)


_SPEC_KEYS = ("name", "weight", "kwargs")
# Arguments TRL fills in itself: never recipe kwargs.
_TRL_ARGS = {"completions", "prompts", "completion_ids", "trainer_state"}

BUILTINS: dict[str, Callable] = {
    "accuracy": math_rewards.accuracy,
    "format": fmt.format_strict,
    "format_soft": fmt.format_soft,
    "tag_count": fmt.tag_count,
    "think_format": fmt.think_format,
    "reasoning_present": cot.reasoning_present,
    "reasoning_steps": cot.reasoning_steps,
    "step_arithmetic": cot.step_arithmetic,
    "answer_consistency": cot.answer_consistency,
    "length": shaping.kimi_length,
    "cosine": shaping.cosine_scaled,
    "repetition_penalty": shaping.repetition_penalty,
    "overlong": shaping.soft_overlong,
    "countdown": countdown.countdown,
}


@dataclass(frozen=True)
class RewardInfo:
    """What ``posttrain rewards list`` shows: name, one-line description, kwargs with defaults."""

    name: str
    description: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    required: tuple[str, ...] = ()


def _description(func: Callable) -> str:
    doc = inspect.getdoc(func) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def _config_params(func: Callable) -> tuple[dict[str, Any], tuple[str, ...], set[str]]:
    """(defaults of optional kwargs, required kwargs, every name a recipe may set)."""
    params = inspect.signature(func).parameters.values()
    keyword_only = [p for p in params if p.kind is p.KEYWORD_ONLY]
    named = [p for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    # Built-ins put configuration after "*"; a plug-in without keyword-only parameters may
    # take configuration in any named parameter but the first (the completions).
    chosen = keyword_only or named[1:]
    allowed = {p.name for p in chosen} - _TRL_ARGS
    defaults = {p.name: p.default for p in chosen if p.default is not p.empty and p.name in allowed}
    required = tuple(p.name for p in keyword_only if p.default is p.empty)
    return defaults, required, allowed


def info(name: str, func: Callable) -> RewardInfo:
    defaults, required, _ = _config_params(func)
    return RewardInfo(name, _description(func), defaults, required)


def available() -> dict[str, RewardInfo]:
    """Built-in rewards by name."""
    return {name: info(name, func) for name, func in BUILTINS.items()}


# -- resolving names ------------------------------------------------------------


def _is_plugin(name: str) -> bool:
    return ":" in name


def resolve(name: str, base_dir: str | Path | None = None) -> Callable:
    """The reward function for *name*; PosttrainError with the choices when unknown."""
    if not isinstance(name, str) or not name.strip():
        raise PosttrainError(f"reward name must be a non-empty string, got {name!r}")
    if name in BUILTINS:
        return BUILTINS[name]
    if _is_plugin(name):
        return _load_plugin(name, base_dir)
    close = difflib.get_close_matches(name, list(BUILTINS), n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    raise PosttrainError(
        f"unknown reward '{name}'.{hint} Available: {', '.join(sorted(BUILTINS))}; "
        "or a plug-in 'rewards/file.py:function' / 'package.module:function'."
    )


_PLUGIN_MODULES: dict[str, Any] = {}


def _load_plugin(name: str, base_dir) -> Callable:
    target, _, func_name = name.rpartition(":")
    if not target or not func_name.isidentifier():
        raise PosttrainError(f"reward '{name}': expected 'path/to/file.py:function' or 'package.module:function'")
    if target.endswith(".py") or "/" in target or "\\" in target:
        module = _load_file(name, target, base_dir)
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise PosttrainError(f"reward '{name}': cannot import module '{target}': {exc}") from exc
    func = getattr(module, func_name, None)
    if func is None:
        defined = sorted(n for n, v in vars(module).items() if inspect.isfunction(v) and not n.startswith("_"))
        raise PosttrainError(
            f"reward '{name}': '{target}' has no function '{func_name}'"
            f" (functions there: {', '.join(defined) or 'none'})"
        )
    if not callable(func):
        raise PosttrainError(f"reward '{name}': '{func_name}' is not callable")
    return func


def _load_file(name: str, target: str, base_dir) -> Any:
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    path = (base / target).resolve() if not Path(target).is_absolute() else Path(target)
    if not path.is_file():
        raise PosttrainError(f"reward '{name}': file not found: {path} (relative to {base})")
    key = str(path)
    if key not in _PLUGIN_MODULES:
        module_name = "posttrain_user_rewards_" + hashlib.sha1(key.encode()).hexdigest()[:12]
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module  # lets the plug-in pickle into worker processes
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            sys.modules.pop(module_name, None)
            raise PosttrainError(f"reward '{name}': error while loading {path}: {type(exc).__name__}: {exc}") from exc
        _PLUGIN_MODULES[key] = module
    return _PLUGIN_MODULES[key]


# -- specs ------------------------------------------------------------------------


def _spec_fields(spec) -> tuple[Any, Any, Any, list[str]]:
    if isinstance(spec, str):
        return spec, 1.0, {}, []
    if isinstance(spec, dict):
        unknown = [k for k in spec if k not in _SPEC_KEYS]
        problems = []
        for k in unknown:
            close = difflib.get_close_matches(str(k), _SPEC_KEYS, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            problems.append(
                f"reward '{spec.get('name')}': unknown key '{k}'{hint}; entries take {', '.join(_SPEC_KEYS)}"
            )
        weight = spec.get("weight", 1.0)
        return spec.get("name"), 1.0 if weight is None else weight, spec.get("kwargs") or {}, problems
    weight = getattr(spec, "weight", 1.0)
    return (getattr(spec, "name", None), 1.0 if weight is None else weight, getattr(spec, "kwargs", None) or {}, [])


def _check_kwargs(name: str, func: Callable, kwargs) -> list[str]:
    if not isinstance(kwargs, dict):
        return [f"reward '{name}': kwargs must be a mapping, got {type(kwargs).__name__}"]
    defaults, required, allowed = _config_params(func)
    problems = []
    for key in kwargs:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), sorted(allowed), n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            choices = ", ".join(sorted(allowed)) or "none"
            problems.append(f"reward '{name}': unknown kwarg '{key}'.{hint} Allowed kwargs: {choices}")
    for key in required:
        if key not in kwargs:
            problems.append(f"reward '{name}': missing required kwarg '{key}'")
    for key, check in _VALUE_CHECKS.items():
        if key in kwargs and key in allowed:
            problem = check(kwargs[key])
            if problem:
                problems.append(f"reward '{name}': kwarg '{key}': {problem}")
    return problems


def _check_extract_order(value) -> str | None:
    try:
        check_order(value)
    except (ValueError, TypeError) as exc:
        return str(exc)
    return None


def _check_unit(value) -> str | None:
    return None if value in ("tokens", "chars") else f"must be 'tokens' or 'chars', got {value!r}"


# Values checked when the recipe is loaded, so a typo fails before training starts.
_VALUE_CHECKS = {"extract_order": _check_extract_order, "unit": _check_unit}


def _check_one(spec, base_dir) -> tuple[Callable | None, str, float, dict, list[str]]:
    name, weight, kwargs, problems = _spec_fields(spec)
    func = None
    try:
        func = resolve(name, base_dir)
    except PosttrainError as exc:
        problems.append(str(exc))
    if isinstance(weight, bool) or not isinstance(weight, (int, float)):
        problems.append(f"reward '{name}': weight must be a number, got {weight!r}")
    if func is not None:
        problems.extend(_check_kwargs(name, func, kwargs))
    return func, name, weight, kwargs, problems


def validate(specs: Iterable, base_dir: str | Path | None = None) -> list[str]:
    """Every problem in a recipe's reward list, as messages (empty when all is well)."""
    if specs is None:
        return []
    problems = []
    for spec in specs:
        problems.extend(_check_one(spec, base_dir)[4])
    return problems


class BoundReward:
    """A reward function with recipe kwargs fixed, under a readable ``__name__`` (TRL logs by it).

    A class rather than a closure so it pickles into the scoring pool's worker processes.
    """

    def __init__(self, func: Callable, kwargs: dict, name: str):
        self.func = func
        self.kwargs = dict(kwargs)
        self.__name__ = self.__qualname__ = name
        self.__doc__ = func.__doc__
        self.groupwise = getattr(func, "groupwise", False)
        params = inspect.signature(func).parameters
        takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
        self.accepted = None if takes_any else set(params)

    def __call__(self, completions=None, **columns):
        if self.accepted is not None:  # a plug-in without **kwargs gets only what it names
            columns = {k: v for k, v in columns.items() if k in self.accepted}
        return self.func(completions, **{**columns, **self.kwargs})

    def __repr__(self):
        return f"<reward {self.__name__} {self.kwargs}>"


def bind(func: Callable, kwargs: dict, name: str) -> BoundReward:
    return BoundReward(func, kwargs, name)


def _display_name(name: str) -> str:
    return name.rpartition(":")[2] if _is_plugin(name) else name


def build(
    specs: Iterable,
    base_dir: str | Path | None = None,
    *,
    processes: int = 0,
    min_batch: int = 256,
    strict: bool = False,
) -> tuple[list[Callable], list[float]]:
    """(reward callables, weights) for TRL's ``GRPOTrainer(reward_funcs=..., reward_weights=...)``.

    With ``processes >= 2`` batches of at least *min_batch* completions are scored in a
    process pool (see ``posttrain.rewards.pool``).  Every callable is guarded (see
    ``posttrain.rewards.guard``): a row the reward fails on scores None, or, with *strict*,
    the first failure raises RewardError.  Raises PosttrainError listing every problem when
    any entry is invalid.
    """
    funcs, weights, problems, seen = [], [], [], {}
    for spec in specs or []:
        func, name, weight, kwargs, errs = _check_one(spec, base_dir)
        problems.extend(errs)
        if errs:
            continue
        display = _display_name(name)
        seen[display] = seen.get(display, 0) + 1
        if seen[display] > 1:
            display = f"{display}_{seen[display]}"
        reward = bind(func, dict(kwargs), display)
        if processes and processes >= 2:
            reward = parallel(reward, processes=processes, min_batch=min_batch, name=display)
        funcs.append(GuardedReward(reward, strict=strict, name=display))
        weights.append(float(weight))
    if problems:
        raise PosttrainError("invalid rewards:\n  - " + "\n  - ".join(problems))
    return funcs, weights
