"""Width pruning (Minitron): drop the least important MLP neurons, attention heads and hidden channels.

    >>> from downsize.models.refs import load_model
    >>> from downsize.prune import PruneConfig, prune
    >>> model, tok = load_model("zoo:coder-teacher-qwen")        # ffn 768, 4 heads (2 kv), hidden 256
    >>> cfg = PruneConfig(method="width", targets={"ffn": 512, "heads": 2, "hidden": 128}, calib_samples=4,
    ...                   calib_seq_len=64)
    >>> model = prune(model, tok, cfg, "zoo:stdlib")
    >>> c = model.config
    >>> c.intermediate_size, c.num_attention_heads, c.num_key_value_heads, c.hidden_size
    (512, 2, 2, 128)
    >>> cfg = PruneConfig(method="width", targets={"params": 0.5})   # ffn and hidden scaled together

All scores come from one pass over the calibration data before any weight changes
(``importance.width_stats``); every layer gets the same new sizes, so the result is a plain model
of the same class:

- MLP neurons, GLU-aware: neuron j is gate row j, up row j and down column j, removed together.
- Attention heads, GQA-aware: query heads stay with their key/value head. ``heads=H`` keeps
  ``kv_heads`` groups (default: the most the target allows, at most the current number) of
  ``H / kv_heads`` query heads each; groups rank by the summed score of their heads, heads within a
  group by their own score. ``head_dim`` is written into the config, since it no longer equals
  ``hidden // heads``.
- Sizes resolved from ``params=`` are export-aware: ffn and hidden are multiples of ``quant_align``
  (256, llama.cpp's K-quant super-block along a row) wherever the source size is one, else of
  ``round_to``; for families whose attention width is the hidden size (Qwen2) only head counts with
  ``heads x head_dim`` a multiple of 256 are taken. Any row width of the result that K-quants cannot
  pack (also from explicit targets) is logged and listed in the report under ``alignment``.
- Hidden size: channel i of the residual stream is removed from the embedding, every norm, every
  projection that reads or writes the stream, and the LM head. RMSNorm divides by the RMS over the
  channels it sees, so with ``norm_correction`` each norm weight is scaled by
  sqrt(mean-square of kept channels / mean-square of all) measured on the calibration data (exact
  when the removed channels are zero).
"""

from __future__ import annotations

import logging
import math

import torch
from torch import nn

from downsize.errors import DownsizeError
from downsize.models.adapters.base import slice_linear
from downsize.prune.importance import width_stats
from downsize.prune.registry import register_method
from downsize.prune.sizes import param_count

log = logging.getLogger(__name__)

def _round(x: float, to: int) -> int:
    return max(to, int(round(x / to)) * to)


