"""Model families, one module each: everything downsize knows about a family lives in its file.

    >>> from downsize.families import load_families
    >>> load_families()
    >>> from downsize.export.gguf.base import FAMILIES
    >>> "Qwen2ForCausalLM" in FAMILIES
    True

A family module holds its GGUF conversion (a ``Family`` subclass registered by HF architecture name, and
the transformers config defaults of its model types), its pruning adapter (``@register_adapter``), and
the config downsize builds for it (``register_arch_config``, with the overrides of its tiny test model,
which the tests pick up). A new family is one new module in this package: every module here is loaded.
"""

from __future__ import annotations

import importlib
import pkgutil

_loaded = False


def load_families() -> None:
    """Import every family module once (registration happens on import)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
