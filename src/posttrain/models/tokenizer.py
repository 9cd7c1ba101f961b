"""Tokenizers built locally so nothing comes from the Hub: the quickstart's character-level one, and
real-format byte-level BPE stand-ins with Qwen3-style and DeepSeek-R1-style thinking chat templates.

Reasoning tags are single tokens: spelled out as characters they ate the completion budget
of tiny models and every sample was truncated (see shared notes on tiny GRPO).
The result is a normal `PreTrainedTokenizerFast`: `save_pretrained` writes `tokenizer.json`
and `AutoTokenizer.from_pretrained` loads it back, exactly like a Hub tokenizer.
"""

from __future__ import annotations

import functools
import json
import string
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from tokenizers.trainers import BpeTrainer
from transformers import PreTrainedTokenizerFast

PAD, EOS, UNK = "<pad>", "<|end|>", "<unk>"
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")
# Not "special": TRL decodes completions with skip_special_tokens=True, and the format
# reward must still see the tags.
TAG_TOKENS = ("<think>", "</think>", "<answer>", "</answer>")

CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "<|{{ message['role'] }}|>{{ message['content'] }}<|end|>"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|assistant|>{%- endif -%}"
)


def char_vocab() -> list[str]:
    """Printable ASCII plus newline: enough for arithmetic, Countdown and short English."""
    return [c for c in string.printable if c not in "\t\r\x0b\x0c"]


def build_char_tokenizer(model_max_length: int = 512):
    """Build the char-level tokenizer (special tokens first, so their ids are stable)."""

    specials = [PAD, EOS, UNK, *ROLE_TOKENS]
    vocab = {tok: i for i, tok in enumerate(specials + list(TAG_TOKENS) + char_vocab())}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    backend.decoder = decoders.Fuse()  # characters join with no separator
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD,
        eos_token=EOS,
        unk_token=UNK,
        additional_special_tokens=list(ROLE_TOKENS),
        model_max_length=model_max_length,
        padding_side="left",
    )
    tokenizer.add_tokens(list(TAG_TOKENS))  # already in the vocab: registers them as atomic
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


# --- Real-format stand-in: byte-level BPE with thinking chat templates ------------------------------

SHIPPED = Path(__file__).resolve().parents[1] / "data" / "shipped"
BPE_VOCAB_SIZE = 2048
THINK_TOKENS = ("<think>", "</think>")
# Digits one by one, letters in runs, punctuation runs, whitespace: the split byte-level tokenizers of
# current open models apply before BPE (numbers never merge into multi-digit pieces).
_PRETOKENIZE = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# Qwen3-style: ChatML turns; `enable_thinking=False` pre-fills an empty, closed think block, so the
# completion is the answer alone; an assistant turn then starts with that block too, so the prompt is
# a prefix of the dialogue (SFT trains on what inference sees). Written from the documented behaviour.
# Newlines are emitted as expressions because `{%- -%}` trims the template's own whitespace.
QWEN3_TEMPLATE = (
    "{%- set thinking = enable_thinking is not defined or enable_thinking -%}"
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['role'] == 'assistant' and not thinking -%}"
    "{{- '<think>\\n\\n</think>\\n\\n' -}}"
    "{%- endif -%}"
    "{{- message['content'] + '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- if not thinking -%}{{- '<think>\\n\\n</think>\\n\\n' -}}{%- endif -%}"
    "{%- endif -%}"
)
# DeepSeek-R1-style: the generation prompt ends inside an opened think block, so the completion starts
# with the reasoning and carries `</think>` but no `<think>`. An assistant turn is rendered the same
# way (its own leading `<think>` folded into the opened one) so the prompt is a prefix of the dialogue.
R1_TEMPLATE = (
    "{{- bos_token -}}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'system' -%}{{- message['content'] -}}"
    "{%- elif message['role'] == 'user' -%}{{- '<｜User｜>' + message['content'] -}}"
    "{%- elif message['role'] == 'assistant' -%}"
    "{%- set content = message['content'] -%}"
    "{%- if content.startswith('<think>') -%}{%- set content = content[7:].lstrip('\\n') -%}{%- endif -%}"
    "{{- '<｜Assistant｜><think>\\n' + content + '<｜end▁of▁sentence｜>' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<｜Assistant｜><think>\\n' -}}{%- endif -%}"
)
_STYLES = {
    # style: (special tokens, pad, eos, bos, template)
    "qwen3": (("<|endoftext|>", "<|im_start|>", "<|im_end|>"), "<|endoftext|>", "<|im_end|>", None, QWEN3_TEMPLATE),
    "r1": (
        ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>"),
        "<｜end▁of▁sentence｜>",
        "<｜end▁of▁sentence｜>",
        "<｜begin▁of▁sentence｜>",
        R1_TEMPLATE,
    ),
}


def corpus() -> list[str]:
    """The shipped GSM8K and MATH-500 slices' text, plus worked sums in the quickstart's format."""
    texts = []
    for name, fields in (
        ("gsm8k_test_250.jsonl", ("question", "answer")),
        ("math500_test.jsonl", ("problem", "solution")),
    ):
        for line in (SHIPPED / name).read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            texts.extend(row[f] for f in fields)
    texts.extend(
        f"<think>{a}+{b}={a + b}</think><answer>{a + b}</answer>" for a in range(0, 100, 7) for b in range(3, 60, 11)
    )
    return texts


@functools.cache
def _trained_bpe() -> str:
    """The trained backend as JSON (cached: training is deterministic and takes a couple of seconds).

    Special tokens are added after training, at the end of the vocabulary as in real tokenizers, so
    both template styles share one set of merges."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_PRETOKENIZE), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    backend.decoder = decoders.ByteLevel()
    trainer = BpeTrainer(
        vocab_size=BPE_VOCAB_SIZE,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(corpus(), trainer=trainer)
    return backend.to_str()


def build_bpe_tokenizer(style: str = "qwen3", model_max_length: int = 1024):
    """A byte-level BPE tokenizer of the real format, trained on local text: `style` "qwen3" or "r1".

    Role and end tokens are special; `<think>`/`</think>` are added (non-special) tokens as in the real
    ones, so TRL's `skip_special_tokens=True` decoding keeps them; every other string, `<answer>`
    included, is BPE pieces.
    """
    specials, pad, eos, bos, template = _STYLES[style]
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_trained_bpe()),
        pad_token=pad,
        eos_token=eos,
        bos_token=bos,
        additional_special_tokens=[t for t in specials if t not in (pad, eos, bos)],
        model_max_length=model_max_length,
        padding_side="left",
    )
    tokenizer.add_tokens(list(THINK_TOKENS))
    tokenizer.chat_template = template
    return tokenizer


def build_tokenizer(kind: str | None):
    """The tokenizer a builder saves with its model: "char" (default), "bpe-qwen3" or "bpe-r1"."""
    if kind in (None, "char"):
        return build_char_tokenizer()
    return build_bpe_tokenizer(kind.removeprefix("bpe-"))
