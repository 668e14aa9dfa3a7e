"""Every llama.cpp tokenizer test vocabulary of a decoder family (the sdist's models/ggml-vocab-*.gguf, whose .out ids
the original Hugging Face tokenizers produced) goes through downsize's GGUF converter and tokenizes its .inp strings
to exactly the .out ids in llama.cpp.

For each vocabulary, tests/ggml_vocab.py rebuilds the HF tokenizer folder (the GGUF's tokens and merges/scores in
the family's real tokenizer.json pipeline) and a one-layer model of the family; the first test proves the rebuilt
HF tokenizer is faithful (transformers gives the .out ids), the second exports it and tokenizes in llama.cpp.
The vocabularies of 100k tokens and more are marked slow (about 10 s each to build and export);
benchmarks/export_tokenizers.py runs all of them next to llama.cpp's own converter.
"""

from __future__ import annotations

import contextlib
import json
import os

import pytest

from downsize.export.gguf import export_gguf
from downsize.export.gguf.vocab import KNOWN_PRETOKENIZERS

from ggml_vocab import FAMILIES, VOCABS, build_folder, load_cases, models_dir, read_metadata

LARGE = {"command-r", "deepseek-llm", "gemma-4", "llama-bpe", "qwen2", "qwen35"}  # >= 100k tokens
PARAMS = [pytest.param(n, marks=pytest.mark.slow) if n in LARGE else n for n in VOCABS]
# llama.cpp's converter names these by vocabulary hash; llama-vocab.cpp runs them exactly as the name downsize picks
# from the pipeline (same regexes, same clean_spaces and ignore_merges), so either name tokenizes the same.
SAME_AS = {"refact": "starcoder", "mpt": "gpt-2"}


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    """name -> (folder, gguf, export result), built once per session."""
    cache: dict = {}

    def get(name: str, sentencepiece_model: bool = False):
        key = (name, sentencepiece_model)
        if key not in cache:
            d = build_folder(name, tmp_path_factory.mktemp(f"vocab_{name}"), sentencepiece_model=sentencepiece_model)
            res = export_gguf(d, d.parent / f"{d.name}.gguf", "F16")
            cache[key] = (d, d.parent / f"{d.name}.gguf", res)
        return cache[key]

    return get


def _vocab_only(path):
    import llama_cpp

    with open(os.devnull, "w") as devnull, contextlib.redirect_stderr(devnull):
        return llama_cpp.Llama(str(path), vocab_only=True, verbose=False)


def _detokenize(llm, ids: list[int]) -> str:
    """llama.cpp's own llama_detokenize (Llama.detokenize joins token pieces and skips its space clean-up)."""
    import ctypes

    import llama_cpp

    vocab = llama_cpp.llama_model_get_vocab(llm._model.model)
    buf = ctypes.create_string_buffer(4096)
    n = llama_cpp.llama_detokenize(vocab, (llama_cpp.llama_token * len(ids))(*ids), len(ids), buf, len(buf), False, False)
    return buf.raw[:n].decode("utf-8")


def _mismatches(encode, cases) -> list:
    return [(text[:40], ids[:8], got[:8]) for text, ids in cases if (got := encode(text)) != ids]


@pytest.mark.parametrize("name", PARAMS)
def test_rebuilt_hf_tokenizer_gives_the_llama_cpp_test_ids(name, built):
    from transformers import AutoTokenizer

    folder, _, _ = built(name)
    hf = AutoTokenizer.from_pretrained(folder)
    cases = load_cases(name)
    bad = _mismatches(lambda t: hf.encode(t, add_special_tokens=False), cases)
    assert not bad, f"{name}: {len(cases) - len(bad)}/{len(cases)} strings match; first differences {bad[:3]}"


