"""Format rewards: does the completion lay out its reasoning and answer in the expected tags?

Policy for Hub reasoning models that answer ``<think>...</think>`` then ``\\boxed{...}`` or
bare text (no ``<answer>`` tags): the strict ``format`` reward gives them 0.0 -- it checks
the recipe's required layout, and a model trained with it learns the tags.  Recipes for
such models use ``think_format`` instead, which accepts any non-empty answer after
``</think>``.  ``accuracy`` extracts the answer from all of these layouts either way.

When a chat template pre-fills ``<think>`` in the generation prompt the completion starts
inside the reasoning, without the opening tag; pass ``allow_prefilled_think=True`` (or see
``warn_if_template_prefills_think``) or ``format`` stays at 0.
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
_GENERATION_BLOCK = re.compile(r"add_generation_prompt(.{0,400}?)(?:endif|$)", re.S)


def template_prefills_think(chat_template: str | None) -> bool:
    """True when the generation prompt of a chat template ends by opening ``<think>``."""
    if not chat_template:
        return False
    return any("<think>" in block for block in _GENERATION_BLOCK.findall(chat_template[:200_000]))


def warn_if_template_prefills_think(chat_template: str | None) -> bool:
    """Warn once per process when *chat_template* pre-fills ``<think>``; returns whether it does.

    Completions then start inside the reasoning without the opening tag, and the strict
    ``format`` reward stays at 0 unless ``allow_prefilled_think=True``.

    >>> warn_if_template_prefills_think("{{ messages }}")
    False
    """
    global _warned_prefill
    prefills = template_prefills_think(chat_template)
    if prefills and not _warned_prefill:
        _warned_prefill = True
        message = (
            "the chat template pre-fills '<think>' in the generation prompt, so "
            "completions start without it and the strict 'format' reward stays at 0; "
            "set kwargs {allow_prefilled_think: true} on 'format' or use 'think_format'"
        )
        warnings.warn(message, UserWarning, stacklevel=2)
    return prefills
