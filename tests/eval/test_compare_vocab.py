"""Teacher comparisons across padded vocabularies: a GGUF lists the embedding's padding rows as [PAD…] tokens
(Qwen2.5: 151,936 rows, 151,665 tokens), so KL and top-1 are taken over the shared ids when they all agree;
different tokenizers are refused. Here a tiny Qwen2 whose embedding is padded beyond its tokenizer."""

import pytest

from downsize.errors import DownsizeError
from downsize.eval.compare import compare_models, gguf_vocab, match_vocab
from tiny_models import make_tiny_model, save_tiny

PAD = 13


def test_match_vocab_rules():
    base = {"a": 0, "b": 1, "c": 2}
    assert match_vocab(base, dict(base)).ids is None
    m = match_vocab({**base, "[PAD3]": 3, "[PAD4]": 4}, base)
    assert m.ids.tolist() == [0, 1, 2] and "2 more in the model" in m.message and "all of which agree" in m.message
    with pytest.raises(DownsizeError, match="1 of the 3 tokens both hold have different ids .e.g. 'c': 3 vs 2"):
        match_vocab({"a": 0, "b": 1, "c": 3}, base)
    with pytest.raises(DownsizeError, match="share only 1 of 3 tokens"):
        match_vocab({"a": 0, "x": 1, "y": 2}, base)
    with pytest.raises(DownsizeError, match="carries no vocabulary"):
        match_vocab({}, base)


@pytest.fixture(scope="module")
def padded_qwen(tmp_path_factory, tiny_tokenizer):
    model = make_tiny_model("qwen2", tiny_tokenizer, seed=3, vocab_size=len(tiny_tokenizer) + PAD)
    return save_tiny(model, tiny_tokenizer, tmp_path_factory.mktemp("padded_qwen"))


@pytest.fixture(scope="module")
def data_file(tmp_path_factory, stdlib_texts):
    p = tmp_path_factory.mktemp("data") / "val.txt"
    p.write_text("\n\n".join(stdlib_texts[:3]))
    return p


def test_gguf_of_a_padded_model_compares_on_shared_ids(padded_qwen, tiny_tokenizer, data_file, tmp_path):
    pytest.importorskip("llama_cpp")
    from downsize.export.gguf import export_gguf
    from downsize.export.report import ReportConfig, quant_report

    gguf = tmp_path / "padded-f32.gguf"
    export_gguf(str(padded_qwen), gguf, "F32")
    vocab = gguf_vocab(gguf)
    assert len(vocab) == len(tiny_tokenizer) + PAD and vocab != tiny_tokenizer.get_vocab()  # the old "–" case
    rows = compare_models({"teacher": str(padded_qwen), "model": str(gguf)}, teacher="teacher", data=str(data_file),
                          seq_len=64, max_tokens=2048)
    m = rows["model"]
    assert m["kl_to_teacher"] is not None and 0 <= m["kl_to_teacher"] < 1e-4 and m["top1_agreement"] > 0.98
    assert f"{PAD} more in model" in m["vocab"] and "0 more in teacher" in m["vocab"]
    assert abs(m["perplexity"] / rows["teacher"]["perplexity"] - 1) < 1e-3
    row = quant_report([gguf], str(padded_qwen), ReportConfig(data=str(data_file), max_tokens=2048, seq_len=64))[0]
    assert 0 <= row["kl"] < 1e-4 and row["top1_agreement"] > 0.98 and "all of which agree" in row["vocab"]


def test_same_tokenizer_other_embedding_rows(padded_qwen, tiny_tokenizer, data_file, tmp_path):
    """7B vs 1.5B style: one tokenizer, 152,064 vs 151,936 rows -> compared on the token ids, not refused."""
    student = save_tiny(make_tiny_model("qwen2", tiny_tokenizer, seed=4), tiny_tokenizer, tmp_path / "s")
    rows = compare_models({"teacher": str(padded_qwen), "student": str(student)}, teacher="teacher",
                          data=str(data_file), seq_len=64, max_tokens=1024)
    s = rows["student"]
    assert s["kl_to_teacher"] > 0 and 0 <= s["top1_agreement"] <= 1
    assert f"embedding rows {len(tiny_tokenizer):,} vs the teacher's {len(tiny_tokenizer) + PAD:,}" in s["vocab"]


def test_different_tokenizers_are_refused(padded_qwen, data_file, tmp_path, stdlib_texts):
    from downsize.zoo.tokenizer import TokenizerSpec, train_bpe_tokenizer

    other_tok = train_bpe_tokenizer(stdlib_texts[20:40], TokenizerSpec(vocab_size=600, pretokenizer="llama-bpe"))
    other = save_tiny(make_tiny_model("qwen2", other_tok, seed=5), other_tok, tmp_path / "other")
    with pytest.raises(DownsizeError) as e:
        compare_models({"teacher": str(padded_qwen), "other": str(other)}, teacher="teacher", data=str(data_file),
                       seq_len=64, max_tokens=512)
    assert "use different tokenizers" in e.value.message and "without --teacher" not in e.value.message
    assert "no --teacher" in e.value.hint
