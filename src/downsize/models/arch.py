"""Architecture families downsize builds configs for (zoo training, random-init students, tests).

    >>> cfg = build_config("qwen2", vocab_size=4096, hidden_size=256, num_hidden_layers=4)
    >>> AutoModelForCausalLM.from_config(cfg)
"""

from __future__ import annotations

from typing import Callable

from transformers import AutoConfig, PretrainedConfig

ConfigBuilder = Callable[..., PretrainedConfig]
ARCH_CONFIGS: dict[str, tuple[str, str]] = {}  # arch key -> (model_type, architectures[0])


def register_arch_config(key: str, model_type: str, architecture: str) -> None:
    if key in ARCH_CONFIGS:
        raise ValueError(f"architecture {key!r} is registered twice")
    ARCH_CONFIGS[key] = (model_type, architecture)


register_arch_config("llama", "llama", "LlamaForCausalLM")
register_arch_config("mistral", "mistral", "MistralForCausalLM")
register_arch_config("qwen2", "qwen2", "Qwen2ForCausalLM")
register_arch_config("qwen3", "qwen3", "Qwen3ForCausalLM")
register_arch_config("gemma2", "gemma2", "Gemma2ForCausalLM")
register_arch_config("gemma3", "gemma3_text", "Gemma3ForCausalLM")
register_arch_config("phi3", "phi3", "Phi3ForCausalLM")


def build_config(arch: str, vocab_size: int, tokenizer=None, **fields) -> PretrainedConfig:
    """A config of family ``arch`` with the given fields; special-token ids are taken from ``tokenizer``."""
    if arch not in ARCH_CONFIGS:
        raise KeyError(f"unknown architecture {arch!r}; available: {', '.join(sorted(ARCH_CONFIGS))}")
    model_type, architecture = ARCH_CONFIGS[arch]
    if tokenizer is not None:
        fields.setdefault("eos_token_id", tokenizer.eos_token_id)
        fields.setdefault("bos_token_id", tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id)
        fields.setdefault("pad_token_id", tokenizer.pad_token_id)
    cfg = AutoConfig.for_model(model_type, vocab_size=vocab_size, **fields)
    cfg.architectures = [architecture]
    return cfg
