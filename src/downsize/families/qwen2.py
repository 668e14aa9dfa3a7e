"""Qwen2: GGUF architecture ``qwen2`` (NEOX RoPE, so no q/k permutation; q/k/v biases).

    >>> import gguf
    >>> from downsize.export.gguf import export_gguf
    >>> r = export_gguf("zoo:coder-teacher-qwen", "qwen.gguf", quant="F32")
    >>> r.arch, r.n_params
    ('qwen2', 4198656)
    >>> sorted({t.name.split(".", 2)[-1] for t in gguf.GGUFReader("qwen.gguf").tensors if t.name.startswith("blk.0.attn_")})
    ['attn_k.bias', 'attn_k.weight', 'attn_norm.weight', 'attn_output.weight', 'attn_q.bias', 'attn_q.weight',
     'attn_v.bias', 'attn_v.weight']
"""

from __future__ import annotations

import gguf

from downsize.export.gguf.base import Family, register_family
from downsize.export.gguf.config import kv_heads_default, register_model_type
from downsize.models.adapters import register_adapter
from downsize.models.adapters.base import LlamaLikeAdapter
from downsize.models.arch import register_arch_config


@register_family("Qwen2ForCausalLM")
class Qwen2(Family):
    gguf_arch = gguf.MODEL_ARCH.QWEN2


def qwen_post_init(c: dict) -> None:
    """Qwen2Config/Qwen3Config.__post_init__: the sliding window only when enabled, per-layer attention types."""
    c["sliding_window"] = c.get("sliding_window") if c.get("use_sliding_window") else None
    kv_heads_default(c)
    if c.get("layer_types") is None:
        c["layer_types"] = ["sliding_attention" if c["sliding_window"] is not None and i >= c["max_window_layers"]
                            else "full_attention" for i in range(c["num_hidden_layers"])]


# transformers' Qwen2Config defaults for the fields the families read.
register_model_type("qwen2", dict(
    vocab_size=151936, hidden_size=4096, intermediate_size=22016, num_hidden_layers=32, num_attention_heads=32,
    num_key_value_heads=32, max_position_embeddings=32768, rms_norm_eps=1e-6, tie_word_embeddings=False,
    rope_parameters=None, use_sliding_window=False, sliding_window=4096, max_window_layers=28, layer_types=None,
    pad_token_id=None, bos_token_id=None, eos_token_id=None), post_init=qwen_post_init)


# ---- pruning and editing (downsize.models.adapters) ------------------------------------------------------------

@register_adapter("Qwen2ForCausalLM")
class Qwen2Adapter(LlamaLikeAdapter):
    # llama.cpp's qwen2 graph creates attn_q / attn_output as (n_embd, n_embd): pruned models must keep
    # heads * head_dim == hidden_size or llama.cpp refuses the GGUF ("tensor 'blk.0.attn_q.weight' has wrong shape").
    attn_width_is_hidden = True


# ---- configs downsize builds (zoo training, random-init students) and the tiny test models ---------------------

register_arch_config("qwen2", "qwen2", "Qwen2ForCausalLM", tiny=dict(tie_word_embeddings=True))
