"""Qwen3: GGUF architecture ``qwen3`` (NEOX RoPE, per-head q/k RMSNorm, explicit head_dim, no q/k/v biases).

    >>> import gguf, numpy as np
    >>> from transformers import AutoModelForCausalLM
    >>> from downsize.export.gguf import export_gguf
    >>> from downsize.models.arch import arch_configs, build_config
    >>> from downsize.models.refs import load_tokenizer
    >>> tok = load_tokenizer("zoo:coder-teacher-qwen")          # a random-init 2-layer qwen3 with its tiny test shape:
    >>> cfg = build_config("qwen3", vocab_size=len(tok), tokenizer=tok, hidden_size=64, intermediate_size=128,
    ...                    num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, **arch_configs()["qwen3"].tiny)
    >>> AutoModelForCausalLM.from_config(cfg).save_pretrained("tiny"); _ = tok.save_pretrained("tiny")
    >>> r = export_gguf("tiny", "qwen3.gguf", quant="F32")
    >>> r.arch, r.n_tensors
    ('qwen3', 25)
    >>> sorted({t.name.split(".", 2)[-1] for t in gguf.GGUFReader("qwen3.gguf").tensors if t.name.startswith("blk.0.")})
    ['attn_k.weight', 'attn_k_norm.weight', 'attn_norm.weight', 'attn_output.weight', 'attn_q.weight',
     'attn_q_norm.weight', 'attn_v.weight', 'ffn_down.weight', 'ffn_gate.weight', 'ffn_norm.weight',
     'ffn_up.weight']
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
