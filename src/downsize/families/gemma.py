"""Gemma 2 and Gemma 3 (text): GGUF architectures ``gemma2``/``gemma3``.

Gemma's RMSNorm scales by (1 + w), llama.cpp's by w, so every norm weight is written as w + 1. Embeddings
are scaled by sqrt(hidden) inside llama.cpp, as in HF. Sliding-window layers are written per layer from
``config.layer_types``; Gemma 3's local layers use their own RoPE base.

    >>> import gguf, numpy as np
    >>> from transformers import AutoModelForCausalLM
    >>> from downsize.export.gguf import export_gguf
    >>> from downsize.models.arch import arch_configs, build_config
    >>> from downsize.models.refs import load_tokenizer
    >>> tok = load_tokenizer("zoo:coder-teacher-qwen")          # a random-init 2-layer gemma3 with its tiny test shape:
    >>> cfg = build_config("gemma3", vocab_size=len(tok), tokenizer=tok, hidden_size=64, intermediate_size=128,
    ...                    num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, **arch_configs()["gemma3"].tiny)
    >>> AutoModelForCausalLM.from_config(cfg).save_pretrained("tiny"); _ = tok.save_pretrained("tiny")
    >>> r = export_gguf("tiny", "gemma3.gguf", quant="F32")
    >>> r.arch, r.n_tensors
    ('gemma3', 28)
    >>> sorted({t.name.split(".", 2)[-1] for t in gguf.GGUFReader("gemma3.gguf").tensors if t.name.startswith("blk.0.")})
    ['attn_k.weight', 'attn_k_norm.weight', 'attn_norm.weight', 'attn_output.weight', 'attn_q.weight',
     'attn_q_norm.weight', 'attn_v.weight', 'ffn_down.weight', 'ffn_gate.weight', 'ffn_norm.weight',
     'ffn_up.weight', 'post_attention_norm.weight', 'post_ffw_norm.weight']
    >>> w = {t.name: t for t in gguf.GGUFReader("gemma3.gguf").tensors}["blk.0.attn_norm.weight"]
    >>> float(np.asarray(w.data)[0])      # HF's Gemma norm starts at w = 0 (it scales by 1 + w); llama.cpp's by w
    1.0
"""

from __future__ import annotations

import copy

import gguf
import numpy as np

from downsize.errors import DownsizeError
from downsize.export.gguf.base import Family, register_family, rope_scaling, rope_theta
from downsize.export.gguf.config import register_model_type, standardize_rope
from downsize.models.arch import register_arch_config

SLIDING, FULL = "sliding_attention", "full_attention"


