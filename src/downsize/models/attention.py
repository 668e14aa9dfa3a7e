"""The attention that training uses on a CPU: PyTorch's SDPA, with its backward pass in fp32 under bf16.

On CPUs with native bf16 (avx512_bf16/AMX), bf16 matrix products run ~2.5x faster than fp32 ones, but PyTorch's
flash-attention kernel for the CPU is slower in bf16 than in fp32 once it has to run backwards. Measured with
torch 2.13 on one thread of an avx512_bf16 AMD EPYC, causal GQA attention at the distill benchmark student's shapes
(batch 8, 5 query heads, 1 KV head, 128 tokens, head dim 32): forward + backward 15.6 ms in bf16 against 5.6 ms in
fp32, while a forward alone is faster in bf16 (4.2 against 4.9 ms with 6 heads of dimension 64, the zoo teacher's). So while ``train``
runs, attention whose inputs need a gradient and would run in bf16 on a CPU is computed from fp32 copies of its
inputs, and its output is returned in bf16, as autocast would have given it (a llama-style query is fp32 after RoPE,
and autocast casts it to bf16 for SDPA). Every other call (a teacher's forward under ``no_grad``, GPUs, fp32
training) goes to SDPA unchanged.

    >>> import torch
    >>> from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
    >>> plain = ALL_ATTENTION_FUNCTIONS["sdpa"]
    >>> q = torch.randn(2, 4, 16, 8, dtype=torch.bfloat16, requires_grad=True)
    >>> with fp32_attention_backward():
    ...     out, _ = ALL_ATTENTION_FUNCTIONS["sdpa"](torch.nn.Module(), q, q, q, None, is_causal=True)
    >>> out.dtype, out.shape, ALL_ATTENTION_FUNCTIONS["sdpa"] is plain
    (torch.bfloat16, torch.Size([2, 16, 4, 8]), True)
"""

from __future__ import annotations

import threading
from contextlib import contextmanager

import torch

_lock = threading.Lock()
_depth = 0
_saved: list = []


def _bf16_on_cpu(query: torch.Tensor) -> bool:
    """Would SDPA run in bf16 here: bf16 inputs, or fp32 ones under a CPU autocast to bf16 (RoPE's fp32 cos/sin
    make a llama-style query fp32 even where its projection ran in bf16)."""
    if query.dtype == torch.bfloat16:
        return True
    return (query.dtype == torch.float32 and torch.is_autocast_enabled("cpu")
            and torch.get_autocast_dtype("cpu") == torch.bfloat16)


def _wrap(sdpa):
    def attention(module, query, key, value, attention_mask, *args, **kwargs):
        if query.requires_grad and query.device.type == "cpu" and _bf16_on_cpu(query):
            if attention_mask is not None and attention_mask.is_floating_point():
                attention_mask = attention_mask.float()
            with torch.autocast("cpu", enabled=False):  # autocast would cast them back to bf16
                out, weights = sdpa(module, query.float(), key.float(), value.float(), attention_mask, *args, **kwargs)
            return out.to(torch.bfloat16), weights
        return sdpa(module, query, key, value, attention_mask, *args, **kwargs)

    attention.__wrapped__ = sdpa
    return attention


@contextmanager
def fp32_attention_backward():
    """Within it, transformers' "sdpa" attention runs in fp32 where it needs a gradient on a CPU in bf16 (see the
    module's text). Re-entrant and thread-safe: the first entry installs it, the last exit restores SDPA."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS as funcs

    global _depth
    with _lock:
        if _depth == 0:
            local = "sdpa" in funcs._local_mapping
            _saved[:] = [local, funcs["sdpa"]]
            funcs["sdpa"] = _wrap(funcs["sdpa"])
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                local, plain = _saved
                if local:
                    funcs["sdpa"] = plain
                else:
                    del funcs["sdpa"]
