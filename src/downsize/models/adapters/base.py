"""The adapter interface and the shared Llama-style implementation (pre-norm decoder, GQA attention, GLU MLP).

Every hook takes the model or one decoder layer and returns modules, so callers edit weights in
place and then call the ``set_*`` hooks, which rewrite the matching config fields.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where weights are edited, so family modules load without it
    import torch
    from torch import nn


class Adapter:
    """Hooks for one family. Subclasses override what differs; the defaults describe Llama."""

    # config field names (keys are constants so callers never spell them)
    N_LAYERS = "num_hidden_layers"
    FFN = "intermediate_size"
    HEADS = "num_attention_heads"
    KV_HEADS = "num_key_value_heads"
    HIDDEN = "hidden_size"
    HEAD_DIM = "head_dim"
    # families whose norm computes (1 + w) or that scale embeddings would need overrides here
    has_qk_norm = False
    # llama.cpp builds some families' q and o projections as hidden x hidden, so there
    # heads * head_dim must stay equal to hidden_size for the model to load (Qwen2)
    attn_width_is_hidden = False
    # transformers' LlamaConfig.validate_architecture refuses hidden_size % num_attention_heads != 0 on save and load
    hidden_multiple_of_heads = False

    # -- structure -----------------------------------------------------------------------------
    def decoder(self, model) -> nn.Module:
        return model.model

    def layers(self, model) -> nn.ModuleList:
        return self.decoder(model).layers

    def attn(self, layer) -> nn.Module:
        return layer.self_attn

    def attn_projs(self, layer) -> tuple[nn.Linear, nn.Linear, nn.Linear, nn.Linear]:
        a = self.attn(layer)
        return a.q_proj, a.k_proj, a.v_proj, a.o_proj

    def mlp_projs(self, layer) -> tuple[nn.Linear, nn.Linear, nn.Linear]:
        m = layer.mlp
        return m.gate_proj, m.up_proj, m.down_proj

    def layer_norms(self, layer) -> list[nn.Module]:
        """Norms over the hidden size inside a decoder layer (input, post-attention)."""
        return [layer.input_layernorm, layer.post_attention_layernorm]

    def final_norm(self, model) -> nn.Module:
        return self.decoder(model).norm

    def embed(self, model) -> nn.Embedding:
        return model.get_input_embeddings()

    def lm_head(self, model) -> nn.Linear:
        return model.get_output_embeddings()

    def tied(self, model) -> bool:
        return bool(getattr(model.config, "tie_word_embeddings", False))

    def linears(self, layer) -> dict[str, nn.Linear]:
        """Every prunable linear of a decoder layer by its short name."""
        q, k, v, o = self.attn_projs(layer)
        g, u, d = self.mlp_projs(layer)
        return {"q_proj": q, "k_proj": k, "v_proj": v, "o_proj": o, "gate_proj": g, "up_proj": u, "down_proj": d}

    # -- sizes ---------------------------------------------------------------------------------
    def num_layers(self, config) -> int:
        return getattr(config, self.N_LAYERS)

    def ffn(self, config) -> int:
        return getattr(config, self.FFN)

    def heads(self, config) -> int:
        return getattr(config, self.HEADS)

    def kv_heads(self, config) -> int:
        return getattr(config, self.KV_HEADS, None) or self.heads(config)

    def hidden(self, config) -> int:
        return getattr(config, self.HIDDEN)

    def head_dim(self, config) -> int:
        return getattr(config, self.HEAD_DIM, None) or self.hidden(config) // self.heads(config)

    # -- config rewrites -----------------------------------------------------------------------
    def pin_head_dim(self, model) -> None:
        """Write head_dim explicitly: once heads or hidden change it is no longer hidden // heads."""
        setattr(model.config, self.HEAD_DIM, self.head_dim(model.config))
        for layer in self.layers(model):
            self.attn(layer).head_dim = model.config.head_dim

    def set_layers(self, model, keep: list[int]) -> None:
        """Keep decoder layers ``keep`` (in order); renumber their cache indices; rewrite per-layer config lists."""
        from torch import nn

        old = self.layers(model)
        new = nn.ModuleList([old[i] for i in keep])
        for new_idx, layer in enumerate(new):
            self.set_layer_index(layer, new_idx)
        self.decoder(model).layers = new
        cfg = model.config
        lists = self.per_layer_config_lists(cfg)  # before the count changes: they are found by their length
        setattr(cfg, self.N_LAYERS, len(keep))
        for key in lists:
            setattr(cfg, key, [getattr(cfg, key)[i] for i in keep])

    def set_layer_index(self, layer, idx: int) -> None:
        self.attn(layer).layer_idx = idx
        if hasattr(layer, "layer_idx"):
            layer.layer_idx = idx

    def per_layer_config_lists(self, config) -> list[str]:
        n = self.num_layers(config)
        return [k for k in ("layer_types",) if isinstance(getattr(config, k, None), list) and len(getattr(config, k)) == n]

    def set_ffn(self, model, size: int) -> None:
        setattr(model.config, self.FFN, size)
        for layer in self.layers(model):
            layer.mlp.intermediate_size = size

    def set_heads(self, model, heads: int, kv_heads: int) -> None:
        cfg = model.config
        setattr(cfg, self.HEADS, heads)
        setattr(cfg, self.KV_HEADS, kv_heads)
        for layer in self.layers(model):
            a = self.attn(layer)
            a.num_key_value_groups = heads // kv_heads
            for name, val in (("num_heads", heads), ("num_key_value_heads", kv_heads)):
                if hasattr(a, name):
                    setattr(a, name, val)

    def set_hidden(self, model, size: int) -> None:
        setattr(model.config, self.HIDDEN, size)
        for layer in self.layers(model):
            if hasattr(layer, "hidden_size"):
                layer.hidden_size = size
            if hasattr(layer.mlp, "hidden_size"):
                layer.mlp.hidden_size = size

    def set_vocab_tie(self, model) -> None:
        """Re-tie the LM head to the embedding after both were replaced."""
        if self.tied(model):
            self.lm_head(model).weight = self.embed(model).weight


class LlamaLikeAdapter(Adapter):
    """Llama, Mistral, Qwen2, Qwen3: RMSNorm pre-norm blocks, RoPE GQA attention, SiLU-gated MLP."""


def slice_linear(lin: nn.Linear, out_idx: torch.Tensor | None = None, in_idx: torch.Tensor | None = None) -> nn.Linear:
    """Keep rows ``out_idx`` and columns ``in_idx`` of a linear layer, in place (bias follows the rows)."""
    from torch import nn

    w = lin.weight.data
    if out_idx is not None:
        w = w.index_select(0, out_idx.to(w.device))
        if lin.bias is not None:
            lin.bias = nn.Parameter(lin.bias.data.index_select(0, out_idx.to(w.device)).clone())
        lin.out_features = w.shape[0]
    if in_idx is not None:
        w = w.index_select(1, in_idx.to(w.device))
        lin.in_features = w.shape[1]
    lin.weight = nn.Parameter(w.contiguous().clone())
    return lin
