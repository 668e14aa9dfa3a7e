"""Qwen2: GGUF architecture ``qwen2`` (NEOX RoPE, so no q/k permutation; q/k/v biases).

    >>> export_gguf("zoo:coder-teacher-qwen", "qwen.gguf")
"""

from __future__ import annotations

import gguf

from downsize.export.gguf.base import Family, register_family


@register_family("Qwen2ForCausalLM")
class Qwen2(Family):
    gguf_arch = gguf.MODEL_ARCH.QWEN2
