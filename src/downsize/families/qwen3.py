"""Qwen3: GGUF architecture ``qwen3`` (NEOX RoPE, per-head q/k RMSNorm, explicit head_dim, no q/k/v biases).

    >>> export_gguf("Qwen/Qwen3-0.6B-dir", "qwen3.gguf")
"""

from __future__ import annotations

import gguf

from downsize.export.gguf.base import Family, register_family
from downsize.export.gguf.config import register_model_type
from downsize.families.qwen2 import qwen_post_init
from downsize.models.adapters import register_adapter
from downsize.models.adapters.base import LlamaLikeAdapter
from downsize.models.arch import register_arch_config


@register_family("Qwen3ForCausalLM")
class Qwen3(Family):
    gguf_arch = gguf.MODEL_ARCH.QWEN3


# transformers' Qwen3Config defaults for the fields the families read (head_dim 128 unless the config says).
register_model_type("qwen3", dict(
    vocab_size=151936, hidden_size=4096, intermediate_size=22016, num_hidden_layers=32, num_attention_heads=32,
    num_key_value_heads=32, head_dim=128, max_position_embeddings=32768, rms_norm_eps=1e-6, tie_word_embeddings=False,
    rope_parameters=None, use_sliding_window=False, sliding_window=4096, max_window_layers=28, layer_types=None,
    pad_token_id=None, bos_token_id=None, eos_token_id=None), post_init=qwen_post_init)


# ---- pruning and editing (downsize.models.adapters): per-head RMSNorm on q and k (over head_dim, so head and
# hidden pruning leave it as is) ---------------------------------------------------------------------------------

@register_adapter("Qwen3ForCausalLM")
class Qwen3Adapter(LlamaLikeAdapter):
    has_qk_norm = True


# ---- configs downsize builds (zoo training, random-init students) and the tiny test models ---------------------

register_arch_config("qwen3", "qwen3", "Qwen3ForCausalLM", tiny=dict(tie_word_embeddings=False, head_dim=16))