@pytest.mark.parametrize("name", PARAMS)
def test_downsize_gguf_tokenizes_the_test_strings_exactly_in_llama_cpp(name, built):
    _, path, res = built(name)
    cases = load_cases(name)
    llm = _vocab_only(path)
    bad = _mismatches(lambda t: llm.tokenize(t.encode("utf-8"), add_bos=False, special=False), cases)
    assert not bad, f"{name}: {len(cases) - len(bad)}/{len(cases)} strings match; first differences {bad[:3]}"
    theirs = read_metadata(models_dir() / f"ggml-vocab-{name}.gguf")
    if FAMILIES[name].spm:
        assert res.tokenizer["model"] == "llama" and res.tokenizer["pre"] == "default"
    else:  # the pre-tokenizer llama.cpp's converter wrote for the original model (or one llama.cpp runs identically)
        assert res.tokenizer["model"] == "gpt2"
        assert res.tokenizer["pre"] == SAME_AS.get(theirs["tokenizer.ggml.pre"], theirs["tokenizer.ggml.pre"])
        assert res.tokenizer["pre"] in KNOWN_PRETOKENIZERS
    assert res.tokenizer["eos"] == theirs["tokenizer.ggml.eos_token_id"]
    assert res.tokenizer["bos"] == theirs["tokenizer.ggml.bos_token_id"]


@pytest.mark.parametrize("name", ["llama-spm", "phi-3"])
def test_sentencepiece_scores_come_from_tokenizer_model_as_llama_cpp_writes_them(name, built):
    """With a tokenizer.model in the folder the scores are its pieces' scores, exactly what llama.cpp's converter
    wrote into the sdist's GGUF; the text still tokenizes to the .out ids."""
    _, path, res = built(name, sentencepiece_model=True)
    assert res.tokenizer["scores_from"] == "tokenizer.model"
    ours, theirs = read_metadata(path), read_metadata(models_dir() / f"ggml-vocab-{name}.gguf")
    assert ours["tokenizer.ggml.scores"] == theirs["tokenizer.ggml.scores"]
    assert ours["tokenizer.ggml.add_space_prefix"] is True
    llm = _vocab_only(path)
    assert not _mismatches(lambda t: llm.tokenize(t.encode("utf-8"), add_bos=False, special=False), load_cases(name))


@pytest.mark.parametrize("clean_up,pre", [(False, "command-r"), (True, "starcoder")])
def test_decoding_keeps_the_space_before_punctuation_when_the_tokenizer_does(clean_up, pre, built, tmp_path):
    """Command-R's pipeline is StarCoder's (digits, then GPT-2's regex) but its tokenizer does not clean up spaces
    when decoding: llama.cpp's "command-r" keeps " ," where "starcoder" would print ","."""
    import shutil

    folder, _, _ = built("starcoder")
    d = tmp_path / "m"
    shutil.copytree(folder, d)
    cfg_path = d / "tokenizer_config.json"
    cfg_path.write_text(json.dumps({**json.loads(cfg_path.read_text()), "clean_up_tokenization_spaces": clean_up}))
    res = export_gguf(d, tmp_path / "m.gguf", "F16")
    assert res.tokenizer["pre"] == pre
    llm = _vocab_only(tmp_path / "m.gguf")
    text = "Hello , world ! Is it ? Yes ."
    decoded = _detokenize(llm, llm.tokenize(text.encode(), add_bos=False, special=False))
    assert decoded == (text.replace(" ,", ",").replace(" !", "!").replace(" ?", "?").replace(" .", ".") if clean_up else text)


def test_metaspace_form_of_a_sentencepiece_tokenizer_exports_the_same(built, tmp_path):
    """Mistral v0.3 and transformers 5's LlamaTokenizer spell the "▁" escaping as a Metaspace pre-tokenizer instead
    of Llama 2's Prepend + Replace normalizer: the same spm vocabulary, the same ids in llama.cpp (which always
    prepends "▁"; tokenizers' Metaspace skips it for text starting with a space, which the export warns about)."""
    import shutil

    folder, _, _ = built("llama-spm")
    d = tmp_path / "m"
    shutil.copytree(folder, d)
    tj = json.loads((d / "tokenizer.json").read_text())
    tj["normalizer"] = None
    tj["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": False}
    tj["decoder"] = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": False}
    (d / "tokenizer.json").write_text(json.dumps(tj, ensure_ascii=False))
    res = export_gguf(d, tmp_path / "m.gguf", "F16")
    assert res.tokenizer["model"] == "llama"
    assert read_metadata(tmp_path / "m.gguf")["tokenizer.ggml.add_space_prefix"] is True
    llm = _vocab_only(tmp_path / "m.gguf")
    assert not _mismatches(lambda t: llm.tokenize(t.encode("utf-8"), add_bos=False, special=False), load_cases("llama-spm"))
