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


def _prompt(style: str, **kwargs) -> str:
    from posttrain.models.tokenizer import build_bpe_tokenizer

    tokenizer = build_bpe_tokenizer(style)
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": "1+1=?"}], tokenize=False, add_generation_prompt=True, **kwargs
    )


def test_every_template_renders_the_prompt_as_a_prefix_of_the_dialogue():
    """SFT (warm-start, sequence KD) trains on prompt + completion; inference sees the prompt alone."""
    from posttrain.models.tokenizer import build_bpe_tokenizer

    turn = [{"role": "system", "content": "s"}, {"role": "user", "content": "1+1=?"}]
    for style, kwargs in (("qwen3", {}), ("qwen3", {"enable_thinking": False}), ("r1", {})):
        tokenizer = build_bpe_tokenizer(style)
        head = tokenizer.apply_chat_template(turn, tokenize=False, add_generation_prompt=True, **kwargs)
        for answer in ("<think>1+1=2</think><answer>2</answer>", "2"):
            full = [*turn, {"role": "assistant", "content": answer}]
            assert tokenizer.apply_chat_template(full, tokenize=False, **kwargs).startswith(head), (style, kwargs)


def test_think_prefill_reads_the_rendered_generation_prompt():
    assert fmt.think_prefill(_prompt("r1")) == "open"
    assert fmt.think_prefill(_prompt("qwen3")) is None
    assert fmt.think_prefill(_prompt("qwen3", enable_thinking=True)) is None
    assert fmt.think_prefill(_prompt("qwen3", enable_thinking=False)) == "closed"
    assert fmt.think_prefill("<|User|>what does <think> mean?<|Assistant|>") == "open"  # last tag decides


def test_prefill_problem_names_what_cannot_be_earned():
    strict = {"format": {}, "accuracy": {}}
    r1, qwen_off = _prompt("r1"), _prompt("qwen3", enable_thinking=False)
    assert fmt.prefill_problem(_prompt("qwen3"), strict) is None
    assert "format cannot reach full marks" in fmt.prefill_problem(r1, strict)
    assert fmt.prefill_problem(r1, {"format": {"allow_prefilled_think": True}}) is None
    assert fmt.prefill_problem(r1, {"think_format": {}}) is None  # accepts a prefilled think by default
    assert "tag_count" in fmt.prefill_problem(r1, {"think_format": {}, "tag_count": {}})
    assert fmt.prefill_problem(r1, {"accuracy": {}}) is None
    closed = fmt.prefill_problem(qwen_off, {"format": {"allow_prefilled_think": True}, "think_format": {}})
    assert "thinking is off" in closed and "format, think_format" in closed


@pytest.mark.parametrize(
    ("style", "kwargs", "prefill", "completion", "scores"),
    [
        # What a model writes after each template's generation prompt, scored end to end.
        ("qwen3", {}, None, "<think>1+1=2</think><answer>2</answer>", {"strict": 1.0, "prefilled": 1.0, "think": 1.0}),
        ("r1", {}, "open", "1+1=2</think><answer>2</answer>", {"strict": 0.0, "prefilled": 1.0, "think": 1.0}),
        (
            "qwen3",
            {"enable_thinking": False},
            "closed",
            "<answer>2</answer>",
            {"strict": 0, "prefilled": 0, "think": 0},
        ),
    ],
)
def test_format_rewards_on_each_templates_completions(style, kwargs, prefill, completion, scores):
    assert fmt.think_prefill(_prompt(style, **kwargs)) == prefill
    assert fmt.format_strict([completion]) == [scores["strict"]]
    assert fmt.format_strict([completion], allow_prefilled_think=True) == [scores["prefilled"]]
    assert fmt.think_format([completion]) == [scores["think"]]


def test_prefill_warning_is_emitted_once(monkeypatch):
    monkeypatch.setattr(fmt, "_warned_prefill", False)
    assert fmt.warn_prefill(_prompt("qwen3"), {"format": {}}) is None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert fmt.warn_prefill(_prompt("r1"), {"format": {}})
        assert fmt.warn_prefill(_prompt("r1"), {"format": {}})
    assert len(caught) == 1 and "allow_prefilled_think" in str(caught[0].message)
