"""Low-rank: activation-aware SVD of the linear layers, and PCA slicing of the hidden size.

    >>> from downsize.models.refs import load_model
    >>> from downsize.prune import PruneConfig, prune
    >>> model, tok = load_model("zoo:coder-teacher-qwen")
    >>> cfg = PruneConfig(method="lowrank", targets={"energy": 0.9}, calib_samples=4, calib_seq_len=32)
    >>> model = prune(model, tok, cfg, "zoo:stdlib")          # analysis: weights written back dense
    >>> sorted(model.prune_report)[:6]
    ['architecture', 'calibration', 'config', 'family_allows_factorised', 'matrices', 'method']
    >>> model, tok = load_model("zoo:coder-teacher-qwen")
    >>> cfg = PruneConfig(method="lowrank", targets={"hidden": 128}, calib_samples=4, calib_seq_len=32)
    >>> prune(model, tok, cfg, "zoo:stdlib").config.hidden_size    # PCA hidden slicing: refused where llama.cpp needs it
    Traceback (most recent call last):
    ...
    downsize.errors.DownsizeError: Qwen2ForCausalLM in llama.cpp needs hidden = heads x head_dim, which PCA
     slicing of the hidden size breaks
      hint: use method=width with hidden= and heads= together

``rank=R`` / ``energy=E``: each linear W (out, in) is replaced by its best rank-r approximation
in the metric of its calibration inputs X (SVD-LLM style whitening: H = X^T X = L L^T, SVD of
W L, truncate, map back with L^-1), r = R or the smallest rank keeping a fraction E of the
whitened spectrum's energy. The report says, per matrix, whether the factorised form r (out + in)
would be smaller than out * in. Llama, Mistral, Qwen2 and Qwen3 have no factorised linear in
transformers or llama.cpp, so the family never allows keeping the factors: the weights are
written back dense (same size, same speed) and this mode is for measuring how compressible each
matrix is.

``hidden=D`` uses the same idea where it does pay: PCA of the residual stream initialises a
narrower model (SliceGPT, Ashkboos et al., 2024, with one rotation shared by all layers so no
extra matrices are needed). RMSNorm weights are folded into the linears that read them, every
matrix touching the residual stream is rotated by the principal directions Q (exactly
output-preserving: RMSNorm commutes with rotations), then only the first D directions are kept.
The result is a plain model with hidden size D. Needs untied embeddings (the final norm is folded
into the LM head).
"""

from __future__ import annotations

import torch
from torch import nn

from downsize.errors import DownsizeError
from downsize.prune.calib import LayerRunner, batches
from downsize.prune.registry import register_method


def check(model, adapter, cfg) -> None:
    t = cfg.targets
    if len(t) != 1:
        raise DownsizeError(f"low-rank takes one target, got {dict(t)}", hint="rank=R, energy=E (0..1) or hidden=D")
    if "energy" in t and not 0 < t["energy"] <= 1:
        raise DownsizeError(f"energy={t['energy']} must be in (0, 1]", hint="e.g. energy=0.9")
    if "hidden" in t:
        d = adapter.hidden(model.config)
        if not 0 < t["hidden"] <= d or t["hidden"] != int(t["hidden"]):
            raise DownsizeError(f"hidden={t['hidden']} must be a whole number in 1..{d}")
        h = adapter.heads(model.config)
        if adapter.hidden_multiple_of_heads and int(t["hidden"]) % h:
            raise DownsizeError(f"hidden={int(t['hidden'])} is not divisible by the {h} attention heads, which "
                                f"{model.config.architectures[0]} requires", hint=f"ask for a multiple of {h}")
        if adapter.attn_width_is_hidden:
            raise DownsizeError(f"{model.config.architectures[0]} in llama.cpp needs hidden = heads x head_dim, which "
                                "PCA slicing of the hidden size breaks", hint="use method=width with hidden= and heads= together")
        if adapter.tied(model):
            raise DownsizeError("PCA slicing of the hidden size needs untied embeddings; this model ties its LM head "
                                "to the embedding", hint="use method=width with hidden=D (channel pruning) instead")


