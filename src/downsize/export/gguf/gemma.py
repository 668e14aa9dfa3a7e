"""Gemma 2 and Gemma 3 (text): GGUF architectures ``gemma2``/``gemma3``.

Gemma's RMSNorm scales by (1 + w), llama.cpp's by w, so every norm weight is written as w + 1. Embeddings
are scaled by sqrt(hidden) inside llama.cpp, as in HF. Sliding-window layers are written per layer from
``config.layer_types``; Gemma 3's local layers use their own RoPE base.

    >>> export_gguf("google/gemma-3-1b-it-dir", "gemma3.gguf")
"""

from __future__ import annotations

import gguf
import torch

from downsize.errors import DownsizeError
from downsize.export.gguf.base import Family, register_family, rope_scaling, rope_theta

SLIDING, FULL = "sliding_attention", "full_attention"


class _Gemma(Family):
    def __init__(self, cfg):
        super().__init__(cfg)
        scalar = getattr(cfg, "query_pre_attn_scalar", None)
        if scalar is not None and int(scalar) != self.head_dim:
            # llama.cpp derives the attention scale from head_dim (from hidden/heads only for the 27B sizes).
            raise DownsizeError(f"query_pre_attn_scalar={scalar} differs from head_dim={self.head_dim}, which llama.cpp "
                                "assumes for this Gemma size", hint="only the standard Gemma sizes (or query_pre_attn_scalar = head_dim) convert")

    def layer_types(self) -> list[str]:
        lt = getattr(self.cfg, "layer_types", None)
        return list(lt) if lt else [FULL] * self.n_layers

    def write_hparams(self, w: gguf.GGUFWriter) -> None:
        super().write_hparams(w)
        c = self.cfg
        if getattr(c, "final_logit_softcapping", None):
            w.add_final_logit_softcapping(float(c.final_logit_softcapping))
        if getattr(c, "attn_logit_softcapping", None):
            w.add_attn_logit_softcapping(float(c.attn_logit_softcapping))
        types = self.layer_types()
        if getattr(c, "sliding_window", None) and SLIDING in types:
            w.add_sliding_window(int(c.sliding_window))
            w.add_sliding_window_pattern([t == SLIDING for t in types])

    def transform(self, hf_name: str, t: torch.Tensor) -> torch.Tensor:
        if hf_name.endswith("norm.weight"):
            return t.to(torch.float32) + 1.0
        return t


@register_family("Gemma2ForCausalLM")
class Gemma2(_Gemma):
    gguf_arch = gguf.MODEL_ARCH.GEMMA2


@register_family("Gemma3ForCausalLM")
class Gemma3(_Gemma):
    gguf_arch = gguf.MODEL_ARCH.GEMMA3

    def write_hparams(self, w: gguf.GGUFWriter) -> None:
        super().write_hparams(w)
        w.add_rope_freq_base(rope_theta(self.cfg, FULL, default=1_000_000.0))
        local = getattr(self.cfg, "rope_local_base_freq", None) or rope_theta(self.cfg, SLIDING, default=10_000.0)
        w.add_rope_freq_base_swa(float(local))

    def write_rope_scaling(self, w: gguf.GGUFWriter) -> None:
        rs = rope_scaling(self.cfg, FULL)
        if not rs:
            return
        if rs["rope_type"] != "linear":
            raise DownsizeError(f"Gemma 3 rope scaling {rs['rope_type']!r} is not supported", hint="supported: linear")
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(float(rs["factor"]))
