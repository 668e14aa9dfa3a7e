"""Tokenise documents into one stream and cut it into fixed-length training windows.

    >>> from downsize.models.refs import load_tokenizer
    >>> tok = load_tokenizer("zoo:coder-teacher-qwen")
    >>> stream = tokenize_documents(tok, ["def f(x): return x"] * 50)   # np.uint32 (N,), EOS after each document
    >>> stream.dtype, int(stream[-1]) == tok.eos_token_id
    (dtype('uint32'), True)
    >>> ds = PackedDataset(stream, seq_len=16, seed=0)
    >>> b = ds.batch(step=3, batch_size=4)
    >>> b["input_ids"].shape                          # (B, T)
    torch.Size([4, 16])
    >>> bool((ds.batch(step=3, batch_size=4)["input_ids"] == b["input_ids"]).all())   # the same batch for the same step
    True

The order of windows is a seeded permutation per epoch, so batch ``i`` is a pure function of
``i``: resuming at step ``i`` is exact without saving any iterator state.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from downsize.errors import DownsizeError
from downsize.io import atomic_path


def tokenize_documents(tokenizer, docs: Iterable[str], batch: int = 256) -> np.ndarray:
    """Encode documents with no special tokens and an EOS after each; returns a uint32 stream."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no eos_token; packing needs one to separate documents")
    out: list[np.ndarray] = []
    buf: list[str] = []

    def flush():
        enc = tokenizer(buf, add_special_tokens=False)["input_ids"]
        for ids in enc:
            out.append(np.asarray(ids + [eos], dtype=np.uint32))
        buf.clear()

    for d in docs:
        buf.append(d)
        if len(buf) >= batch:
            flush()
    if buf:
        flush()
    return np.concatenate(out) if out else np.zeros(0, dtype=np.uint32)


def cache_dir() -> Path:
    return Path(os.environ.get("DOWNSIZE_CACHE", Path.home() / ".cache" / "downsize"))


def tokenizer_fingerprint(tokenizer) -> str:
    return hashlib.sha256(tokenizer.backend_tokenizer.to_str().encode()).hexdigest()[:16]


def cached_stream(tokenizer, key: str, docs_fn) -> np.ndarray:
    """Token stream for ``docs_fn()``, cached on disk under a key plus the tokenizer's fingerprint."""
    path = cache_dir() / "tokens" / f"{key}-{tokenizer_fingerprint(tokenizer)}.npy"
    if path.exists():
        return np.load(path, mmap_mode="r")
    stream = tokenize_documents(tokenizer, docs_fn())
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, stream)
    return np.load(path, mmap_mode="r")


class WindowSchedule:
    """Which windows batch ``step`` holds: a seeded permutation of the windows per epoch, so a batch is a pure
    function of (seed, step, rank, world) and resuming at a step is exact. Shared by every dataset of windows
    (packed token streams, offline teacher caches), so the same seed gives the same batches in both."""

    def __init__(self, n_windows: int, seed: int = 0):
        self.n_windows = n_windows
        self.seed = seed

    def order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.n_windows)

    def windows(self, step: int, batch_size: int, rank: int = 0, world: int = 1) -> list[int]:
        """Window indices of batch ``step`` for process ``rank`` of ``world`` (the global batch is batch_size * world)."""
        first = (step * world + rank) * batch_size
        epoch = first // self.n_windows
        order = self.order(epoch)
        out = []
        for s in range(first, first + batch_size):
            e, i = divmod(s, self.n_windows)
            if e != epoch:
                epoch, order = e, self.order(e)
            out.append(int(order[i]))
        return out


class PackedDataset:
    """Non-overlapping windows of ``seq_len`` tokens (+1 for the shifted label) over a token stream."""

    def __init__(self, stream: np.ndarray, seq_len: int, seed: int = 0):
        self.stream = stream
        self.seq_len = seq_len
        self.seed = seed
        self.n_windows = (len(stream) - 1) // seq_len
        if self.n_windows < 1:
            raise DownsizeError(f"the data has {len(stream)} tokens, fewer than one window of {seq_len + 1}",
                                hint="give more text (an empty or whitespace-only file has none), or lower --seq-len")
        self.schedule = WindowSchedule(self.n_windows, seed)

    def batch(self, step: int, batch_size: int, rank: int = 0, world: int = 1) -> dict[str, torch.Tensor]:
        """Batch ``step`` for process ``rank`` of ``world``: the global batch is batch_size * world."""
        rows = [np.asarray(self.stream[w * self.seq_len: w * self.seq_len + self.seq_len], dtype=np.int64)
                for w in self.schedule.windows(step, batch_size, rank, world)]
        ids = torch.from_numpy(np.stack(rows))  # (B, T)
        return {"input_ids": ids, "labels": ids.clone()}
