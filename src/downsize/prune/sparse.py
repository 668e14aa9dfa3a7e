"""Unstructured and N:M sparsity: magnitude, Wanda and SparseGPT, layer by layer.

    >>> from downsize.models.refs import load_model
    >>> from downsize.prune import PruneConfig, prune
    >>> model, tok = load_model("zoo:coder-teacher-qwen")
    >>> model = prune(model, tok, PruneConfig(method="sparsegpt", nm="2:4", calib_samples=4, calib_seq_len=32), "zoo:stdlib")
    >>> w = model.model.layers[0].mlp.up_proj.weight                      # (out, in)
    >>> int((w.reshape(w.shape[0], -1, 4) == 0).sum(-1).min())            # 2 zeros in every 4 inputs
    2
    >>> model = prune(model, tok, PruneConfig(method="wanda", sparsity=0.75, calib_samples=4, calib_seq_len=32), "zoo:stdlib")
    >>> round(float((model.model.layers[1].self_attn.q_proj.weight == 0).float().mean()), 2)
    0.75

Every linear inside the decoder layers (q, k, v, o, gate, up, down) is pruned; embeddings and LM
head are not. Calibration activations flow through the model one decoder layer at a time
(``calib.LayerRunner``): statistics for layer i are taken on the outputs of the already pruned
layers 0..i-1, as in both papers, and peak memory is the model plus one layer's activations.

- magnitude: zero the smallest |W| of each matrix (N:M: per row, in each group of M inputs).
- Wanda (Sun et al., 2023): score |W_ij| * ||X_j||_2, pruned per output row; no weight update.
- SparseGPT (Frantar & Alistarh, 2023): H = X^T X (+ damp * mean(diag H) * I); columns are
  processed in blocks; within a block the mask is chosen by w^2 / [H^-1]_jj^2 and each pruned
  weight's error is spread over the not-yet-processed columns with the Cholesky factor of H^-1
  (optimal brain surgeon update).

THE CATCH (printed with every result): zeros are still stored and still multiplied. GGUF holds
dense tensors and llama.cpp runs dense kernels, so a 50 % or 2:4 sparse model has the same file
size and the same speed as the dense one. What does shrink and speed it: depth or width pruning
(fewer, smaller matrices) and quantization; N:M only pays on GPUs with sparse tensor cores via
runtimes that support it (not llama.cpp).
"""

from __future__ import annotations

import math

import torch

from downsize.errors import DownsizeError
from downsize.prune.calib import LayerRunner
from downsize.prune.config import parse_nm
from downsize.prune.registry import register_method

SPARSITY_NOTE = ("unstructured and N:M sparsity do not shrink a GGUF file or speed up llama.cpp/Ollama: the zeros are "
                 "stored and multiplied like any other weight. To get a smaller, faster model use depth or width pruning "
                 "(then distil to recover) and quantization.")


