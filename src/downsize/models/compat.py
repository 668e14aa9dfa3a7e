"""The few places where transformers 5.x versions differ in a way downsize touches.

    >>> import torch
    >>> from downsize.models.refs import load_model
    >>> model, tok = load_model("zoo:coder-teacher-qwen")
    >>> ids = torch.tensor([tok("def add(a, b):")["input_ids"]])
    >>> out = model(input_ids=ids, use_cache=True)
    >>> past = kv_cache(out)                                            # the cache, whatever the version calls it
    >>> nxt = out.logits[:, -1:].argmax(-1)
    >>> out = model(input_ids=nxt, **{CACHE_ARG: past}, use_cache=True)
    >>> out.logits.shape[1], kv_cache(out).get_seq_length() == ids.shape[1] + 1
    (1, True)

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
