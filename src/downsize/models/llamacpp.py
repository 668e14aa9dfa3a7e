"""The one way downsize opens a GGUF in llama.cpp (llama-cpp-python) and reads its logits.

    >>> from downsize.export.gguf import export_gguf
    >>> _ = export_gguf("zoo:coder-teacher-qwen", "t.gguf", "F32")
    >>> llm = open_gguf("t.gguf", n_ctx=64)
    >>> ids = tokenize(llm, "def f(x):")
    >>> gguf_logits(llm, ids).shape[0] == len(ids)
    True

Every caller (the GGUF-vs-HF check, the quantization report, eval, speed, the llama.cpp teacher
backend) goes through ``open_gguf``, so they agree on how the context is sized, how threads are
chosen, which KV-cache type is used (``f32_kv`` for conversion checks: llama.cpp's default F16 cache
alone moves a trained model's logits by ~1e-2) and how a sequence is evaluated from a clean cache.
"""

from __future__ import annotations

import contextlib
import os

import numpy as np


def open_gguf(path: str | os.PathLike, n_ctx: int = 512, *, threads: int | None = None, f32_kv: bool = False,
              logits_all: bool = True, **kw):
    """A ``llama_cpp.Llama`` over ``path`` with its log output silenced; ``kw`` go to ``Llama`` (e.g. ``seed``)."""
    from downsize.errors import DownsizeError

    try:
        import llama_cpp
    except ImportError:
        raise DownsizeError("running a GGUF needs llama-cpp-python", hint="pip install 'downsize[llama]'") from None
    if f32_kv:
        kw.update(type_k=llama_cpp.GGML_TYPE_F32, type_v=llama_cpp.GGML_TYPE_F32)
    if threads:
        kw.update(n_threads=threads, n_threads_batch=threads)
    kw.setdefault("n_batch", min(n_ctx, 512))  # llama-cpp-python's default batch, never above the context
    with open(os.devnull, "w") as devnull, contextlib.redirect_stderr(devnull):
        return llama_cpp.Llama(str(path), n_ctx=n_ctx, logits_all=logits_all, verbose=False, **kw)


def tokenize(llm, text: str) -> list[int]:
    """llama.cpp's own tokenization of ``text`` (special tokens parsed, no BOS added)."""
    return llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)


def gguf_logits(llm, ids: list[int]) -> np.ndarray:
    """(T, V) float32 logits of llama.cpp for ``ids``, evaluated as one fresh sequence."""
    import llama_cpp

    llm.reset()
    llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(llm._ctx.ctx), True)  # reset() keeps the KV cache
    llm.eval(ids)
    return np.array(llm.scores[: len(ids)], dtype=np.float32)  # a copy: scores is overwritten by the next eval