def _nm_mask(score: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Boolean mask (True = prune) of the n lowest scores in every group of m consecutive columns of each row."""
    rows, cols = score.shape
    g = score.reshape(rows, cols // m, m)
    idx = torch.topk(g, n, dim=-1, largest=False).indices
    mask = torch.zeros_like(g, dtype=torch.bool).scatter_(-1, idx, True)
    return mask.reshape(rows, cols)


def _row_mask(score: torch.Tensor, ratio: float) -> torch.Tensor:
    k = int(score.shape[1] * ratio)
    mask = torch.zeros_like(score, dtype=torch.bool)
    if k:
        mask.scatter_(1, torch.topk(score, k, dim=1, largest=False).indices, True)
    return mask


def magnitude_mask(w: torch.Tensor, sparsity: float | None, nm) -> torch.Tensor:
    score = w.abs().float()
    if nm:
        return _nm_mask(score, *nm)
    k = int(score.numel() * sparsity)
    mask = torch.zeros(score.numel(), dtype=torch.bool)
    if k:
        mask[torch.topk(score.flatten(), k, largest=False).indices] = True
    return mask.view_as(score)


def wanda_mask(w: torch.Tensor, x_norm: torch.Tensor, sparsity: float | None, nm) -> torch.Tensor:
    """w: (out, in); x_norm: (in,) L2 norm of each input feature over all calibration tokens."""
    score = w.abs().float() * x_norm.float()[None, :]
    return _nm_mask(score, *nm) if nm else _row_mask(score, sparsity)


@torch.no_grad()
def sparsegpt_prune(w: torch.Tensor, H: torch.Tensor, sparsity: float | None, nm, blocksize: int = 128,
                    damp: float = 0.01) -> torch.Tensor:
    """The pruned and updated weight (out, in), computed in float64 from ``H = X^T X`` (in, in)."""
    W = w.detach().double().clone()
    H = H.double().clone()
    ncols = W.shape[1]
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    H += damp * torch.mean(torch.diag(H)) * torch.eye(ncols, dtype=H.dtype)
    L = torch.linalg.cholesky(H)
    Hinv = torch.cholesky_inverse(L)
    Hinv = torch.linalg.cholesky(Hinv, upper=True)  # rows of the upper factor give the sequential OBS updates
    mask_all = torch.zeros_like(W, dtype=torch.bool)
    for i1 in range(0, ncols, blocksize):
        i2 = min(i1 + blocksize, ncols)
        W1 = W[:, i1:i2].clone()
        Hinv1 = Hinv[i1:i2, i1:i2]
        Err1 = torch.zeros_like(W1)
        if nm is None:
            score = W1.pow(2) / torch.diag(Hinv1)[None, :].pow(2)
            k = int(score.numel() * sparsity)
            mask1 = torch.zeros(score.numel(), dtype=torch.bool)
            if k:
                mask1[torch.topk(score.flatten(), k, largest=False).indices] = True
            mask1 = mask1.view_as(W1)
        else:
            mask1 = torch.zeros_like(W1, dtype=torch.bool)
        n, m = nm if nm else (0, 0)
        for j in range(i2 - i1):
            w_col = W1[:, j]
            d = Hinv1[j, j]
            if nm and j % m == 0:
                score = W1[:, j : j + m].pow(2) / torch.diag(Hinv1)[j : j + m][None, :].pow(2)
                mask1[:, j : j + m].scatter_(1, torch.topk(score, n, dim=1, largest=False).indices, True)
            q = w_col.clone()
            q[mask1[:, j]] = 0
            err = (w_col - q) / d
            W1[:, j:] -= err[:, None] * Hinv1[j, j:][None, :]
            W1[:, j] = q
            Err1[:, j] = err
        W[:, i1:i2] = W1
        W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]
        mask_all[:, i1:i2] = mask1
    W[mask_all] = 0
    return W.to(w.dtype)


def check(model, adapter, cfg) -> None:
    nm = parse_nm(cfg.nm)
    if not nm:
        return
    n, m = nm
    for li, layer in enumerate(adapter.layers(model)):
        for name, lin in adapter.linears(layer).items():
            if lin.in_features % m:
                raise DownsizeError(f"N:M {cfg.nm} needs every input width divisible by {m}; layer {li} {name} has "
                                    f"{lin.in_features} inputs",
                                    hint=f"pick M dividing {math.gcd(*(l.in_features for l in adapter.linears(layer).values()))}, or use --sparsity")
        break  # every layer has the same shapes


def layer_sparsity(model, adapter) -> list[dict]:
    out = []
    for i, layer in enumerate(adapter.layers(model)):
        row = {"layer": i}
        zeros = total = 0
        for name, lin in adapter.linears(layer).items():
            z = int((lin.weight == 0).sum())
            row[name] = round(z / lin.weight.numel(), 4)
            zeros += z
            total += lin.weight.numel()
        row["all"] = round(zeros / total, 4)
        out.append(row)
    return out


def _run(method: str):
    @torch.no_grad()
    def prune_sparse(model, adapter, cfg, ids) -> dict:
        nm = parse_nm(cfg.nm)
        runner = LayerRunner(model, adapter, ids, cfg.batch_size) if method != "magnitude" else None
        layers = adapter.layers(model)
        from downsize.console import progress

        for i, layer in progress(enumerate(layers), total=len(layers), desc=f"{method}: pruning layers", unit="layer"):
            lins = adapter.linears(layer)
            if method != "magnitude":
                stats = runner.input_stats(i, lins, (lambda x: x.pow(2).sum(0)) if method == "wanda" else (lambda x: x.T @ x))
            for name, lin in lins.items():
                w = lin.weight.data
                if method == "magnitude":
                    w[magnitude_mask(w, cfg.sparsity, nm)] = 0
                elif method == "wanda":
                    w[wanda_mask(w, stats[name].sqrt(), cfg.sparsity, nm)] = 0
                else:
                    w.copy_(sparsegpt_prune(w, stats[name], cfg.sparsity, nm, cfg.blocksize, cfg.damp))
            if runner is not None and i + 1 < len(layers):
                runner.advance(i)
        per_layer = layer_sparsity(model, adapter)
        zeros = sum(r["all"] for r in per_layer) / len(per_layer)
        return {"pattern": cfg.nm or f"{cfg.sparsity:.0%} unstructured", "per_layer": per_layer,
                "mean_linear_sparsity": round(zeros, 4), "note": SPARSITY_NOTE}

    return prune_sparse


for _m in ("magnitude", "wanda", "sparsegpt"):
    register_method(_m, check=check, structured=False, needs_calib=_m != "magnitude")(_run(_m))
