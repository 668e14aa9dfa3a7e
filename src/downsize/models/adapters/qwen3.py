"""Qwen3: Llama layout plus per-head RMSNorm on q and k (over head_dim, so head and hidden pruning leave it as is)."""

from downsize.models.adapters import register_adapter
from downsize.models.adapters.base import LlamaLikeAdapter


@register_adapter("Qwen3ForCausalLM")
class Qwen3Adapter(LlamaLikeAdapter):
    has_qk_norm = True
