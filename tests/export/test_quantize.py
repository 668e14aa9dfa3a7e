"""K-quants through llama.cpp's quantizer and the importance matrix (computed on the HF model, read by llama.cpp)."""

from __future__ import annotations

from dataclasses import replace

import gguf
import numpy as np
import pytest

from downsize.errors import DownsizeError
from downsize.export.gguf import export_gguf
from downsize.export.imatrix import ImatrixConfig, compute_imatrix, read_imatrix, write_imatrix
from downsize.export.quantize import quantize_gguf
from downsize.export.verify import MIXED_TEXT, compare_with_hf


def _types(path) -> dict[str, str]:
    return {t.name: t.tensor_type.name for t in gguf.GGUFReader(path).tensors}


@pytest.fixture(scope="module")
def imatrix_file(kquant_model_dir, stdlib_texts, tmp_path_factory):
    im = compute_imatrix(kquant_model_dir, stdlib_texts[:10], ImatrixConfig(n_samples=8, seq_len=64, batch_size=4))
    return write_imatrix(im, tmp_path_factory.mktemp("im") / "m.imatrix.gguf"), im


def test_imatrix_matches_naive_activation_squares(kquant_model_dir, imatrix_file, stdlib_texts):
    """E[x²] of layer 0's q_proj input equals the mean square of input_layernorm(embeddings), computed by hand."""
    import torch

    from downsize.models.refs import load_model
    from downsize.prune.calib import calibration_ids

    path, im = imatrix_file
    assert set(im.sums) >= {"blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.1.ffn_down.weight", "output.weight"}
    means = read_imatrix(path)
    model, tok = load_model(kquant_model_dir)
    ids = calibration_ids(tok, stdlib_texts[:10], 8, 64, seed=0, split="train")
    with torch.no_grad():
        x = model.model.layers[0].input_layernorm(model.model.embed_tokens(ids)).reshape(-1, 256).double()
    ref = (x * x).mean(0).numpy()
    assert np.allclose(means["blk.0.attn_q.weight"], ref, rtol=1e-4)
    assert np.allclose(means["blk.0.attn_k.weight"], ref, rtol=1e-4)  # same input, same statistic
    assert im.counts["blk.0.attn_q.weight"] == ids.numel()


def test_kquants_load_in_llama_cpp_and_shrink(kquant_model_dir, tmp_path):
    f16 = tmp_path / "f16.gguf"
    export_gguf(kquant_model_dir, f16, "F16")
    sizes = {}
    for q in ("Q6_K", "Q4_K_M", "Q3_K_M", "Q2_K"):
        out = tmp_path / f"{q}.gguf"
        r = quantize_gguf(f16, out, q)
        sizes[q] = out.stat().st_size
        types = set(_types(out).values())
        assert any(t.endswith("_K") for t in types), (q, types)
        c = compare_with_hf(out, kquant_model_dir, [MIXED_TEXT])
        assert c["tokens_equal"] and c["kl"] < 0.05, (q, c)
        assert r["imatrix"] is False
    assert sizes["Q6_K"] > sizes["Q4_K_M"] > sizes["Q3_K_M"] > sizes["Q2_K"]
    assert not list(tmp_path.glob(".*tmp*"))


def test_imatrix_changes_quantization(kquant_model_dir, imatrix_file, tmp_path):
    path, _ = imatrix_file
    plain, guided = tmp_path / "plain.gguf", tmp_path / "guided.gguf"
    export_gguf(kquant_model_dir, plain, "Q3_K_M")
    export_gguf(kquant_model_dir, guided, "Q3_K_M", imatrix=path)
    rp, rg = gguf.GGUFReader(plain), gguf.GGUFReader(guided)
    a = {t.name: bytes(t.data) for t in rp.tensors}
    b = {t.name: bytes(t.data) for t in rg.tensors}
    assert a.keys() == b.keys()
    assert a["blk.0.attn_q.weight"] != b["blk.0.attn_q.weight"], "the importance matrix did not reach the quantizer"
    assert a["blk.0.attn_norm.weight"] == b["blk.0.attn_norm.weight"]
    c = compare_with_hf(guided, kquant_model_dir, [MIXED_TEXT])
    assert c["tokens_equal"] and c["kl"] < 0.05


def test_iq_types_need_an_imatrix(kquant_model_dir, imatrix_file, tmp_path):
    f16 = tmp_path / "f16.gguf"
    export_gguf(kquant_model_dir, f16, "F16")
    with pytest.raises(DownsizeError, match="importance matrix"):
        quantize_gguf(f16, tmp_path / "iq2.gguf", "IQ2_XS")
    assert not (tmp_path / "iq2.gguf").exists()
    r = quantize_gguf(f16, tmp_path / "iq2.gguf", "IQ2_XS", imatrix=imatrix_file[0])
    assert "IQ2_XS" in set(_types(r["path"]).values())


def test_cli_export_with_calib_and_report(kquant_model_dir, stdlib_texts, tmp_path):
    import json

    from typer.testing import CliRunner

    from downsize.cli import app

    data = tmp_path / "calib.txt"
    data.write_text("\n\n".join(stdlib_texts[:5]))
    out = tmp_path / "m-q4_k_m.gguf"
    r = CliRunner().invoke(app, ["export", "gguf", str(kquant_model_dir), "--out", str(out), "--quant", "Q4_K_M",
                                 "--calib", str(data), "--report", "--report-data", str(data),
                                 "--report-tokens", "1024", "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.output[r.output.index("{"):])  # llama.cpp's quantizer prints fallback warnings on stdout
    assert info["imatrix"] and (tmp_path / "m-q4_k_m.imatrix.gguf").exists()
    rep = info["report"]
    assert 4.0 < rep["bits_per_weight"] < 8.0 and rep["kl"] > 0 and rep["tokens"] > 100
    assert abs(rep["ppl_delta_pct"]) < 10


def test_imatrix_entries_follow_llama_imatrix(export_family_dir, stdlib_texts):
    """Entries for every blk.* matmul and an untied output.weight; none for a tied embedding (llama-imatrix's set)."""
    import json

    im = compute_imatrix(export_family_dir, stdlib_texts[:4], ImatrixConfig(n_samples=2, seq_len=32, batch_size=2))
    cfg = json.loads((export_family_dir / "config.json").read_text())
    tied = cfg.get("tie_word_embeddings", True)
    assert "token_embd.weight" not in im.sums
    assert ("output.weight" in im.sums) is (not tied)
    assert all(k.startswith("blk.") for k in im.sums if k != "output.weight")
    assert any(".ffn_down." in k for k in im.sums) and any(".attn_output." in k for k in im.sums)


def test_streamed_imatrix_equals_whole_model(export_family_dir, stdlib_texts):
    """Layer-by-layer streaming (one decoder layer's weights resident) gives the whole-model statistics."""
    from downsize.export.imatrix import _StreamedModel

    assert _StreamedModel.open(export_family_dir) is not None  # the family streams, no silent fallback
    cfg = ImatrixConfig(n_samples=4, seq_len=32, batch_size=2)
    a = compute_imatrix(export_family_dir, stdlib_texts[:4], cfg)
    b = compute_imatrix(export_family_dir, stdlib_texts[:4], replace(cfg, stream=False))
    assert a.sums.keys() == b.sums.keys() and a.counts == b.counts
    for k in a.sums:
        np.testing.assert_allclose(a.sums[k], b.sums[k], rtol=1e-5, atol=1e-9)