class _Gemma(Family):
    def __init__(self, cfg):
        super().__init__(cfg)
        scalar = getattr(cfg, "query_pre_attn_scalar", None)
        if scalar is not None and int(scalar) != self.head_dim:
            # llama.cpp derives the attention scale from head_dim (from hidden/heads only for the 27B sizes).
            raise DownsizeError(f"query_pre_attn_scalar={scalar} differs from head_dim={self.head_dim}, which llama.cpp "
                                "assumes for this Gemma size", hint="only the standard Gemma sizes (or query_pre_attn_scalar = head_dim) convert")

    def layer_types(self) -> list[str]:
        lt = getattr(self.cfg, "layer_types", None)
        return list(lt) if lt else [FULL] * self.n_layers

    def write_hparams(self, w: gguf.GGUFWriter) -> None:
        super().write_hparams(w)
        c = self.cfg
        if getattr(c, "final_logit_softcapping", None):
            w.add_final_logit_softcapping(float(c.final_logit_softcapping))
        if getattr(c, "attn_logit_softcapping", None):
            w.add_attn_logit_softcapping(float(c.attn_logit_softcapping))
        types = self.layer_types()
        if getattr(c, "sliding_window", None) and SLIDING in types:
            w.add_sliding_window(int(c.sliding_window))
            w.add_sliding_window_pattern([t == SLIDING for t in types])

    def transform(self, hf_name: str, rows: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        if hf_name.endswith("norm.weight"):
            return rows.astype(np.float32, copy=False) + 1.0  # float32 + a Python scalar stays float32
        return rows


@register_family("Gemma2ForCausalLM")
class Gemma2(_Gemma):
    gguf_arch = gguf.MODEL_ARCH.GEMMA2


@register_family("Gemma3ForCausalLM")
class Gemma3(_Gemma):
    gguf_arch = gguf.MODEL_ARCH.GEMMA3

    def write_hparams(self, w: gguf.GGUFWriter) -> None:
        super().write_hparams(w)
        w.add_rope_freq_base(rope_theta(self.cfg, FULL, default=1_000_000.0))
        local = getattr(self.cfg, "rope_local_base_freq", None) or rope_theta(self.cfg, SLIDING, default=10_000.0)
        w.add_rope_freq_base_swa(float(local))

    def write_rope_scaling(self, w: gguf.GGUFWriter) -> None:
        rs = rope_scaling(self.cfg, FULL)
        if not rs:
            return
        if rs["rope_type"] != "linear":
            raise DownsizeError(f"Gemma 3 rope scaling {rs['rope_type']!r} is not supported", hint="supported: linear")
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(float(rs["factor"]))


# ---- transformers' Gemma2Config / Gemma3TextConfig: defaults and post-init rules for the fields read above ----
def _gemma2_post_init(c: dict) -> None:
    if c.get("layer_types") is None:
        c["layer_types"] = [SLIDING if (i + 1) % 2 else FULL for i in range(c["num_hidden_layers"])]


def _gemma3_post_init(c: dict) -> None:
    if c.get("use_bidirectional_attention"):
        c["sliding_window"] = c["sliding_window"] // 2 + 1
    pattern = c.get("sliding_window_pattern", 6)
    if c.get("layer_types") is None:
        c["layer_types"] = [SLIDING if (i + 1) % pattern else FULL for i in range(c["num_hidden_layers"])]


def _gemma3_rope(c: dict) -> None:
    """Gemma3TextConfig.convert_rope_params_to_dict: one RoPE dict per attention type; legacy rope_scaling applies
    to the global (full-attention) layers, rope_local_base_freq is the sliding layers' base."""
    rope_scaling = c.pop("rope_scaling", None)
    rp = copy.deepcopy(c.get("rope_parameters"))
    if rp is None:
        rp = {SLIDING: {"rope_type": "default"}, FULL: {"rope_type": "default"}}
    if rope_scaling is not None:
        rp[FULL].update(rope_scaling)
    if rp.get(FULL) is None:
        rp[FULL] = {"rope_type": "default"}
    rp[FULL].setdefault("rope_theta", c.pop("rope_theta", 1_000_000.0))
    if rp.get(SLIDING) is None:
        rp[SLIDING] = {"rope_type": "default"}
    rp[SLIDING].setdefault("rope_theta", c.pop("rope_local_base_freq", 10_000.0))
    c["rope_parameters"] = standardize_rope(c, rp)


_GEMMA_COMMON = dict(hidden_size=2304, intermediate_size=9216, num_hidden_layers=26, num_attention_heads=8,
                     num_key_value_heads=4, head_dim=256, rms_norm_eps=1e-6, pad_token_id=0, eos_token_id=1,
                     bos_token_id=2, tie_word_embeddings=True, rope_parameters=None, query_pre_attn_scalar=256,
                     sliding_window=4096, layer_types=None)
register_model_type("gemma2", dict(_GEMMA_COMMON, vocab_size=256000, max_position_embeddings=8192,
                                   final_logit_softcapping=30.0, attn_logit_softcapping=50.0),
                    post_init=_gemma2_post_init)
register_model_type("gemma3_text", dict(_GEMMA_COMMON, vocab_size=262_208, max_position_embeddings=131_072,
                                        final_logit_softcapping=None, attn_logit_softcapping=None,
                                        use_bidirectional_attention=False),
                    post_init=_gemma3_post_init, rope=_gemma3_rope)


# ---- configs downsize builds (random-init students) and the tiny test models (no pruning adapter yet) -----------

_TINY_GEMMA = dict(head_dim=16, query_pre_attn_scalar=16, layer_types=[SLIDING, FULL], sliding_window=128)
register_arch_config("gemma2", "gemma2", "Gemma2ForCausalLM", tiny=_TINY_GEMMA)
register_arch_config("gemma3", "gemma3_text", "Gemma3ForCausalLM", tiny=_TINY_GEMMA)
