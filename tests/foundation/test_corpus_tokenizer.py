"""zoo:stdlib corpus determinism and split stability; tokenizer round trip."""

import pytest

from downsize.data.stdlib import SPLITS, StdlibCorpus, corpus_warning, split_of
from downsize.zoo.tokenizer import TokenizerSpec, train_bpe_tokenizer


def test_split_is_a_pure_function_of_the_path():
    # Values computed once from sha256; they must never change, or every zoo result changes meaning.
    assert split_of("os.py") == split_of("os.py")
    assert {split_of(f"pkg/mod{i}.py") for i in range(200)} == set(SPLITS)
    counts = {s: 0 for s in SPLITS}
    for i in range(4000):
        counts[split_of(f"m{i}.py")] += 1
    assert 0.87 < counts["train"] / 4000 < 0.93 and 0.03 < counts["validation"] / 4000 < 0.07


def test_corpus_is_deterministic_and_splits_partition():
    a, b = StdlibCorpus.local(), StdlibCorpus.local()
    ma, mb = a.manifest(), b.manifest()
    assert ma["fingerprint"] == mb["fingerprint"]
    paths = [f["path"] for f in ma["files"]]
    assert paths == sorted(paths) and len(paths) == len(set(paths)) > 500
    assert sum(s["files"] for s in ma["splits"].values()) == len(paths)
    assert all(f["split"] == split_of(f["path"]) for f in ma["files"])
    assert not any("site-packages" in p for p in paths)
    val = list(a.documents("validation"))
    assert val == list(b.documents("validation")) and len(val) == ma["splits"]["validation"]["files"]


def test_adding_a_file_moves_no_other_file(tmp_path):
    for i in range(30):
        (tmp_path / f"m{i}.py").write_text(f"x = {i}\n")
    before = {f.path: f.split for f in StdlibCorpus(tmp_path).files}
    (tmp_path / "new.py").write_text("y = 1\n")
    after = {f.path: f.split for f in StdlibCorpus(tmp_path).files}
    assert {k: after[k] for k in before} == before
    fp = StdlibCorpus(tmp_path).fingerprint
    (tmp_path / "m3.py").write_text("x = 'changed'\n")
    assert StdlibCorpus(tmp_path).fingerprint != fp  # any content change is visible in the fingerprint


def test_corpus_warning(tmp_path):
    (tmp_path / "a.py").write_text("a = 1\n")
    c = StdlibCorpus(tmp_path)
    assert corpus_warning(c.fingerprint, c) is None
    assert "differs from the one this model was trained on" in corpus_warning("0" * 64, c)
    assert corpus_warning(None, c) is None


MIXED = ("def f(x, *args, **kw):\n\treturn x ** 2  # comment\n\n\n    \t  trailing   \n"
         "s = 'héllo wörld — 世界 🐍'\nn = 1234567890 + 0x1F\n<|im_start|>user\nhi<|im_end|>\n<|endoftext|>")


@pytest.mark.parametrize("pretok", ["llama-bpe", "qwen2"])
def test_tokenizer_round_trip(stdlib_texts, pretok):
    tok = train_bpe_tokenizer(stdlib_texts[:10], TokenizerSpec(vocab_size=400, pretokenizer=pretok))
    ids = tok(MIXED, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == MIXED
    specials = [tok.convert_tokens_to_ids(t) for t in ("<|im_start|>", "<|im_end|>", "<|endoftext|>")]
    assert all(s in ids for s in specials)  # special tokens stay single tokens
    pieces = [p for p, _ in tok.backend_tokenizer.pre_tokenizer.pre_tokenize_str("x1234567890")]
    # llama-bpe groups digits by up to three, qwen2 splits every digit
    assert pieces == (["x", "123", "456", "789", "0"] if pretok == "llama-bpe" else ["x", *"1234567890"])


def test_zoo_tokenizer_round_trip():
    from downsize.zoo import zoo_path
    from transformers import AutoTokenizer

    path = zoo_path("coder-teacher")
    if not (path / "tokenizer.json").exists():
        pytest.skip("zoo teacher not installed")
    tok = AutoTokenizer.from_pretrained(path)
    ids = tok(MIXED, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == MIXED and len(tok) == 8192
    chat = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert chat == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
