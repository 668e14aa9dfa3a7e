"""Llama and Mistral (same tensors; Mistral adds an optional sliding window, which depth pruning keeps per layer)."""

from downsize.models.adapters import register_adapter
from downsize.models.adapters.base import LlamaLikeAdapter


@register_adapter("LlamaForCausalLM", "MistralForCausalLM")
class LlamaAdapter(LlamaLikeAdapter):
    pass
