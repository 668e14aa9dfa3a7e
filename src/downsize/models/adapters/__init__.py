"""Architecture adapters: the few hooks pruning (and anything else that edits a model) needs, one module per family.

    >>> from downsize.models.refs import load_model
    >>> model, tok = load_model("zoo:coder-teacher-qwen")
    >>> ad = adapter_for(model)                      # looks up model.config.architectures[0]
    >>> q, k, v, o = ad.attn_projs(ad.layers(model)[0])        # nn.Linear each
    >>> gate, up, down = ad.mlp_projs(ad.layers(model)[0])
    >>> q.out_features, k.out_features, up.out_features
    (256, 128, 768)
    >>> ad.set_layers(model, keep=[0, 3])              # config fields rewritten with the module list
    >>> len(ad.layers(model)), ad.num_layers(model.config), ad.ffn(model.config), ad.kv_heads(model.config)
    (2, 2, 768, 2)

A family's adapter lives in its family module (``downsize.families.X``): a subclass of ``Adapter``
(or ``LlamaLikeAdapter``) registered with ``@register_adapter("XForCausalLM")``.
"""

from __future__ import annotations

from typing import Callable

from downsize.errors import DownsizeError
from downsize.registry import Registry
from downsize.models.adapters.base import Adapter, LlamaLikeAdapter

ADAPTERS: Registry[Adapter] = Registry("model adapter", Adapter)


def register_adapter(*architectures: str) -> Callable[[type[Adapter]], type[Adapter]]:
    """Class decorator: register one adapter instance under each HF architecture name."""

    def wrap(cls: type[Adapter]) -> type[Adapter]:
        for arch in architectures:
            ADAPTERS.add(arch, cls())
        return cls

    return wrap


def architecture_of(model_or_config) -> str:
    cfg = getattr(model_or_config, "config", model_or_config)
    archs = getattr(cfg, "architectures", None) or [type(model_or_config).__name__]
    return archs[0]


def adapter_for(model_or_config) -> Adapter:
    """The adapter of a model (or config); an unsupported family raises ``DownsizeError`` listing the supported ones."""
    from downsize.families import load_families

    load_families()
    arch = architecture_of(model_or_config)
    if arch not in ADAPTERS:
        raise DownsizeError(f"the architecture {arch!r} has no adapter, so it cannot be pruned or edited",
                            hint=f"supported: {', '.join(sorted(ADAPTERS))}; a family is one file in "
                                 "downsize/families/")
    return ADAPTERS[arch]


__all__ = ["ADAPTERS", "Adapter", "LlamaLikeAdapter", "adapter_for", "architecture_of", "register_adapter"]
