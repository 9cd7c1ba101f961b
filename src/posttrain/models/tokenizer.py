"""A character-level tokenizer with a chat template, built locally so nothing comes from the Hub.

Reasoning tags are single tokens: spelled out as characters they ate the completion budget
of tiny models and every sample was truncated (see shared notes on tiny GRPO).
The result is a normal `PreTrainedTokenizerFast`: `save_pretrained` writes `tokenizer.json`
and `AutoTokenizer.from_pretrained` loads it back, exactly like a Hub tokenizer.
"""

from __future__ import annotations

import string

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
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
