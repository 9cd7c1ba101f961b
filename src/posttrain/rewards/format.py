"""Format rewards: does the completion lay out its reasoning and answer in the expected tags?

Policy for Hub reasoning models that answer ``<think>...</think>`` then ``\\boxed{...}`` or
bare text (no ``<answer>`` tags): the strict ``format`` reward gives them 0.0 -- it checks
the recipe's required layout, and a model trained with it learns the tags.  Recipes for
such models use ``think_format`` instead, which accepts any non-empty answer after
``</think>``.  ``accuracy`` extracts the answer from all of these layouts either way.

When a chat template pre-fills ``<think>`` in the generation prompt (DeepSeek-R1 style) the
completion starts inside the reasoning, without the opening tag; pass ``allow_prefilled_think=True``
or ``format`` stays at 0. When it pre-fills an empty closed block (Qwen3 with thinking off) there is
no reasoning to score. ``think_prefill`` tells which from the rendered prompt; ``warn_prefill`` warns.
"""

from __future__ import annotations

import re
import warnings

from posttrain.rewards._common import completion_texts

_STRICT = re.compile(r"\s*<think>(.*?)</think>\s*<answer>(.*?)</answer>\s*", re.S)
_STRICT_PREFILLED = re.compile(r"(.*?)</think>\s*<answer>(.*?)</answer>\s*", re.S)
_SOFT = re.compile(r"<think>.*?</think>\s*<answer>.*?</answer>", re.S)
_THINK_THEN_ANSWER = re.compile(r"\s*(?:<think>)?(.*?)</think>(.*)", re.S)
_TAGS = ("<think>", "</think>", "<answer>", "</answer>")
MAX_CHARS = 200_000


def _strict_ok(text: str, allow_prefilled_think: bool) -> bool:
    if len(text) > MAX_CHARS or any(text.count(tag) != 1 for tag in _TAGS[1:]):
        return False
    opens = text.count("<think>")
    if opens == 1:
        m = _STRICT.fullmatch(text)
    elif opens == 0 and allow_prefilled_think:
        m = _STRICT_PREFILLED.fullmatch(text)
    else:
        return False
    return bool(m and m.group(1).strip() and m.group(2).strip())


def format_strict(completions, *, allow_prefilled_think: bool = False, **kwargs) -> list[float]:
    """1.0 for exactly ``<think>...</think><answer>...</answer>`` (each tag once, nothing after).

    Whitespace between and around the tags is allowed; both parts must be non-empty.

    >>> format_strict(["<think>12+34=46 46+5=51</think><answer>51</answer>", "51"])
    [1.0, 0.0]
    """
    return [float(_strict_ok(t, allow_prefilled_think)) for t in completion_texts(completions)]


def format_soft(completions, **kwargs) -> list[float]:
    """1.0 when a ``<think>...</think>`` block is followed by an ``<answer>...</answer>`` block.

    Text before, between repeats or after is tolerated.

    >>> format_soft(["Sure. <think>a</think> <answer>1</answer> Done."])
    [1.0]
    """
    return [float(bool(len(t) <= MAX_CHARS and _SOFT.search(t))) for t in completion_texts(completions)]


def tag_count(completions, **kwargs) -> list[float]:
    """0.25 for each of ``<think>``, ``</think>``, ``<answer>``, ``</answer>`` present exactly once.

    A dense signal that gets a model started on the format.

    >>> tag_count(["<think>x</think> 5", "<think>x</think><answer>5</answer>"])
    [0.5, 1.0]
    """
    return [sum(0.25 for tag in _TAGS if t.count(tag) == 1) for t in completion_texts(completions)]


def think_format(completions, *, allow_prefilled_think: bool = True, **kwargs) -> list[float]:
    """1.0 for ``<think>...</think>`` followed by a non-empty answer in any form (boxed, bare, tags).

    For Hub reasoning models (DeepSeek-R1 style) that do not use ``<answer>`` tags.

    >>> think_format(["<think>2+2=4</think> The answer is \\\\boxed{4}.", "4"])
    [1.0, 0.0]
    """
    scores = []
    for text in completion_texts(completions):
        ok = False
        if len(text) <= MAX_CHARS and text.count("</think>") == 1 and text.count("<think>") <= 1:
            m = _THINK_THEN_ANSWER.fullmatch(text)
            prefilled = "<think>" not in text
            starts_right = prefilled or text.lstrip().startswith("<think>")
            ok = bool(
                m
                and m.group(1).strip()
                and m.group(2).strip()
                and starts_right
                and (allow_prefilled_think or not prefilled)
            )
        scores.append(float(ok))
    return scores


_warned_prefill = False
# Rewards that score the <think> block, and whether they accept a completion starting inside it.
_THINK_REWARDS = {"format": False, "format_soft": False, "tag_count": False, "think_format": True}


def think_prefill(generation_prompt: str) -> str | None:
    """What a rendered generation prompt leaves the completion to write.

    "open": it ends inside an opened ``<think>`` (DeepSeek-R1 style): completions carry ``</think>``
    but no ``<think>``. "closed": it pre-fills an empty, closed block (Qwen3 with thinking off):
    completions carry no reasoning at all. None: the completion writes its own tags.

    >>> think_prefill("<|im_start|>assistant\\n<think>\\n"), think_prefill("...<think>\\n\\n</think>\\n\\n")
    ('open', 'closed')
    """
    last_open = generation_prompt.rfind("<think>")
    if last_open < 0:
        return None
    tail = generation_prompt[last_open + len("<think>") :]
    if "</think>" not in tail:
        return "open"
    return "closed" if not tail.split("</think>", 1)[1].strip() else None


def prefill_problem(generation_prompt: str, rewards: dict[str, dict]) -> str | None:
    """Why the configured think/format rewards cannot be earned under this prompt, or None.

    `rewards`: reward name -> its kwargs. Pure: the caller renders the prompt and decides how to warn.
    """
    state = think_prefill(generation_prompt)
    scored = {name: kwargs for name, kwargs in rewards.items() if name in _THINK_REWARDS}
    if state is None or not scored:
        return None
    if state == "closed":
        return (
            "the chat template pre-fills an empty '<think></think>' block (thinking is off, e.g. "
            f"enable_thinking=false), so completions carry no reasoning and {', '.join(sorted(scored))} stay at 0; "
            "turn thinking on (data.chat_template_kwargs) or drop those rewards"
        )
    blind = sorted(name for name, kwargs in scored.items() if _needs_opening_tag(name, kwargs))
    if not blind:
        return None
    return (
        "the chat template pre-fills '<think>' in the generation prompt, so completions start without it and "
        f"{', '.join(sorted(blind))} cannot reach full marks; set kwargs {{allow_prefilled_think: true}} "
        "on 'format' or use 'think_format'"
    )


def _needs_opening_tag(name: str, kwargs: dict) -> bool:
    if name in ("format", "think_format"):
        return not kwargs.get("allow_prefilled_think", _THINK_REWARDS[name])
    return True  # format_soft matches '<think>...</think>'; tag_count counts the opening tag


def warn_prefill(generation_prompt: str, rewards: dict[str, dict]) -> str | None:
    """Warn once per process when `prefill_problem` finds one; returns the problem (or None)."""
    global _warned_prefill
    problem = prefill_problem(generation_prompt, rewards)
    if problem and not _warned_prefill:
        _warned_prefill = True
        warnings.warn(problem, UserWarning, stacklevel=2)
    return problem
