"""Pre-tokenizer detection from the tokenizer's own regex, checked against llama.cpp's tokenizer for each known name."""

from __future__ import annotations

import pytest
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from downsize.errors import DownsizeError
from downsize.export.gguf import export_gguf
from downsize.export.gguf.vocab import DIGIT_REGEX, KNOWN_PRETOKENIZERS, detect_pretokenizer
from downsize.export.verify import MIXED_TEXT, gguf_tokenize, load_llama
from downsize.zoo.tokenizer import CHATML_TEMPLATE, EOS, IM_END, IM_START, PAD, SPECIAL_TOKENS

from tiny_models import make_tiny_model, save_tiny


def _pre_tokenizer(regexes: tuple[str, ...]):
    parts = []
    for r in regexes:
        if r == DIGIT_REGEX:
            parts.append(pre_tokenizers.Digits(individual_digits=True))
        elif r == KNOWN_PRETOKENIZERS["gpt-2"][0]:
            parts.append(pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True))
        else:
            parts.append(pre_tokenizers.Split(Regex(r), behavior="isolated", invert=False))
    if not isinstance(parts[-1], pre_tokenizers.ByteLevel):
        parts.append(pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False))
    return pre_tokenizers.Sequence(parts)


def _train(texts, pre, path):
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=400, special_tokens=list(SPECIAL_TOKENS),
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                       show_progress=False))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=PAD,
                                   additional_special_tokens=[IM_START, IM_END], clean_up_tokenization_spaces=False)
    fast.chat_template = CHATML_TEMPLATE
    fast.save_pretrained(path)
    return AutoTokenizer.from_pretrained(path)


@pytest.mark.parametrize("name", sorted(KNOWN_PRETOKENIZERS))
def test_each_known_pretokenizer_tokenizes_like_hf_in_llama_cpp(name, stdlib_texts, tmp_path):
    tok = _train(stdlib_texts[:20], _pre_tokenizer(KNOWN_PRETOKENIZERS[name]), tmp_path / "tok")
    d = save_tiny(make_tiny_model("llama", tok, num_hidden_layers=1), tok, tmp_path / "m")
    res = export_gguf(d, tmp_path / "m.gguf", "F16")
    assert res.tokenizer["pre"] == name
    llm = load_llama(tmp_path / "m.gguf")
    for text in (MIXED_TEXT, *stdlib_texts[20:23]):
        text = text[:1500]
        assert gguf_tokenize(llm, text) == tok.encode(text, add_special_tokens=False), name


def test_contraction_spellings_are_equivalent():
    hf = {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": KNOWN_PRETOKENIZERS["llama-bpe"][0].replace(
            "(?i:'s|'t|'re|'ve|'m|'ll|'d)", "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])")},
         "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}}
    assert detect_pretokenizer(hf) == "llama-bpe"


@pytest.mark.parametrize("pre,match", [
    ({"type": "Split", "pattern": {"Regex": r"\w+|\s+"}, "behavior": "Isolated", "invert": False}, "no llama.cpp pre-tokenizer"),
    ({"type": "Whitespace"}, "Whitespace pre-tokenizer"),
    ({"type": "ByteLevel", "add_prefix_space": True, "use_regex": True}, "prefix space"),
    ({"type": "Split", "pattern": {"Regex": r"\s"}, "behavior": "Removed", "invert": False}, "behavior=Removed"),
    (None, "no pre-tokenizer"),
])
def test_unknown_pretokenizers_are_refused_with_a_reason(pre, match):
    with pytest.raises(DownsizeError, match=match) as e:
        detect_pretokenizer({"pre_tokenizer": pre})
    assert e.value.hint
