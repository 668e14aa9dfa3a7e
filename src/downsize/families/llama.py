"""Llama and Mistral: GGUF architecture ``llama``; q/k rows permuted for llama.cpp's interleaved RoPE.

    >>> import gguf, numpy as np
    >>> from downsize.export.gguf import export_gguf
    >>> from downsize.models.refs import load_model
    >>> r = export_gguf("zoo:coder-teacher", "teacher.gguf", quant="F32")      # LlamaForCausalLM, 15.7M
    >>> r.arch
    'llama'
    >>> model, _ = load_model("zoo:coder-teacher", with_tokenizer=False)
    >>> q_hf = model.model.layers[0].self_attn.q_proj.weight
    >>> q_gguf = {t.name: t for t in gguf.GGUFReader("teacher.gguf").tensors}["blk.0.attn_q.weight"].data
    >>> bool(np.allclose(np.sort(q_hf.detach().numpy(), axis=None), np.sort(q_gguf, axis=None)))   # same values, rows permuted
    True
    >>> bool(np.allclose(q_hf.detach().numpy(), q_gguf))
    False
"""

from __future__ import annotations

import math
from typing import Iterator

import gguf
import numpy as np

from downsize.errors import DownsizeError
from downsize.export.gguf.base import Family, register_family, rope_scaling, rope_theta
from downsize.export.gguf.config import head_dim_from_sizes, kv_heads_default, register_model_type
from downsize.models.adapters import register_adapter
from downsize.models.adapters.base import LlamaLikeAdapter
from downsize.models.arch import register_arch_config


def permute_qk_rows(w: np.ndarray, head_rows: int) -> np.ndarray:
    """HF stores q/k with rotary halves split ([x0..x_{d/2}, y0..]); llama.cpp's NORM RoPE wants pairs interleaved.

    w: (k * head_rows, ...) -- whole heads of ``head_rows`` rows each -> same shape, rows reordered within each head.
    """
    return w.reshape(-1, 2, head_rows // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def permute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """``permute_qk_rows`` for a whole q/k weight of ``n_head`` heads: (n_head * head_dim, ...)."""
    return permute_qk_rows(w, w.shape[0] // n_head)


def llama3_rope_factors(cfg, head_dim: int) -> np.ndarray:
    """Per-frequency divisors of Llama 3.1's "llama3" RoPE scaling (llama.cpp reads them as rope_freqs)."""
    rs = rope_scaling(cfg)
    base = rope_theta(cfg)
    factor = float(rs.get("factor", 8.0))
    low, high = float(rs.get("low_freq_factor", 1.0)), float(rs.get("high_freq_factor", 4.0))
    old_ctx = float(rs.get("original_max_position_embeddings", 8192))
    freqs = 1.0 / (base ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim))
    out = []
    for f in freqs:
        wavelen = 2 * math.pi / f
        if wavelen < old_ctx / high:
            out.append(1.0)
        elif wavelen > old_ctx / low:
            out.append(factor)
        else:
            smooth = (old_ctx / wavelen - low) / (high - low)
            out.append(1.0 / ((1 - smooth) / factor + smooth))
    return np.asarray(out, dtype=np.float32)


@register_family("LlamaForCausalLM", "MistralForCausalLM")
class Llama(Family):
    gguf_arch = gguf.MODEL_ARCH.LLAMA

    def _heads(self, hf_name: str) -> int | None:
        if ".self_attn.q_proj." in hf_name:
            return self.n_head
        if ".self_attn.k_proj." in hf_name:
            return self.n_kv
        return None

    def row_group(self, hf_name: str, shape: tuple[int, ...]) -> int | None:
        heads = self._heads(hf_name)
        if heads is None:
            return 1
        if shape[0] % heads or (shape[0] // heads) % 2:
            raise DownsizeError(f"{hf_name} has {shape[0]} rows, not {heads} heads of an even head size",
                                hint="config.json's head counts do not match the checkpoint's q/k weights")
        return shape[0] // heads  # the rows of one head: the permutation never crosses heads

    def transform(self, hf_name: str, rows: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        heads = self._heads(hf_name)
        return rows if heads is None else permute_qk_rows(rows, shape[0] // heads)

    def extra_tensors(self) -> Iterator[tuple[str, np.ndarray]]:
        if rope_scaling(self.cfg).get("rope_type") == "llama3":
            yield gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ROPE_FREQS] + ".weight", llama3_rope_factors(self.cfg, self.head_dim)


def _llama_post_init(c: dict) -> None:
    head_dim_from_sizes(c)
    kv_heads_default(c)


# transformers' LlamaConfig / MistralConfig defaults for the fields the families read.
register_model_type("llama", dict(
    vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
    num_key_value_heads=None, max_position_embeddings=2048, rms_norm_eps=1e-6, bos_token_id=1, eos_token_id=2,
    pad_token_id=None, tie_word_embeddings=False, rope_parameters=None, head_dim=None),
    post_init=_llama_post_init)
register_model_type("mistral", dict(
    vocab_size=32000, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
    num_key_value_heads=8, head_dim=None, max_position_embeddings=4096 * 32, rms_norm_eps=1e-6, bos_token_id=1,
    eos_token_id=2, pad_token_id=None, tie_word_embeddings=False, rope_parameters=None, sliding_window=4096),
    post_init=_llama_post_init)


# ---- pruning and editing (downsize.models.adapters) ------------------------------------------------------------

@register_adapter("LlamaForCausalLM", "MistralForCausalLM")
class LlamaAdapter(LlamaLikeAdapter):
    # LlamaConfig validates hidden_size % num_attention_heads == 0 (MistralConfig does not; kept for both, harmless)
    hidden_multiple_of_heads = True


# ---- configs downsize builds (zoo training, random-init students) and the tiny test models ---------------------

register_arch_config("llama", "llama", "LlamaForCausalLM", tiny=dict(tie_word_embeddings=False))
register_arch_config("mistral", "mistral", "MistralForCausalLM", tiny=dict(tie_word_embeddings=False, head_dim=16))
