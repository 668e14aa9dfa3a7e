"""Phi-3: GGUF architecture ``phi3`` (fused qkv and gate_up projections kept fused, as llama.cpp reads them;
partial rotary dimension; LongRoPE factors as rope_factors_long/short tensors).

    >>> export_gguf("microsoft/Phi-3-mini-4k-instruct-dir", "phi3.gguf")
"""

from __future__ import annotations

import math
from typing import Iterator

import gguf
import numpy as np

from downsize.errors import DownsizeError
from downsize.export.gguf.base import Family, register_family, rope_scaling


@register_family("Phi3ForCausalLM")
class Phi3(Family):
    gguf_arch = gguf.MODEL_ARCH.PHI3

    @property
    def rot_dim(self) -> int:
        rp = getattr(self.cfg, "rope_parameters", None) or {}
        pct = rp.get("partial_rotary_factor", getattr(self.cfg, "partial_rotary_factor", 1.0)) or 1.0
        return int(pct * self.head_dim)

    def write_hparams(self, w: gguf.GGUFWriter) -> None:
        super().write_hparams(w)
        w.add_rope_dimension_count(self.rot_dim)
        if getattr(self.cfg, "sliding_window", None):
            w.add_sliding_window(int(self.cfg.sliding_window))

    def write_rope_scaling(self, w: gguf.GGUFWriter) -> None:
        rs = rope_scaling(self.cfg)
        if not rs:
            return
        if rs["rope_type"] != "longrope":
            raise DownsizeError(f"Phi-3 rope scaling {rs['rope_type']!r} is not supported", hint="supported: longrope")
        orig = int(getattr(self.cfg, "original_max_position_embeddings", None) or rs["original_max_position_embeddings"])
        scale = self.cfg.max_position_embeddings / orig
        attn = 1.0 if scale <= 1.0 else math.sqrt(1 + math.log(scale) / math.log(orig))
        w.add_rope_scaling_attn_factors(attn)
        w.add_rope_scaling_orig_ctx_len(orig)

    def extra_tensors(self) -> Iterator[tuple[str, np.ndarray]]:
        rs = rope_scaling(self.cfg)
        if rs.get("rope_type") == "longrope":
            for key, t in (("long_factor", gguf.MODEL_TENSOR.ROPE_FACTORS_LONG), ("short_factor", gguf.MODEL_TENSOR.ROPE_FACTORS_SHORT)):
                f = np.asarray(rs[key], dtype=np.float32)
                if f.size != self.rot_dim // 2:
                    raise DownsizeError(f"rope_scaling.{key} has {f.size} values, expected {self.rot_dim // 2}",
                                        hint="the config's longrope factors do not match its rotary dimension")
                yield gguf.TENSOR_NAMES[t] + ".weight", f
