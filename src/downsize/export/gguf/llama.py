"""Llama and Mistral: GGUF architecture ``llama``; q/k rows permuted for llama.cpp's interleaved RoPE.

    >>> export_gguf("zoo:coder-teacher", "teacher.gguf")      # LlamaForCausalLM
"""

from __future__ import annotations

import math
from typing import Iterator

import gguf
import numpy as np
import torch

from downsize.export.gguf.base import Family, register_family, rope_scaling, rope_theta


def permute_qk(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """HF stores q/k with rotary halves split ([x0..x_{d/2}, y0..]); llama.cpp's NORM RoPE wants pairs interleaved.

    w: (n_head * head_dim, ...) -> same shape, rows reordered within each head.
    """
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def llama3_rope_factors(cfg, head_dim: int) -> np.ndarray:
    """Per-frequency divisors of Llama 3.1's "llama3" RoPE scaling (llama.cpp reads them as rope_freqs)."""
    rs = rope_scaling(cfg)
    base = rope_theta(cfg)
    factor = float(rs.get("factor", 8.0))
    low, high = float(rs.get("low_freq_factor", 1.0)), float(rs.get("high_freq_factor", 4.0))
    old_ctx = float(rs.get("original_max_position_embeddings", 8192))
    freqs = 1.0 / (base ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim))
    out = []
    for f in freqs:
        wavelen = 2 * math.pi / f
        if wavelen < old_ctx / high:
            out.append(1.0)
        elif wavelen > old_ctx / low:
            out.append(factor)
        else:
            smooth = (old_ctx / wavelen - low) / (high - low)
            out.append(1.0 / ((1 - smooth) / factor + smooth))
    return np.asarray(out, dtype=np.float32)


@register_family("LlamaForCausalLM", "MistralForCausalLM")
class Llama(Family):
    gguf_arch = gguf.MODEL_ARCH.LLAMA

    def transform(self, hf_name: str, t: torch.Tensor) -> torch.Tensor:
        if ".self_attn.q_proj." in hf_name:
            return permute_qk(t, self.n_head)
        if ".self_attn.k_proj." in hf_name:
            return permute_qk(t, self.n_kv)
        return t

    def extra_tensors(self) -> Iterator[tuple[str, np.ndarray]]:
        if rope_scaling(self.cfg).get("rope_type") == "llama3":
            yield gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ROPE_FREQS] + ".weight", llama3_rope_factors(self.cfg, self.head_dim)
