"""Qwen2: Llama layout with biases on q/k/v (sliced with their rows), per-layer ``layer_types``, and
heads * head_dim tied to the hidden size in llama.cpp."""

from downsize.models.adapters import register_adapter
from downsize.models.adapters.base import LlamaLikeAdapter


@register_adapter("Qwen2ForCausalLM")
class Qwen2Adapter(LlamaLikeAdapter):
    # llama.cpp's qwen2 graph creates attn_q / attn_output as (n_embd, n_embd): pruned models must keep
    # heads * head_dim == hidden_size or llama.cpp refuses the GGUF ("tensor 'blk.0.attn_q.weight' has wrong shape").
    attn_width_is_hidden = True
