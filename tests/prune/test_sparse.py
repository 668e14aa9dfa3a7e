"""Unstructured and N:M pruning against naive references; the layer-by-layer runner; bad input."""

from __future__ import annotations

import copy

import pytest
import torch

from downsize.errors import DownsizeError
from downsize.models.adapters import adapter_for
from downsize.prune import PruneConfig, prune
from downsize.prune.calib import LayerRunner
from downsize.prune.sparse import SPARSITY_NOTE, magnitude_mask, sparsegpt_prune, wanda_mask


def naive_sparsegpt_nm(W, H, n, m, damp):
    """Textbook sequential OBS: for column j, invert H over the columns not yet processed (F = j..end),
    choose N of M at each group start by w^2 / [H_F^-1]_00, and spread the error with row 0 of H_F^-1."""
    W = W.double().clone()
    H = H.double().clone() + damp * torch.diag(H).double().mean() * torch.eye(H.shape[0], dtype=torch.float64)
    cols = W.shape[1]
    mask = torch.zeros_like(W, dtype=torch.bool)
    for j in range(cols):
        Finv = torch.linalg.inv(H[j:, j:])
        if j % m == 0:
            d = torch.tensor([torch.linalg.inv(H[k:, k:])[0, 0] for k in range(j, j + m)], dtype=torch.float64)
            score = W[:, j : j + m] ** 2 / d[None, :]
            for r in range(W.shape[0]):
                mask[r, j + torch.argsort(score[r])[:n]] = True
        q = torch.where(mask[:, j], torch.zeros_like(W[:, j]), W[:, j])
        err = (W[:, j] - q) / Finv[0, 0]
        W[:, j:] -= err[:, None] * Finv[0][None, :]
        W[:, j] = q
    return W


def test_sparsegpt_matches_textbook_obs():
    torch.manual_seed(0)
    W = torch.randn(6, 16, dtype=torch.float64)
    X = torch.randn(200, 16, dtype=torch.float64) @ torch.randn(16, 16, dtype=torch.float64)  # correlated inputs
    H = X.T @ X
    got = sparsegpt_prune(W, H, None, (2, 4), blocksize=8, damp=0.01)  # blocks smaller than the width: lazy updates
    torch.testing.assert_close(got, naive_sparsegpt_nm(W, H, 2, 4, 0.01), rtol=1e-8, atol=1e-8)


def test_sparsegpt_identity_hessian_is_magnitude():
    torch.manual_seed(0)
    W = torch.randn(8, 32)
    got = sparsegpt_prune(W, torch.eye(32), 0.5, None, blocksize=32, damp=0.0)
    want = W.clone()
    want[magnitude_mask(W, 0.5, None)] = 0
    torch.testing.assert_close(got, want)


def test_reconstruction_error_ordering():
    """Inputs with uneven feature scales (as in LLMs) and some correlation: SparseGPT's output error
    ||(W - W') X^T|| is below Wanda's, which is below magnitude's."""
    torch.manual_seed(1)
    W = torch.randn(32, 64)
    X = (torch.randn(512, 64) * torch.exp(torch.randn(64))) @ (torch.eye(64) + 0.1 * torch.randn(64, 64))
    errs = {}
    for name in ("magnitude", "wanda", "sparsegpt"):
        if name == "magnitude":
            Wp = W.clone(); Wp[magnitude_mask(W, 0.5, None)] = 0  # noqa: E702
        elif name == "wanda":
            Wp = W.clone(); Wp[wanda_mask(W, X.pow(2).sum(0).sqrt(), 0.5, None)] = 0  # noqa: E702
        else:
            Wp = sparsegpt_prune(W, X.double().T @ X.double(), 0.5, None)
        assert (Wp == 0).float().mean().item() == pytest.approx(0.5, abs=0.01)
        errs[name] = ((W - Wp) @ X.T).norm().item()
    assert errs["sparsegpt"] < errs["wanda"] < errs["magnitude"], errs


def test_wanda_mask_matches_naive_rows():
    torch.manual_seed(2)
    W, xn = torch.randn(5, 12), torch.rand(12) + 0.1
    mask = wanda_mask(W, xn, 0.5, None)
    for r in range(5):
        score = [abs(float(W[r, j])) * float(xn[j]) for j in range(12)]
        assert set(torch.nonzero(mask[r]).flatten().tolist()) == set(sorted(range(12), key=lambda j: score[j])[:6])
    nm = wanda_mask(W, xn, None, (2, 4))
    assert torch.all(nm.view(5, 3, 4).sum(-1) == 2)


def test_layer_runner_reproduces_hidden_states(family_model, calib_ids):
    fam, model = family_model
    ad = adapter_for(model)
    with torch.no_grad():
        hs = model(input_ids=calib_ids, output_hidden_states=True, use_cache=False).hidden_states
    runner = LayerRunner(model, ad, calib_ids, batch_size=3)
    torch.testing.assert_close(torch.cat(runner.hidden), hs[0])
    runner.advance(0)
    torch.testing.assert_close(torch.cat(runner.hidden), hs[1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt"])
@pytest.mark.parametrize("pattern", [{"sparsity": 0.5}, {"nm": "2:4"}, {"nm": "4:8"}])
def test_methods_reach_their_pattern(tiny_models, calib_ids, tiny_tokenizer, method, pattern):
    model = copy.deepcopy(tiny_models["llama"])
    m = prune(model, tiny_tokenizer, PruneConfig(method, **pattern), calib_ids)
    rep = m.prune_report
    assert rep["note"] == SPARSITY_NOTE and "do not shrink a GGUF" in rep["note"]
    assert len(rep["per_layer"]) == 2 and rep["params"]["ratio"] == 1.0
    ad = adapter_for(m)
    for layer, row in zip(ad.layers(m), rep["per_layer"]):
        for name, lin in ad.linears(layer).items():
            w = lin.weight
            assert row[name] == pytest.approx(0.5, abs=0.01)
            if "nm" in pattern:
                n, mm = map(int, pattern["nm"].split(":"))
                assert torch.all((w.view(w.shape[0], -1, mm) == 0).sum(-1) >= n)
    assert m.lm_head.weight.ne(0).all()  # embeddings and LM head untouched


def test_bad_input_fails_before_work(tiny_models, tiny_tokenizer, calib_ids, tmp_path):
    model = copy.deepcopy(tiny_models["llama"])
    w0 = adapter_for(model).layers(model)[0].mlp.up_proj.weight.clone()
    with pytest.raises(DownsizeError, match="divisible by 5"):
        prune(model, tiny_tokenizer, PruneConfig("wanda", nm="2:5"), calib_ids)
    with pytest.raises(DownsizeError, match="0 tokens"):
        prune(model, tiny_tokenizer, PruneConfig("wanda", sparsity=0.5), ["", "   "])
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(DownsizeError, match="empty"):
        prune(model, tiny_tokenizer, PruneConfig("sparsegpt", sparsity=0.5), str(empty))
    for kw, msg in (({"sparsity": 1.5}, "in \\(0, 1\\)"), ({"nm": "4:2"}, "malformed"), ({}, "exactly one"),
                    ({"sparsity": 0.5, "nm": "2:4"}, "exactly one")):
        with pytest.raises(DownsizeError, match=msg):
            PruneConfig("sparsegpt", **kw)
    assert torch.equal(adapter_for(model).layers(model)[0].mlp.up_proj.weight, w0)
