"""Llama and Mistral (same tensors; Mistral adds an optional sliding window, which depth pruning keeps per layer)."""

from downsize.models.adapters import register_adapter
from downsize.models.adapters.base import LlamaLikeAdapter


@register_adapter("LlamaForCausalLM", "MistralForCausalLM")
class LlamaAdapter(LlamaLikeAdapter):
    # LlamaConfig validates hidden_size % num_attention_heads == 0 (MistralConfig does not; kept for both, harmless)
    hidden_multiple_of_heads = True
