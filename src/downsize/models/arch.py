"""Architecture families downsize builds configs for (zoo training, random-init students, tests).

    >>> cfg = build_config("qwen2", vocab_size=4096, hidden_size=256, num_hidden_layers=4)
    >>> AutoModelForCausalLM.from_config(cfg)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from downsize.registry import Registry

if TYPE_CHECKING:
    from transformers import PretrainedConfig

@dataclass(frozen=True)
class ArchConfig:
    model_type: str
    architecture: str  # config.architectures[0]
    tiny: dict = field(default_factory=dict)  # overrides of this family's tiny test model (tests/tiny_models.py)


ARCH_CONFIGS: Registry[ArchConfig] = Registry("architecture", ArchConfig)


def register_arch_config(key: str, model_type: str, architecture: str, tiny: dict | None = None) -> None:
    """Called by each family module (downsize.families)."""
    ARCH_CONFIGS.add(key, ArchConfig(model_type, architecture, dict(tiny or {})))


def arch_configs() -> Registry[ArchConfig]:
    from downsize.families import load_families

    load_families()
    return ARCH_CONFIGS


def build_config(arch: str, vocab_size: int, tokenizer=None, **fields) -> PretrainedConfig:
    """A config of family ``arch`` with the given fields; special-token ids are taken from ``tokenizer``."""
    from transformers import AutoConfig

    spec = arch_configs()[arch]
    model_type, architecture = spec.model_type, spec.architecture
    if tokenizer is not None:
        fields.setdefault("eos_token_id", tokenizer.eos_token_id)
        fields.setdefault("bos_token_id", tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id)
        fields.setdefault("pad_token_id", tokenizer.pad_token_id)
    cfg = AutoConfig.for_model(model_type, vocab_size=vocab_size, **fields)
    cfg.architectures = [architecture]
    return cfg


def params_from_config(cfg: dict) -> int:
    """Parameter count of a decoder-only transformer from its config.json fields (no weights read)."""
    h, layers, vocab = cfg.get("hidden_size", 0), cfg.get("num_hidden_layers", 0), cfg.get("vocab_size", 0)
    ff = cfg.get("intermediate_size", 0)
    heads = cfg.get("num_attention_heads", 1) or 1
    kv = cfg.get("num_key_value_heads", heads) or heads
    head_dim = cfg.get("head_dim") or (h // heads if heads else 0)
    attn = h * heads * head_dim * 2 + h * kv * head_dim * 2  # q, o and k, v
    mlp = 3 * h * ff  # gate, up, down
    embed = vocab * h * (1 if cfg.get("tie_word_embeddings") else 2)
    return layers * (attn + mlp + 2 * h) + embed + h


def config_params(ref: str) -> int:
    """Parameters of a model reference from its config alone; 0 when it cannot be read here."""
    import json

    from downsize.errors import DownsizeError
    from downsize.models.refs import resolve_model

    try:
        m = resolve_model(ref)
        return 0 if m.is_gguf else params_from_config(json.loads((m.path / "config.json").read_text()))
    except (DownsizeError, OSError, ValueError):
        return 0
