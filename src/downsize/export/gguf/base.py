"""Architecture families for the GGUF converter: a registry of small adapters, one module per family.

A family says which GGUF architecture it writes, its hyper-parameters, how Hugging Face tensor names map
to llama.cpp's, and any per-tensor transform (Llama's q/k permutation, Gemma's norm offset). Transforms work on
numpy arrays, a block of rows at a time: ``row_group`` says how many rows must be transformed together (1 for
row-local transforms, the rows of one head for Llama's permutation), so the converter can stream any tensor.
Each family module also registers the transformers config defaults of its model types (see config.py).

    @register_family("LlamaForCausalLM", "MistralForCausalLM")
    class Llama(Family):
        gguf_arch = gguf.MODEL_ARCH.LLAMA
"""

from __future__ import annotations

from typing import Iterator

import gguf
import numpy as np

from downsize.errors import DownsizeError
from downsize.registry import Registry

FAMILIES: Registry[type["Family"]] = Registry("GGUF family")


def register_family(*architectures: str):
    """Register a Family class for one or more ``config.architectures[0]`` names (in its downsize.families module)."""

    def deco(cls: type[Family]) -> type[Family]:
        for a in architectures:
            FAMILIES.add(a, cls)
        return cls

    return deco


def check_architecture(archs: list) -> None:
    """Refuse a config whose ``architectures[0]`` no family handles (before anything else is read)."""
    from downsize.families import load_families

    load_families()
    if not archs:
        raise DownsizeError("config.json names no architecture (the 'architectures' field is empty)",
                            hint=f"add e.g. \"architectures\": [\"LlamaForCausalLM\"]; supported: {', '.join(sorted(FAMILIES))}")
    arch = archs[0]
    if arch not in FAMILIES:
        raise DownsizeError(f"architecture {arch!r} is not supported by the GGUF exporter",
                            hint=f"supported: {', '.join(sorted(FAMILIES))}")


def family_for(cfg) -> "Family":
    """The family adapter for a config (config.HFConfig or a transformers config)."""
    archs = getattr(cfg, "architectures", None) or []
    check_architecture(archs)
    return FAMILIES[archs[0]](cfg)


def rope_theta(cfg, layer_type: str | None = None, default: float = 10000.0) -> float:
    """rope_theta from a transformers 4.x (``rope_theta``) or 5.x (``rope_parameters``) config."""
    rp = getattr(cfg, "rope_parameters", None) or {}
    if layer_type and layer_type in rp and isinstance(rp[layer_type], dict):
        rp = rp[layer_type]
    if isinstance(rp, dict) and "rope_theta" in rp:
        return float(rp["rope_theta"])
    return float(getattr(cfg, "rope_theta", None) or default)


def rope_scaling(cfg, layer_type: str | None = None) -> dict:
    """The rope scaling dict ({} when none) from either config generation."""
    rp = getattr(cfg, "rope_parameters", None) or getattr(cfg, "rope_scaling", None) or {}
    if layer_type and layer_type in rp and isinstance(rp[layer_type], dict):
        rp = rp[layer_type]
    if not isinstance(rp, dict):
        return {}
    kind = rp.get("rope_type", rp.get("type", "default"))
    return {} if kind in (None, "default") else dict(rp, rope_type=kind)


class Family:
    """Base adapter: Llama-style decoder hyper-parameters and a name map from gguf's TensorNameMap."""

    gguf_arch: gguf.MODEL_ARCH
    # HF tensor names that carry no weights llama.cpp needs (buffers saved by old checkpoints).
    skip_suffixes: tuple[str, ...] = ("rotary_emb.inv_freq",)

    def __init__(self, cfg):
        self.cfg = cfg
        self.n_layers = cfg.num_hidden_layers
        self.n_head = cfg.num_attention_heads
        self.n_kv = getattr(cfg, "num_key_value_heads", None) or self.n_head
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.n_head
        self._names = gguf.get_tensor_name_map(self.gguf_arch, self.n_layers)

    @property
    def arch_name(self) -> str:
        return gguf.MODEL_ARCH_NAMES[self.gguf_arch]

    @property
    def tied(self) -> bool:
        return bool(getattr(self.cfg, "tie_word_embeddings", False))

    # ---- hyper-parameters -------------------------------------------------------------------------------
    def write_hparams(self, w: gguf.GGUFWriter) -> None:
        c = self.cfg
        w.add_context_length(c.max_position_embeddings)
        w.add_embedding_length(c.hidden_size)
        w.add_block_count(self.n_layers)
        w.add_feed_forward_length(c.intermediate_size)
        w.add_head_count(self.n_head)
        w.add_head_count_kv(self.n_kv)
        w.add_key_length(self.head_dim)
        w.add_value_length(self.head_dim)
        w.add_rope_dimension_count(self.head_dim)
        w.add_rope_freq_base(rope_theta(c))
        w.add_layer_norm_rms_eps(c.rms_norm_eps)
        w.add_vocab_size(c.vocab_size)
        self.write_rope_scaling(w)

    def write_rope_scaling(self, w: gguf.GGUFWriter) -> None:
        rs = rope_scaling(self.cfg)
        if not rs:
            return
        kind = rs["rope_type"]
        if kind == "linear":
            w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
            w.add_rope_scaling_factor(float(rs["factor"]))
        elif kind == "yarn":
            w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
            w.add_rope_scaling_factor(float(rs["factor"]))
            w.add_rope_scaling_orig_ctx_len(int(rs["original_max_position_embeddings"]))
        elif kind == "llama3":
            pass  # written as the rope_freqs tensor (see Llama.extra_tensors)
        else:
            raise DownsizeError(f"rope scaling {kind!r} is not supported by the {type(self).__name__} exporter",
                                hint="supported rope scaling: linear, yarn, llama3 (Llama only)")

    # ---- tensors ----------------------------------------------------------------------------------------
    def skip(self, hf_name: str) -> bool:
        if hf_name.endswith(self.skip_suffixes):
            return True
        return self.tied and hf_name == "lm_head.weight"

    def tensor_name(self, hf_name: str) -> str | None:
        """The GGUF name of an HF tensor; None when it is not part of the model (see ``skip``)."""
        if self.skip(hf_name):
            return None
        name = self._names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise DownsizeError(f"tensor {hf_name!r} has no GGUF name in the {self.arch_name} layout",
                                hint="the checkpoint has weights this family adapter does not know; "
                                     "check config.json 'architectures' matches the weights")
        return name

    def row_group(self, hf_name: str, shape: tuple[int, ...]) -> int | None:
        """How many consecutive rows (first dimension) ``transform`` must see together: 1 when it is row-local
        (the default), a fixed group for a permutation within groups of rows, None when it needs the whole tensor."""
        return 1

    def transform(self, hf_name: str, rows: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        """Per-tensor change of layout or value on the way to llama.cpp (identity by default).

        rows: a block of whole ``row_group``s of the tensor ``hf_name`` whose full shape is ``shape`` (the whole
        tensor when rows.shape == shape), as float32/float16; returns the block transformed, same shape.
        """
        return rows

    def extra_tensors(self) -> Iterator[tuple[str, np.ndarray]]:
        """Tensors llama.cpp wants that the checkpoint does not hold (small, computed from the config)."""
        return iter(())

    def f32_tensor(self, gguf_name: str, n_dims: int) -> bool:
        """Kept in F32 whatever the requested type: 1-D tensors (norms, biases) as llama.cpp's converter does."""
        return n_dims <= 1
