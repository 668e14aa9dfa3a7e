"""Byte-level BPE tokenizers for the reference zoo, trained on the ``zoo:stdlib`` train split.

The pre-tokenizer is a regex that llama.cpp knows by name (``llama-bpe`` or ``qwen2``), so an
exported GGUF splits text exactly as the Hugging Face tokenizer does.

    >>> texts = ["def add(a, b): return a + b", "def sub(a, b): return a - b"] * 20
    >>> tok = train_bpe_tokenizer(texts, TokenizerSpec(vocab_size=300, pretokenizer="llama-bpe"))
    >>> len(tok) <= 300, tok.decode(tok("def add(a, b):")["input_ids"])
    (True, 'def add(a, b):')
    >>> _ = tok.save_pretrained("out/")
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

# Pre-tokenizer regexes, keyed by the name llama.cpp gives them (tokenizer.ggml.pre).
PRETOKENIZER_REGEX = {
    # Llama 3: numbers in groups of up to three digits.
    "llama-bpe": (
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
        r"|\s*[\r\n]+|\s+(?!\S)|\s+"
    ),
    # Qwen2: every digit on its own.
    "qwen2": (
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
        r"|\s*[\r\n]+|\s+(?!\S)|\s+"
    ),
}

EOS = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
PAD = "<|pad|>"
SPECIAL_TOKENS = (EOS, IM_START, IM_END, PAD)

# ChatML, as Qwen2 uses it; tool calls are written as <tool_call>{json}</tool_call> in the text.
CHATML_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['content'] is string %}{{- message['content'] }}{%- endif %}"
    "{%- if message.get('tool_calls') %}"
    "{%- for call in message['tool_calls'] %}"
    "{{- '<tool_call>' + (call['function'] | tojson) + '</tool_call>' }}"
    "{%- endfor %}"
    "{%- endif %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


@dataclass(frozen=True)
class TokenizerSpec:
    vocab_size: int = 8192
    pretokenizer: str = "llama-bpe"
    min_frequency: int = 2


def train_bpe_tokenizer(texts: Iterable[str], spec: TokenizerSpec) -> "PreTrainedTokenizerFast":
    """Train a byte-level BPE with the spec's llama.cpp-known pre-tokenizer and the zoo's special tokens."""
    regex = PRETOKENIZER_REGEX[spec.pretokenizer]
    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(regex), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=spec.vocab_size,
        min_frequency=spec.min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    from transformers import PreTrainedTokenizerFast  # only when training: zoo:NAME lookups stay light

    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=EOS,
        pad_token=PAD,
        bos_token=None,
        unk_token=None,
        additional_special_tokens=[IM_START, IM_END],
        model_max_length=2048,
        clean_up_tokenization_spaces=False,
    )
    fast.chat_template = CHATML_TEMPLATE
    return fast
