"""Architecture families downsize builds configs for (zoo training, random-init students, tests).

    >>> from transformers import AutoModelForCausalLM
    >>> cfg = build_config("qwen2", vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
    ...                    num_attention_heads=4, num_key_value_heads=2)
    >>> cfg.architectures, cfg.num_hidden_layers
    (['Qwen2ForCausalLM'], 2)
    >>> sum(p.numel() for p in AutoModelForCausalLM.from_config(cfg).parameters())   # a random-init student
    139840
    >>> sorted(arch_configs())
    ['gemma2', 'gemma3', 'llama', 'mistral', 'phi3', 'qwen2', 'qwen3']
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



def config_params(ref: str) -> int:
    """Parameters of a model reference from its config alone (a Hub id needs only config.json); 0 when unreadable."""
    from downsize.errors import DownsizeError
    from downsize.models.memory import ModelShape
    from downsize.models.refs import model_config

    try:
        return ModelShape.from_config(model_config(ref)).params
    except (DownsizeError, OSError, ValueError, KeyError):
        return 0
