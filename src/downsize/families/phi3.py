"""Phi-3: GGUF architecture ``phi3`` (fused qkv and gate_up projections kept fused, as llama.cpp reads them;
partial rotary dimension; LongRoPE factors as rope_factors_long/short tensors).

    >>> import gguf, numpy as np
    >>> from transformers import AutoModelForCausalLM
    >>> from downsize.export.gguf import export_gguf
    >>> from downsize.models.arch import arch_configs, build_config
    >>> from downsize.models.refs import load_tokenizer
    >>> tok = load_tokenizer("zoo:coder-teacher-qwen")          # a random-init 2-layer phi3 with its tiny test shape:
    >>> cfg = build_config("phi3", vocab_size=len(tok), tokenizer=tok, hidden_size=64, intermediate_size=128,
    ...                    num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, **arch_configs()["phi3"].tiny)
    >>> AutoModelForCausalLM.from_config(cfg).save_pretrained("tiny"); _ = tok.save_pretrained("tiny")
    >>> r = export_gguf("tiny", "phi3.gguf", quant="F32")
    >>> r.arch, r.n_tensors
    ('phi3', 15)
    >>> sorted({t.name.split(".", 2)[-1] for t in gguf.GGUFReader("phi3.gguf").tensors if t.name.startswith("blk.0.")})
    ['attn_norm.weight', 'attn_output.weight', 'attn_qkv.weight', 'ffn_down.weight', 'ffn_norm.weight',
     'ffn_up.weight']
"""

from __future__ import annotations

import copy
import math
from typing import Iterator

import gguf
import numpy as np

from downsize.errors import DownsizeError
from downsize.export.gguf.base import Family, register_family, rope_scaling
from downsize.export.gguf.config import DEFAULT_ROPE_THETA, kv_heads_default, register_model_type, standardize_rope
from downsize.models.arch import register_arch_config


@register_family("Phi3ForCausalLM")
class Phi3(Family):
    gguf_arch = gguf.MODEL_ARCH.PHI3

    @property
    def rot_dim(self) -> int:
        rp = getattr(self.cfg, "rope_parameters", None) or {}
        pct = rp.get("partial_rotary_factor", getattr(self.cfg, "partial_rotary_factor", 1.0)) or 1.0
        return int(pct * self.head_dim)

    def write_hparams(self, w: gguf.GGUFWriter) -> None:
        super().write_hparams(w)
        w.add_rope_dimension_count(self.rot_dim)
        if getattr(self.cfg, "sliding_window", None):
            w.add_sliding_window(int(self.cfg.sliding_window))

    def write_rope_scaling(self, w: gguf.GGUFWriter) -> None:
        rs = rope_scaling(self.cfg)
        if not rs:
            return
        if rs["rope_type"] != "longrope":
            raise DownsizeError(f"Phi-3 rope scaling {rs['rope_type']!r} is not supported", hint="supported: longrope")
        orig = int(getattr(self.cfg, "original_max_position_embeddings", None) or rs["original_max_position_embeddings"])
        scale = self.cfg.max_position_embeddings / orig
        attn = 1.0 if scale <= 1.0 else math.sqrt(1 + math.log(scale) / math.log(orig))
        w.add_rope_scaling_attn_factors(attn)
        w.add_rope_scaling_orig_ctx_len(orig)

    def extra_tensors(self) -> Iterator[tuple[str, np.ndarray]]:
        rs = rope_scaling(self.cfg)
        if rs.get("rope_type") == "longrope":
            for key, t in (("long_factor", gguf.MODEL_TENSOR.ROPE_FACTORS_LONG), ("short_factor", gguf.MODEL_TENSOR.ROPE_FACTORS_SHORT)):
                f = np.asarray(rs[key], dtype=np.float32)
                if f.size != self.rot_dim // 2:
                    raise DownsizeError(f"rope_scaling.{key} has {f.size} values, expected {self.rot_dim // 2}",
                                        hint="the config's longrope factors do not match its rotary dimension")
                yield gguf.TENSOR_NAMES[t] + ".weight", f


def _phi3_rope(c: dict) -> None:
    """Phi3Config.convert_rope_params_to_dict: partial_rotary_factor joins the rope dict, and the old LongRoPE
    names ``su`` and ``yarn`` mean ``longrope``."""
    rope_scaling = c.pop("rope_scaling", None)
    rp = copy.deepcopy(rope_scaling or c.get("rope_parameters")) or {}
    rp.setdefault("rope_theta", c.pop("rope_theta", DEFAULT_ROPE_THETA))
    rp.setdefault("partial_rotary_factor", c.get("partial_rotary_factor", 1.0))
    standardize_rope(c, rp)
    if rp.get("rope_type") in ("su", "yarn"):
        rp["rope_type"] = "longrope"
    c["rope_parameters"] = rp


# transformers' Phi3Config defaults for the fields read above.
register_model_type("phi3", dict(
    vocab_size=32064, hidden_size=3072, intermediate_size=8192, num_hidden_layers=32, num_attention_heads=32,
    num_key_value_heads=None, max_position_embeddings=4096, original_max_position_embeddings=4096, rms_norm_eps=1e-5,
    tie_word_embeddings=False, rope_parameters=None, bos_token_id=1, eos_token_id=32000, pad_token_id=32000,
    sliding_window=None), post_init=kv_heads_default, rope=_phi3_rope)


# ---- configs downsize builds (random-init students) and the tiny test models (no pruning adapter yet) -----------

register_arch_config("phi3", "phi3", "Phi3ForCausalLM", tiny=dict(tie_word_embeddings=False, pad_token_id=None))
