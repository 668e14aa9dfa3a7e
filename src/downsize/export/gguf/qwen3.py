"""Qwen3: GGUF architecture ``qwen3`` (NEOX RoPE, per-head q/k RMSNorm, explicit head_dim, no q/k/v biases).

    >>> export_gguf("Qwen/Qwen3-0.6B-dir", "qwen3.gguf")
"""

from __future__ import annotations

import gguf

from downsize.export.gguf.base import Family, register_family


@register_family("Qwen3ForCausalLM")
class Qwen3(Family):
    gguf_arch = gguf.MODEL_ARCH.QWEN3
