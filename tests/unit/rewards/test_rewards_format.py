"""Format rewards: strict, soft, tag count, think-then-answer, and the <think> pre-fill warning."""

import warnings

import pytest

from posttrain.rewards import format as fmt

TINY_TASK = "<think>12+34=46 46+5=51</think><answer>51</answer>"


@pytest.mark.parametrize(
    "text",
    [
        TINY_TASK,
        " <think>\n12+34=46\n</think>\n\n<answer> 51 </answer>\n",
    ],
)
def test_strict_accepts_tiny_task_layout_with_optional_whitespace(text):
    assert fmt.format_strict([text]) == [1.0]


@pytest.mark.parametrize(
    "text",
    [
        "51",
        "<think>x</think>",
        "<answer>51</answer>",
        "<think>a</think><answer>51</answer> trailing text",
        "preamble <think>a</think><answer>51</answer>",
        "<think>a</think><think>b</think><answer>51</answer>",
        "<think>a</think><answer>5</answer><answer>1</answer>",
        "<think></think><answer>51</answer>",
        "<think>a</think><answer> </answer>",
        "<answer>51</answer><think>a</think>",
        "<think>a</think>\\boxed{51}",
    ],
)
def test_strict_rejects(text):
    assert fmt.format_strict([text]) == [0.0]


def test_strict_conversational_and_prefilled_think():
    assert fmt.format_strict([[{"role": "assistant", "content": TINY_TASK}]]) == [1.0]
    prefilled = "12+34=46</think><answer>46</answer>"
    assert fmt.format_strict([prefilled]) == [0.0]
    assert fmt.format_strict([prefilled], allow_prefilled_think=True) == [1.0]


def test_soft_tag_count_and_think_format():
    texts = [TINY_TASK, "ok <think>a</think> <answer>1</answer> bye", "<think>a</think> \\boxed{1}", "1"]
    assert fmt.format_soft(texts) == [1.0, 1.0, 0.0, 0.0]
    assert fmt.tag_count(texts) == [1.0, 1.0, 0.5, 0.0]
    assert fmt.think_format(texts) == [1.0, 0.0, 1.0, 0.0]
    assert fmt.think_format(["reasoning</think> 42"]) == [1.0]
    assert fmt.think_format(["reasoning</think> 42"], allow_prefilled_think=False) == [0.0]


def test_hostile_inputs_score_zero_fast():
    hostile = [
        "<think>" * 100_000,
        "\x00<think>a</think><answer>1</answer>",
        "<think>" + "a" * 10**6 + "</think><answer>1</answer>",
    ]
    assert fmt.format_strict(hostile) == [0.0, 0.0, 0.0]
    assert fmt.format_soft(hostile)[0] == 0.0


QWEN3_LIKE = "{%- if add_generation_prompt %}\n    {{- '<|im_start|>assistant\\n<think>\\n' }}\n{%- endif %}"
PLAIN = "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"


def test_prefill_warning_is_emitted_once(monkeypatch):
    monkeypatch.setattr(fmt, "_warned_prefill", False)
    assert fmt.warn_if_template_prefills_think(PLAIN) is False
    assert fmt.warn_if_template_prefills_think(None) is False
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert fmt.warn_if_template_prefills_think(QWEN3_LIKE) is True
        assert fmt.warn_if_template_prefills_think(QWEN3_LIKE) is True
    assert len(caught) == 1 and "allow_prefilled_think" in str(caught[0].message)