def _kv_for(heads: int, kv: int, group: int, want_kv: int | None) -> int | None:
    """The number of KV groups for ``heads`` query heads: divides heads, <= kv, groups no larger than before."""
    if want_kv is not None:
        ok = want_kv <= kv and heads % want_kv == 0 and heads // want_kv <= group
        return want_kv if ok else None
    return next((d for d in range(min(kv, heads), 0, -1) if heads % d == 0 and heads // d <= group), None)


def _align_unit(cur: int, cfg) -> int:
    """The step a budget-resolved size moves in: the K-quant row block where the source has one to spare."""
    a = cfg.quant_align
    return math.lcm(a, cfg.round_to) if a > 1 and cur % a == 0 and cur > a else cfg.round_to


def alignment(sizes: dict[str, int], head_dim: int, align: int) -> dict:
    """What llama.cpp's K-quants make of the row widths of a model of ``sizes``: one note per width that is
    not a multiple of ``align`` (llama.cpp quantizes those tensors with its fallback type instead)."""
    rows = {"ffn": (sizes["ffn"], "ffn_down"),
            "hidden": (sizes["hidden"], "token_embd, attn_q/k/v, ffn_gate/up, output"),
            "heads x head_dim": (sizes["heads"] * head_dim, "attn_output")}
    notes = [f"{name}={n} is not a multiple of {align}: llama.cpp's K-quants fall back to Q5_0/Q5_1/Q8_0 for {tensors}"
             for name, (n, tensors) in rows.items() if align > 1 and n % align]
    return {"quant_align": align, "rows": {k: n for k, (n, _) in rows.items()}, "notes": notes}


def resolve_sizes(model, adapter, cfg) -> dict[str, int]:
    """Absolute new sizes {ffn, heads, kv_heads, hidden}; raises DownsizeError if a target cannot be met."""
    c = model.config
    cur = {"ffn": adapter.ffn(c), "heads": adapter.heads(c), "kv_heads": adapter.kv_heads(c), "hidden": adapter.hidden(c)}
    t = dict(cfg.targets)
    sizes = dict(cur)
    for k in ("ffn", "heads", "kv_heads", "hidden"):
        if k in t:
            v = int(t[k])
            if v != t[k]:
                raise DownsizeError(f"{k}={t[k]} must be a whole number")
            if v > cur[k]:
                raise DownsizeError(f"{k}={v} is larger than the model's {cur[k]}: pruning only removes",
                                    hint=f"ask for {k} <= {cur[k]}")
            sizes[k] = v
    group = cur["heads"] // cur["kv_heads"]
    kv = _kv_for(sizes["heads"], cur["kv_heads"], group, int(t["kv_heads"]) if "kv_heads" in t else None)
    if kv is None:
        raise DownsizeError(
            f"heads={sizes['heads']} cannot be arranged in grouped-query attention with {cur['kv_heads']} KV heads of "
            f"{group} query heads each" + (f" and kv_heads={int(t['kv_heads'])}" if "kv_heads" in t else ""),
            hint=f"choose heads as k * g with k <= {cur['kv_heads']} KV heads and g <= {group}, "
                 f"e.g. heads={cur['kv_heads'] * max(1, group - 1)}")
    sizes["kv_heads"] = kv
    if "params" in t:
        full = param_count(c)
        goal = t["params"] * full
        free = [k for k in ("ffn", "hidden") if k not in t]
        if not free:
            raise DownsizeError("params= needs ffn or hidden left free to resolve", hint="drop ffn= or hidden=, or drop params=")

        tie = adapter.attn_width_is_hidden and "hidden" in free and "heads" not in t
        hd = adapter.head_dim(c)
        valid_heads = [h for h in range(1, cur["heads"] + 1)
                       if _kv_for(h, cur["kv_heads"], group, int(t["kv_heads"]) if "kv_heads" in t else None)]
        if tie and _align_unit(cur["hidden"], cfg) > cfg.round_to:  # attention width = hidden: K-quant rows too
            aligned = [h for h in valid_heads if h * hd % cfg.quant_align == 0]
            valid_heads = aligned if len([h for h in aligned if h < cur["heads"]]) else valid_heads

        def at(r: float) -> dict[str, int]:
            s = dict(sizes)
            for k in free:
                unit = _align_unit(cur[k], cfg)
                if k == "hidden" and adapter.hidden_multiple_of_heads:
                    unit = math.lcm(unit, s["heads"])
                s[k] = min(cur[k], _round(cur[k] * r, unit))
            if tie:  # hidden moves in steps of head_dim, together with the head count
                h = max([v for v in valid_heads if v <= max(1, round(cur["heads"] * r))] or valid_heads[:1])
                s["heads"], s["hidden"] = h, h * hd
                s["kv_heads"] = _kv_for(h, cur["kv_heads"], group, int(t["kv_heads"]) if "kv_heads" in t else None)
            return s

        def count(s):
            return param_count(c, **_config_fields(adapter, c, s))

        low = count(at(0.0))
        if low > goal:
            raise DownsizeError(
                f"params={t['params']} asks for {goal:,.0f} parameters, but the smallest width "
                f"({', '.join(f'{k}={at(0.0)[k]}' for k in free)}) still has {low:,} ({low / full:.0%}); the embeddings "
                "and LM head alone may be most of it", hint=f"ask for params >= {low / full:.2f}, or also prune depth")
        lo, hi = 0.0, 1.0
        for _ in range(30):
            mid = (lo + hi) / 2
            if count(at(mid)) <= goal:
                lo = mid
            else:
                hi = mid
        sizes = at(lo)
    if adapter.attn_width_is_hidden and sizes["hidden"] != sizes["heads"] * adapter.head_dim(c):
        hd = adapter.head_dim(c)
        raise DownsizeError(
            f"{adapter_name(c)} in llama.cpp needs hidden = heads x head_dim, but the target gives hidden={sizes['hidden']}, "
            f"heads={sizes['heads']} (head_dim {hd})",
            hint="pairs that work: " + ", ".join(f"heads={h} hidden={h * hd}" for h in range(1, cur["heads"] + 1)
                                                 if _kv_for(h, cur["kv_heads"], group, None))
                 + "; or use params=F (resolved consistently)")
    if adapter.hidden_multiple_of_heads and sizes["hidden"] % sizes["heads"]:
        h = sizes["heads"]
        raise DownsizeError(f"{adapter_name(c)} needs hidden_size divisible by the head count (transformers refuses to "
                            f"save or load it otherwise); hidden={sizes['hidden']} with heads={h} is not",
                            hint=f"ask for hidden={sizes['hidden'] // h * h} or {(sizes['hidden'] // h + 1) * h}")
    for k in ("ffn", "hidden"):
        if sizes[k] < 1:
            raise DownsizeError(f"{k}={sizes[k]} leaves nothing", hint=f"ask for {k} >= 1")
    return sizes


def adapter_name(c) -> str:
    return (getattr(c, "architectures", None) or ["this family"])[0]


def _config_fields(adapter, c, s) -> dict:
    return {adapter.FFN: s["ffn"], adapter.HEADS: s["heads"], adapter.KV_HEADS: s["kv_heads"], adapter.HIDDEN: s["hidden"],
            adapter.HEAD_DIM: adapter.head_dim(c)}


def check(model, adapter, cfg) -> None:
    resolve_sizes(model, adapter, cfg)


def _top(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k largest scores, in ascending index order (ties: lower index wins)."""
    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
    return torch.tensor(sorted(order[:k]), dtype=torch.long)


def head_selection(scores: torch.Tensor, n_heads: int, n_kv: int, heads: int, kv: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(kept query heads grouped by kept KV head, kept KV heads) for one layer."""
    group = n_heads // n_kv
    per = heads // kv
    g_scores = scores.view(n_kv, group).sum(-1)
    kv_keep = _top(g_scores, kv)
    q_keep = [int(g) * group + int(j) for g in kv_keep for j in _top(scores.view(n_kv, group)[g], per)]
    return torch.tensor(q_keep, dtype=torch.long), kv_keep


def _rows_of(heads: torch.Tensor, hd: int) -> torch.Tensor:
    return (heads[:, None] * hd + torch.arange(hd)[None, :]).reshape(-1)


@torch.no_grad()
def apply_width(model, adapter, st, sizes: dict[str, int], norm_correction: bool = True) -> dict:
    c = model.config
    n_heads, n_kv, hd, hidden = adapter.heads(c), adapter.kv_heads(c), adapter.head_dim(c), adapter.hidden(c)
    adapter.pin_head_dim(model)
    kept_heads = []
    for i, layer in enumerate(adapter.layers(model)):
        gate, up, down = adapter.mlp_projs(layer)
        if sizes["ffn"] < gate.out_features:
            keep = _top(st.neurons[i], sizes["ffn"])
            slice_linear(gate, out_idx=keep)
            slice_linear(up, out_idx=keep)
            slice_linear(down, in_idx=keep)
        if (sizes["heads"], sizes["kv_heads"]) != (n_heads, n_kv):
            q_keep, kv_keep = head_selection(st.heads[i], n_heads, n_kv, sizes["heads"], sizes["kv_heads"])
            q, k, v, o = adapter.attn_projs(layer)
            slice_linear(q, out_idx=_rows_of(q_keep, hd))
            slice_linear(k, out_idx=_rows_of(kv_keep, hd))
            slice_linear(v, out_idx=_rows_of(kv_keep, hd))
            slice_linear(o, in_idx=_rows_of(q_keep, hd))
            kept_heads.append(q_keep.tolist())
    adapter.set_ffn(model, sizes["ffn"])
    adapter.set_heads(model, sizes["heads"], sizes["kv_heads"])
    norm_scales = {}
    if sizes["hidden"] < hidden:
        keep = _top(st.hidden, sizes["hidden"])
        emb = adapter.embed(model)
        emb.weight = nn.Parameter(emb.weight.data[:, keep].contiguous().clone())
        emb.embedding_dim = sizes["hidden"]
        if not adapter.tied(model):
            slice_linear(adapter.lm_head(model), in_idx=keep)
        norms = {f"layers.{i}.{j}": n for i, layer in enumerate(adapter.layers(model))
                 for j, n in enumerate(adapter.layer_norms(layer))}
        norms["final"] = adapter.final_norm(model)
        for name, norm in norms.items():
            scale = 1.0
            if norm_correction:
                ms = st.norm_ms[name].double()
                scale = float((ms[keep].mean() / ms.mean().clamp_min(1e-30)).sqrt()) if ms.mean() > 0 else 1.0
            norm.weight = nn.Parameter((norm.weight.data[keep] * scale).contiguous().clone())
            norm_scales[name] = round(scale, 5)
        for layer in adapter.layers(model):
            q, k, v, o = adapter.attn_projs(layer)
            gate, up, down = adapter.mlp_projs(layer)
            for lin in (q, k, v, gate, up):
                slice_linear(lin, in_idx=keep)
            for lin in (o, down):
                slice_linear(lin, out_idx=keep)
        adapter.set_hidden(model, sizes["hidden"])
        adapter.set_vocab_tie(model)
    return {"kept_heads": kept_heads, "norm_scales": norm_scales}


@register_method("width", check=check, targets=("ffn", "heads", "kv_heads", "hidden", "params"), structured=True)
def prune_width(model, adapter, cfg, ids) -> dict:
    c = model.config
    before = {"ffn": adapter.ffn(c), "heads": adapter.heads(c), "kv_heads": adapter.kv_heads(c), "hidden": adapter.hidden(c)}
    sizes = resolve_sizes(model, adapter, cfg)
    st = width_stats(model, adapter, ids, cfg.batch_size)
    align = alignment(sizes, adapter.head_dim(c), cfg.quant_align)
    for note in align["notes"]:
        log.warning("width pruning: %s", note)
    detail = apply_width(model, adapter, st, sizes, cfg.norm_correction)
    return {"sizes": {"before": before, "after": sizes}, "alignment": align, "calibration_tokens": st.tokens, **detail}