@torch.no_grad()
def whitened_lowrank(w: torch.Tensor, H: torch.Tensor, rank: int | None, energy: float | None, damp: float):
    """(W_r (out, in), r, energy kept): best rank-r approximation of w under the input metric H = X^T X (in, in)."""
    W = w.double()
    H = H.double() + damp * torch.diag(H).double().mean().clamp_min(1e-12) * torch.eye(H.shape[0], dtype=torch.float64)
    L = torch.linalg.cholesky(H)  # H = L L^T, so ||(W - W') X^T||_F = ||(W - W') L||_F
    U, S, Vh = torch.linalg.svd(W @ L, full_matrices=False)
    cum = torch.cumsum(S.pow(2), 0) / S.pow(2).sum()
    r = int(rank) if rank is not None else int((cum < energy - 1e-12).sum()) + 1
    r = max(1, min(r, len(S)))
    # W' = U_r S_r (Vh_r L^-1): solve instead of inverting L
    right = torch.linalg.solve_triangular(L.T, Vh[:r].T, upper=True).T  # (r, in): Vh_r L^-1
    return (U[:, :r] * S[:r]) @ right, r, float(cum[r - 1])


def _svd_layers(model, adapter, cfg, ids) -> dict:
    runner = LayerRunner(model, adapter, ids, cfg.batch_size)
    layers = adapter.layers(model)
    rows = []
    from downsize.console import progress

    for i, layer in progress(enumerate(layers), total=len(layers), desc="low-rank: factorising layers", unit="layer"):
        lins = adapter.linears(layer)
        hs = runner.input_stats(i, lins, lambda x: x.T @ x)
        for name, lin in lins.items():
            out_f, in_f = lin.weight.shape
            w_r, r, kept = whitened_lowrank(lin.weight.data, hs[name], cfg.targets.get("rank"), cfg.targets.get("energy"),
                                            max(cfg.damp, 1e-6))
            lin.weight.data.copy_(w_r.to(lin.weight.dtype))
            rows.append({"layer": i, "linear": name, "shape": [out_f, in_f], "rank": r, "energy": round(kept, 4),
                         "factorised_params": r * (out_f + in_f), "dense_params": out_f * in_f,
                         "factorised_smaller": r * (out_f + in_f) < out_f * in_f})
        if i + 1 < len(layers):
            runner.advance(i)
    could = sum(r["dense_params"] - r["factorised_params"] for r in rows if r["factorised_smaller"])
    return {"matrices": rows, "family_allows_factorised": False, "params_saved_if_factorised": could,
            "note": "the architecture has no factorised linear in transformers or llama.cpp, so the low-rank weights are "
                    "stored dense: the file size and speed are unchanged. Use hidden=D (PCA slicing) or width pruning "
                    "to get a smaller model."}


@torch.no_grad()
def fold_norms(model, adapter) -> None:
    """Multiply each RMSNorm weight into the linears that read its output; set the norm weights to 1."""
    for layer in adapter.layers(model):
        n_in, n_post = adapter.layer_norms(layer)
        q, k, v, _ = adapter.attn_projs(layer)
        gate, up, _ = adapter.mlp_projs(layer)
        for norm, readers in ((n_in, (q, k, v)), (n_post, (gate, up))):
            for lin in readers:
                lin.weight.mul_(norm.weight.data.to(lin.weight.dtype)[None, :])
            norm.weight.data.fill_(1.0)
    fin = adapter.final_norm(model)
    adapter.lm_head(model).weight.mul_(fin.weight.data[None, :])
    fin.weight.data.fill_(1.0)


