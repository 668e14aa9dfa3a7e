"""KL / top-1 against a teacher when a GGUF's vocabulary holds the embedding's padding rows (Qwen2.5:
151,936 entries vs the tokenizer's 151,665): shared ids agree, so the comparison is made, not shown as '-'."""

from downsize.eval.compare import ids_agree


def test_padding_entries_do_not_block_the_comparison():
    hf = {"a": 0, "b": 1, "<|im_end|>": 2}
    gguf = {**hf, "[PAD3]": 3, "[PAD4]": 4}
    assert ids_agree(gguf, hf) and ids_agree(hf, gguf) and ids_agree(hf, dict(hf))


def test_a_different_id_or_a_missing_token_refuses():
    hf = {"a": 0, "b": 1}
    assert not ids_agree({"a": 1, "b": 0, "c": 2}, hf)
    assert not ids_agree({"a": 0, "c": 1, "d": 2}, hf)
