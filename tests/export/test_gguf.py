"""HF → GGUF export verified in real llama.cpp (llama-cpp-python): tokens, F32 logits, F16/Q8_0 agreement."""

from __future__ import annotations

import json

import gguf
import pytest

from downsize.export.gguf import export_gguf
from downsize.export.verify import MIXED_TEXT, compare_with_hf


def _kv(path, key):
    f = gguf.GGUFReader(path).fields[key]
    return f.contents()


def test_f32_export_matches_transformers(export_family_dir, tmp_path):
    out = tmp_path / "m-f32.gguf"
    res = export_gguf(export_family_dir, out, "F32")
    assert out.exists() and res.nbytes == out.stat().st_size
    r = compare_with_hf(out, export_family_dir, [MIXED_TEXT])
    assert r["tokens_equal"], f"llama.cpp tokenized the mixed text differently from the HF tokenizer: {r}"
    assert r["n_tokens"] > 50
    assert r["max_abs_logit_diff"] < 1e-3, r
    assert r["top1_agreement"] >= 0.99  # random-init logits have near-ties; the max diff above is the real check
    assert not list(tmp_path.glob(".*tmp*")), "temporary files left behind"


@pytest.mark.parametrize("quant,max_kl", [("F16", 1e-4), ("BF16", 2e-3), ("Q8_0", 5e-3)])
def test_direct_quant_types_load_and_agree(tiny_model_dir, tmp_path, quant, max_kl):
    out = tmp_path / f"m-{quant}.gguf"
    res = export_gguf(tiny_model_dir, out, quant)
    assert res.quant == quant
    assert _kv(out, "general.file_type") == int(gguf.LlamaFileType[("ALL_" if quant == "F32" else "MOSTLY_") + quant])
    r = compare_with_hf(out, tiny_model_dir, [MIXED_TEXT])
    assert r["tokens_equal"]
    assert r["kl"] < max_kl, r


def test_tokenizer_metadata(tiny_model_dir, tmp_path, tiny_tokenizer):
    out = tmp_path / "m.gguf"
    export_gguf(tiny_model_dir, out, "F16")
    # Llama 3's regex, but a BPE trained without ignore_merges: llama.cpp's "dbrx" runs that regex without
    # ignore_merges ("llama-bpe" would keep any word that is a token whole, which HF does not)
    assert _kv(out, "tokenizer.ggml.pre") == "dbrx"
    assert _kv(out, "tokenizer.ggml.model") == "gpt2"
    assert _kv(out, "tokenizer.chat_template") == tiny_tokenizer.chat_template
    assert _kv(out, "tokenizer.ggml.eos_token_id") == tiny_tokenizer.eos_token_id
    assert _kv(out, "tokenizer.ggml.eot_token_id") == tiny_tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert _kv(out, "tokenizer.ggml.add_bos_token") is False
    types = _kv(out, "tokenizer.ggml.token_type")
    for t in tiny_tokenizer.all_special_tokens:
        assert types[tiny_tokenizer.convert_tokens_to_ids(t)] == gguf.TokenType.CONTROL


def test_cli_export_gguf(tiny_model_dir, tmp_path):
    from typer.testing import CliRunner

    from downsize.cli import app

    out = tmp_path / "cli.gguf"
    r = CliRunner().invoke(app, ["export", "gguf", str(tiny_model_dir), "--out", str(out), "--quant", "q8_0", "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.output)
    assert info["quant"] == "Q8_0" and out.stat().st_size == info["bytes"]


@pytest.mark.parametrize("name", ["coder-teacher", "coder-teacher-qwen"])
def test_zoo_model_exports_and_matches(name, tmp_path, stdlib_texts):
    from downsize.errors import DownsizeError
    from downsize.models.refs import resolve_model

    try:
        resolve_model(f"zoo:{name}")
    except DownsizeError:
        pytest.skip(f"zoo:{name} is not trained in this checkout")
    out = tmp_path / f"{name}.gguf"
    res = export_gguf(f"zoo:{name}", out, "F32")
    assert res.tokenizer["pre"] == ("qwen2" if name.endswith("qwen") else "dbrx")  # Llama 3 regex, no ignore_merges
    r = compare_with_hf(out, f"zoo:{name}", [MIXED_TEXT, stdlib_texts[0][:2000]])
    assert r["tokens_equal"], r
    assert r["max_abs_logit_diff"] < 2e-3 and r["top1_agreement"] >= 0.99, r
