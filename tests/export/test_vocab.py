"""Pre-tokenizer detection from the tokenizer's own pipeline, checked against llama.cpp's tokenizer for each known
name; normalizers refused or warned about; added-token types and BOS as llama.cpp's converter writes them."""

from __future__ import annotations

import json
import logging

import pytest
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from downsize.errors import DownsizeError
from downsize.export.gguf import export_gguf
from downsize.export.gguf.vocab import (DIGIT_REGEX, DIGITS_REGEX, GPT2_REGEX, KNOWN_PRETOKENIZERS, PUNCT_REGEX,
                                        check_normalizer, detect_pretokenizer)
from downsize.export.verify import MIXED_TEXT, gguf_tokenize, load_llama
from downsize.zoo.tokenizer import CHATML_TEMPLATE, EOS, IM_END, IM_START, PAD, SPECIAL_TOKENS

from tiny_models import make_tiny_model, save_tiny


def _pre_tokenizer(regexes: tuple[str, ...]):
    steps = {DIGIT_REGEX: lambda: pre_tokenizers.Digits(individual_digits=True),
             DIGITS_REGEX: lambda: pre_tokenizers.Digits(individual_digits=False),
             PUNCT_REGEX: lambda: pre_tokenizers.Punctuation(behavior="contiguous"),
             GPT2_REGEX: lambda: pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)}
    parts = [steps[r]() if r in steps else pre_tokenizers.Split(Regex(r), behavior="isolated", invert=False)
             for r in regexes]
    if GPT2_REGEX not in regexes:
        parts.append(pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False))
    return pre_tokenizers.Sequence(parts)


def _train(texts, pre, path, ignore_merges=False, clean_up=False, model_type=None, added=(), normalizer=None):
    tok = Tokenizer(models.BPE(unk_token=None, ignore_merges=ignore_merges))
    tok.pre_tokenizer = pre
    tok.normalizer = normalizer
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=400, special_tokens=list(SPECIAL_TOKENS),
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                       show_progress=False))
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in added])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=PAD,
                                   additional_special_tokens=[IM_START, IM_END], clean_up_tokenization_spaces=clean_up)
    fast.chat_template = CHATML_TEMPLATE
    fast.save_pretrained(path)
    return AutoTokenizer.from_pretrained(path)


@pytest.mark.parametrize("name", sorted(KNOWN_PRETOKENIZERS))
def test_each_known_pretokenizer_tokenizes_like_hf_in_llama_cpp(name, stdlib_texts, tmp_path):
    known = KNOWN_PRETOKENIZERS[name]
    tok = _train(stdlib_texts[:20], _pre_tokenizer(known.regexes), tmp_path / "tok", ignore_merges=known.ignore_merges,
                 clean_up=known.clean_spaces)
    d = save_tiny(make_tiny_model("llama", tok, num_hidden_layers=1), tok, tmp_path / "m")
    res = export_gguf(d, tmp_path / "m.gguf", "F16")
    assert res.tokenizer["pre"] == name
    llm = load_llama(tmp_path / "m.gguf")
    for text in (MIXED_TEXT, *stdlib_texts[20:23]):
        text = text[:1500]
        assert gguf_tokenize(llm, text) == tok.encode(text, add_special_tokens=False), name


def test_contraction_spellings_are_equivalent():
    hf = {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": KNOWN_PRETOKENIZERS["llama-bpe"].regexes[0].replace(
            "(?i:'s|'t|'re|'ve|'m|'ll|'d)", "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])")},
         "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}}
    assert detect_pretokenizer(dict(hf, model={"ignore_merges": True})) == "llama-bpe"


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


