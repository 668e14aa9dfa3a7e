"""Qwen2: Llama layout with biases on q/k/v (sliced with their rows) and per-layer ``layer_types``."""

from downsize.models.adapters import register_adapter
from downsize.models.adapters.base import LlamaLikeAdapter


@register_adapter("Qwen2ForCausalLM")
class Qwen2Adapter(LlamaLikeAdapter):
    pass
