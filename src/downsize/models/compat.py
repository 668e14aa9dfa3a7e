"""The few places where transformers 5.x versions differ in a way downsize touches.

    >>> out = model(input_ids=ids, **{CACHE_ARG: past}, use_cache=True)
    >>> past = kv_cache(out)

transformers renamed the KV-cache argument and output field from ``past_key_values`` to ``cache``; the old names
are deprecated (a warning on every call) and are announced to go away in 5.40, while the releases before the
rename only know the old ones. Both names are looked up once, from the installed version.
"""

from __future__ import annotations

import inspect

from transformers import LlamaForCausalLM

CACHE_ARG = "cache" if "cache" in inspect.signature(LlamaForCausalLM.forward).parameters else "past_key_values"


def kv_cache(output):
    """The KV cache of a model output, under whichever name this transformers uses."""
    return getattr(output, CACHE_ARG)
