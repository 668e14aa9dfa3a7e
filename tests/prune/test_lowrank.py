"""Low-rank: whitened SVD is optimal in the activation metric; PCA slicing is exact at full width and yields a
plain, reloadable narrower model."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import AutoModelForCausalLM

from downsize.errors import DownsizeError
from downsize.prune import PruneConfig, prune, save_pruned
from downsize.prune.lowrank import whitened_lowrank


def fwd(model, ids):
    with torch.no_grad():
        return model(input_ids=ids, use_cache=False).logits


def test_whitened_svd_beats_plain_svd_in_activation_metric():
    torch.manual_seed(0)
    W = torch.randn(24, 32, dtype=torch.float64)
    X = torch.randn(400, 32, dtype=torch.float64) * torch.exp(torch.randn(32, dtype=torch.float64))
    H = X.T @ X
    full, r, e = whitened_lowrank(W, H, rank=32, energy=None, damp=0.0)
    torch.testing.assert_close(full, W)
    assert r == 24 and e == pytest.approx(1.0)  # full rank of a 24 x 32 matrix
    Wr, r, _ = whitened_lowrank(W, H, rank=8, energy=None, damp=0.0)
    U, S, Vh = torch.linalg.svd(W, full_matrices=False)
    plain = (U[:, :8] * S[:8]) @ Vh[:8]
    assert torch.linalg.matrix_rank(Wr) == 8
    assert ((W - Wr) @ X.T).norm() < ((W - plain) @ X.T).norm()
    _, r90, e90 = whitened_lowrank(W, H, rank=None, energy=0.9, damp=0.0)
    assert e90 >= 0.9 and r90 < 32


def test_pca_slice_exact_at_full_width_and_reloads(tiny_models, tiny_tokenizer, calib_ids, tmp_path):
    model = tiny_models["llama"]
    ref = fwd(model, calib_ids[:2])
    same = prune(copy.deepcopy(model), tiny_tokenizer, PruneConfig("lowrank", targets={"hidden": 64}), calib_ids)
    torch.testing.assert_close(fwd(same, calib_ids[:2]), ref, rtol=1e-4, atol=1e-4)  # rotation + folded norms: exact
    m = prune(copy.deepcopy(model), tiny_tokenizer, PruneConfig("lowrank", targets={"hidden": 48}), calib_ids)
    assert m.config.hidden_size == 48 and m.config.head_dim == 16
    assert 0 < m.prune_report["variance_kept"] < 1
    save_pruned(m, tiny_tokenizer, tmp_path / "s")
    re = AutoModelForCausalLM.from_pretrained(tmp_path / "s")
    torch.testing.assert_close(fwd(re, calib_ids[:2]), fwd(m, calib_ids[:2]))


def test_svd_mode_reports_and_keeps_dense(tiny_models, tiny_tokenizer, calib_ids):
    m = prune(copy.deepcopy(tiny_models["qwen2"]), tiny_tokenizer, PruneConfig("lowrank", targets={"rank": 8}), calib_ids)
    rep = m.prune_report
    assert rep["family_allows_factorised"] is False and rep["params"]["ratio"] == 1.0
    assert all(r["rank"] == 8 for r in rep["matrices"])
    q = m.model.layers[0].self_attn.q_proj.weight
    assert torch.linalg.matrix_rank(q.detach(), rtol=1e-4) == 8  # float32 storage: rank up to rounding


def test_pca_slice_refusals(tiny_models, tiny_tokenizer, calib_ids):
    from transformers import AutoModelForCausalLM

    cfg = copy.deepcopy(tiny_models["llama"].config)
    cfg.tie_word_embeddings = True
    tied = AutoModelForCausalLM.from_config(cfg)
    with pytest.raises(DownsizeError, match="untied"):
        prune(tied, tiny_tokenizer, PruneConfig("lowrank", targets={"hidden": 32}), calib_ids)
    with pytest.raises(DownsizeError, match="heads x head_dim"):  # llama.cpp's qwen2 graph
        prune(copy.deepcopy(tiny_models["qwen2"]), tiny_tokenizer, PruneConfig("lowrank", targets={"hidden": 32}), calib_ids)
    with pytest.raises(DownsizeError, match="divisible"):  # LlamaConfig validation
        prune(copy.deepcopy(tiny_models["llama"]), tiny_tokenizer, PruneConfig("lowrank", targets={"hidden": 50}), calib_ids)
