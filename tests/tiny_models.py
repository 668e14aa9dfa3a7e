"""Tiny random-init models for tests, importable from any test module or subprocess script (tests/ is on
sys.path under pytest; scripts add it): ``from tiny_models import make_tiny_model, save_tiny``.

    model = make_tiny_model("qwen2", tokenizer, seed=0, num_hidden_layers=3)
    save_tiny(model, tokenizer, tmp_path / "m")     # a loadable HF directory
"""

from __future__ import annotations

import torch

from downsize.models.arch import arch_configs, build_config

# Small enough to build in milliseconds, real enough for every code path (GQA, several layers).
TINY_SHAPES = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2, max_position_embeddings=256)
# The families pruning supports (a pruning adapter in their downsize.families module); each family's own tiny
# overrides come from its module (register_arch_config(..., tiny=...)).
TINY_FAMILIES = {key: arch_configs()[key].tiny for key in ("llama", "qwen2")}


def make_tiny_model(family: str, tokenizer, seed: int = 0, **overrides):
    from transformers import AutoModelForCausalLM

    fields = {**TINY_SHAPES, **arch_configs()[family].tiny, **overrides}
    fields.setdefault("vocab_size", len(tokenizer))  # more rows than tokens = a padded embedding, as Qwen2.5's
    cfg = build_config(family, tokenizer=tokenizer, **fields)
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)


def save_tiny(model, tokenizer, path):
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path