@torch.no_grad()
def residual_pca(model, adapter, ids, batch_size: int) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """(Q (d, d) principal directions, eigenvalues, per-norm E[x x^T]): inputs of every norm, each site weighted equally."""
    norms = {f"layers.{i}.{j}": n for i, layer in enumerate(adapter.layers(model)) for j, n in enumerate(adapter.layer_norms(layer))}
    norms["final"] = adapter.final_norm(model)
    d = adapter.hidden(model.config)
    cov = {k: torch.zeros(d, d, dtype=torch.float64) for k in norms}
    handles = []
    for name, norm in norms.items():
        def hook(m, a, name=name):
            x = a[0].detach().reshape(-1, d).double()
            cov[name] += x.T @ x

        handles.append(norm.register_forward_pre_hook(hook))
    dev = next(model.parameters()).device
    try:
        for b in batches(ids, batch_size, desc="calibration: residual PCA"):
            model(input_ids=b.to(dev), use_cache=False)
    finally:
        for h in handles:
            h.remove()
    total = sum(c / torch.trace(c).clamp_min(1e-30) for c in cov.values())
    evals, evecs = torch.linalg.eigh(total)
    order = torch.argsort(evals, descending=True)
    return evecs[:, order], evals[order], cov


@torch.no_grad()
def pca_slice(model, adapter, ids, hidden: int, batch_size: int = 8) -> dict:
    d = adapter.hidden(model.config)
    fold_norms(model, adapter)
    Q, evals, cov = residual_pca(model, adapter, ids, batch_size)
    Qs = Q[:, :hidden]  # (d, d')
    dt = adapter.embed(model).weight.dtype

    def rot_in(lin):  # reads the residual stream: W' = W Q_s
        lin.weight = nn.Parameter((lin.weight.data.double() @ Qs).to(dt).contiguous())
        lin.in_features = hidden

    def rot_out(lin):  # writes the residual stream: W' = Q_s^T W (bias too)
        lin.weight = nn.Parameter((Qs.T @ lin.weight.data.double()).to(dt).contiguous())
        if lin.bias is not None:
            lin.bias = nn.Parameter((lin.bias.data.double() @ Qs).to(dt))
        lin.out_features = hidden

    emb = adapter.embed(model)
    emb.weight = nn.Parameter((emb.weight.data.double() @ Qs).to(dt).contiguous())
    emb.embedding_dim = hidden
    rot_in(adapter.lm_head(model))
    names = []
    for i, layer in enumerate(adapter.layers(model)):
        q, k, v, o = adapter.attn_projs(layer)
        gate, up, down = adapter.mlp_projs(layer)
        for lin in (q, k, v, gate, up):
            rot_in(lin)
        for lin in (o, down):
            rot_out(lin)
        names += [(f"layers.{i}.{j}", n) for j, n in enumerate(adapter.layer_norms(layer))]
    names.append(("final", adapter.final_norm(model)))
    scales = {}
    for name, norm in names:
        c = cov[name]
        kept = torch.trace(Qs.T @ c @ Qs) / hidden  # mean square of the kept coordinates
        full = torch.trace(c) / d
        s = float((kept / full.clamp_min(1e-30)).sqrt()) if full > 0 else 1.0
        norm.weight = nn.Parameter(torch.full((hidden,), s, dtype=norm.weight.dtype))
        scales[name] = round(s, 5)
    adapter.pin_head_dim(model)
    adapter.set_hidden(model, hidden)
    return {"hidden": {"before": d, "after": hidden},
            "variance_kept": round(float(evals[:hidden].sum() / evals.sum()), 4), "norm_scales": scales}


def prune_lowrank(model, adapter, cfg, ids) -> dict:
    if "hidden" in cfg.targets:
        return pca_slice(model, adapter, ids, int(cfg.targets["hidden"]), cfg.batch_size)
    return _svd_layers(model, adapter, cfg, ids)


register_method("lowrank", check=check, targets=("rank", "energy", "hidden"), structured=True)(prune_lowrank)