def test_the_pipeline_flags_choose_between_names_with_the_same_regexes():
    """Same regex, different llama.cpp behaviour: BPE ignore_merges and the decoder's space clean-up pick the name."""
    pre = {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True},
                                                 {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}]}
    assert detect_pretokenizer({"pre_tokenizer": pre}, clean_up_spaces=True) == "starcoder"
    assert detect_pretokenizer({"pre_tokenizer": pre}, clean_up_spaces=False) == "command-r"
    llama3 = {"type": "Split", "pattern": {"Regex": KNOWN_PRETOKENIZERS["llama-bpe"].regexes[0]}, "behavior": "Isolated",
              "invert": False}
    assert detect_pretokenizer({"pre_tokenizer": llama3, "model": {"ignore_merges": True}}, True) == "llama-bpe"
    assert detect_pretokenizer({"pre_tokenizer": llama3, "model": {"ignore_merges": False}}, True) == "dbrx"


@pytest.mark.parametrize("normalizer,needs", [
    ({"type": "NFKC"}, "NFKC compatibility composition"),
    ({"type": "Lowercase"}, "lower-casing"),
    ({"type": "Sequence", "normalizers": [{"type": "NFC"}, {"type": "StripAccents"}]}, "accent stripping"),
])
def test_normalizers_llama_cpp_cannot_apply_are_refused_saying_what_it_would_need(normalizer, needs):
    with pytest.raises(DownsizeError, match="normalizer cannot be written to GGUF") as e:
        check_normalizer(normalizer)
    assert needs in e.value.hint


def test_an_nfc_normalizer_is_warned_about_not_dropped_silently(caplog):
    with caplog.at_level(logging.WARNING, logger="downsize.export.gguf.vocab"):
        check_normalizer({"type": "NFC"})
    assert "NFC" in caplog.text and "llama.cpp does not normalize" in caplog.text


def test_an_unsupported_normalizer_refuses_the_export(stdlib_texts, tmp_path):
    tok = _train(stdlib_texts[:10], _pre_tokenizer(KNOWN_PRETOKENIZERS["gpt-2"].regexes), tmp_path / "tok",
                 clean_up=True, normalizer=normalizers.Lowercase())
    d = save_tiny(make_tiny_model("llama", tok, num_hidden_layers=1), tok, tmp_path / "m")
    with pytest.raises(DownsizeError, match="Lowercase normalizer"):
        export_gguf(d, tmp_path / "m.gguf", "F16")
    assert not (tmp_path / "m.gguf").exists()


QWEN2_FIM = ("<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>")


def test_qwen2_bos_and_fim_tokens_as_llama_cpps_converter_writes_them(stdlib_texts, tmp_path):
    """Qwen2's tokenizer names no BOS: the id comes from config.json (<|endoftext|>), not EOS (<|im_end|>); its
    <|fim_*|>, <|repo_name|>, <|file_sep|> are added with special=False but are control tokens in llama.cpp."""
    import gguf

    tok = _train(stdlib_texts[:10], _pre_tokenizer(KNOWN_PRETOKENIZERS["qwen2"].regexes), tmp_path / "tok", added=QWEN2_FIM)
    tc = tmp_path / "tok" / "tokenizer_config.json"
    tc.write_text(json.dumps({**json.loads(tc.read_text()), "eos_token": IM_END, "bos_token": None}))
    tok = AutoTokenizer.from_pretrained(tmp_path / "tok")
    model = make_tiny_model("qwen2", tok, num_hidden_layers=1)
    model.config.bos_token_id = tok.convert_tokens_to_ids(EOS)
    d = save_tiny(model, tok, tmp_path / "m")
    res = export_gguf(d, tmp_path / "m.gguf", "F16")
    assert res.tokenizer["pre"] == "qwen2"
    assert res.tokenizer["bos"] == tok.convert_tokens_to_ids(EOS) != res.tokenizer["eos"]
    types = gguf.GGUFReader(tmp_path / "m.gguf").get_field("tokenizer.ggml.token_type").contents()
    assert all(types[tok.convert_tokens_to_ids(t)] == gguf.TokenType.CONTROL for t in QWEN2_FIM)
