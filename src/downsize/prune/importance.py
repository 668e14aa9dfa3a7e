"""Importance scores from calibration activations: MLP neurons, attention heads, hidden channels, whole layers.

    >>> from downsize.models.adapters import adapter_for
    >>> from downsize.models.refs import load_model
    >>> from downsize.prune.calib import calibration_ids
    >>> model, tok = load_model("zoo:coder-teacher-qwen")
    >>> adapter = adapter_for(model)
    >>> ids = calibration_ids(tok, "zoo:stdlib", n_samples=4, seq_len=32)     # LongTensor (4, 32)
    >>> st = width_stats(model, adapter, ids)          # one pass of the calibration set, hooks only
    >>> st.neurons[0].shape, st.heads[0].shape, st.hidden.shape    # (ffn,), (heads,), (hidden,)
    (torch.Size([768]), torch.Size([4]), torch.Size([256]))
    >>> block_influence(model, adapter, ids).shape     # (layers,): 1 - mean cos(layer input, layer output)
    torch.Size([4])
    >>> bool((ppl_increase(model, adapter, ids) > 0).all())   # (layers,): perplexity without layer i - base
    True

Width scores follow Minitron (Muralidharan et al., 2024, "Compact Language Models via Pruning and
Knowledge Distillation"): activation magnitudes aggregated over the batch and sequence. Here the
aggregate is the root mean square over all calibration tokens, so a channel that is exactly zero
on every token scores exactly 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from downsize.prune.calib import batches


@dataclass
class WidthStats:
    neurons: list[torch.Tensor]  # per layer (ffn,): RMS of the down_proj input (act(gate) * up) per neuron
    heads: list[torch.Tensor]  # per layer (heads,): RMS over tokens of each head's output vector norm (o_proj input)
    hidden: torch.Tensor  # (hidden,): sum over every hidden-size norm of the mean |norm output| per channel
    norm_ms: dict[str, torch.Tensor]  # norm name -> (hidden,) mean square of its input per channel
    tokens: int


@torch.no_grad()
def width_stats(model, adapter, ids: torch.Tensor, batch_size: int = 8) -> WidthStats:
    cfg = model.config
    layers = adapter.layers(model)
    n_heads, hd = adapter.heads(cfg), adapter.head_dim(cfg)
    dev = next(model.parameters()).device
    neurons = [torch.zeros(adapter.ffn(cfg), dtype=torch.float64) for _ in layers]
    heads = [torch.zeros(n_heads, dtype=torch.float64) for _ in layers]
    hidden = torch.zeros(adapter.hidden(cfg), dtype=torch.float64)
    norms = {f"layers.{i}.{j}": n for i, layer in enumerate(layers) for j, n in enumerate(adapter.layer_norms(layer))}
    norms["final"] = adapter.final_norm(model)
    norm_ms = {k: torch.zeros(adapter.hidden(cfg), dtype=torch.float64) for k in norms}
    handles = []

    def flat(x):  # (B, T, C) -> (B*T, C) in float64
        return x.detach().reshape(-1, x.shape[-1]).double().cpu()

    for i, layer in enumerate(layers):
        q, k, v, o = adapter.attn_projs(layer)
        gate, up, down = adapter.mlp_projs(layer)
        def neuron_hook(m, a, i=i):  # a pre-hook must return None, or it replaces the input
            neurons[i].add_(flat(a[0]).pow(2).sum(0))

        handles.append(down.register_forward_pre_hook(neuron_hook))

        def head_hook(m, a, i=i):
            x = flat(a[0]).view(-1, n_heads, hd)  # (N, heads, head_dim)
            heads[i].add_(x.pow(2).sum(-1).sum(0))

        handles.append(o.register_forward_pre_hook(head_hook))
    for name, norm in norms.items():
        def norm_hook(m, a, out, name=name):
            hidden.add_(flat(out).abs().sum(0))
            norm_ms[name].add_(flat(a[0]).pow(2).sum(0))

        handles.append(norm.register_forward_hook(norm_hook))
    n_tok = 0
    try:
        for b in batches(ids, batch_size, desc="calibration: width importance"):
            model(input_ids=b.to(dev), use_cache=False)
            n_tok += b.numel()
    finally:
        for h in handles:
            h.remove()
    return WidthStats(
        neurons=[(x / n_tok).sqrt().float() for x in neurons],
        heads=[(x / n_tok).sqrt().float() for x in heads],
        hidden=(hidden / n_tok).float(),
        norm_ms={k: (v / n_tok).float() for k, v in norm_ms.items()},
        tokens=n_tok,
    )


@torch.no_grad()
def block_influence(model, adapter, ids: torch.Tensor, batch_size: int = 8) -> torch.Tensor:
    """(layers,) block influence, 1 - cos(h_in, h_out) averaged over tokens (Men et al., 2024, ShortGPT)."""
    layers = adapter.layers(model)
    dev = next(model.parameters()).device
    total = torch.zeros(len(layers), dtype=torch.float64)
    n = 0
    handles = []
    for i, layer in enumerate(layers):
        def hook(m, args, kwargs, out, i=i):
            h_in = args[0] if args else kwargs["hidden_states"]
            h_out = out[0] if isinstance(out, tuple) else out
            cos = F.cosine_similarity(h_in.double(), h_out.double(), dim=-1)  # (B, T)
            total[i] += (1 - cos).sum().cpu()

        handles.append(layer.register_forward_hook(hook, with_kwargs=True))
    try:
        for b in batches(ids, batch_size, desc="calibration: block influence"):
            model(input_ids=b.to(dev), use_cache=False)
            n += b.numel()
    finally:
        for h in handles:
            h.remove()
    return (total / n).float()


@torch.no_grad()
def mean_nll(model, ids: torch.Tensor, batch_size: int = 8) -> float:
    dev = next(model.parameters()).device
    tot, n = 0.0, 0
    for b in batches(ids, batch_size):
        b = b.to(dev)
        logits = model(input_ids=b, use_cache=False).logits[:, :-1].float()  # (B, T-1, V)
        nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), b[:, 1:].reshape(-1), reduction="sum")
        tot += nll.item()
        n += b[:, 1:].numel()
    return tot / n


@torch.no_grad()
def ppl_increase(model, adapter, ids: torch.Tensor, batch_size: int = 8) -> torch.Tensor:
    """(layers,) calibration perplexity with layer i skipped minus the full model's (Kim et al., 2024, Shortened LLaMA)."""
    layers = adapter.layers(model)
    base = math.exp(mean_nll(model, ids, batch_size))
    out = torch.zeros(len(layers))
    from downsize.console import progress

    for i, layer in progress(enumerate(layers), total=len(layers), desc="calibration: perplexity without each layer",
                             unit="layer"):
        def skip(m, args, kwargs, result):
            h = args[0] if args else kwargs["hidden_states"]
            return (h,) + tuple(result[1:]) if isinstance(result, tuple) else h

        h = layer.register_forward_hook(skip, with_kwargs=True)
        try:
            out[i] = math.exp(min(mean_nll(model, ids, batch_size), 50.0)) - base
        finally:
            h.remove()
    return out
