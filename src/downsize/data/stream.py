"""The one token stream of a data reference, used by distillation, eval, pruning calibration, the importance
matrix and zoo training alike.

    >>> from pathlib import Path
    >>> from downsize.models.refs import load_tokenizer
    >>> tok = load_tokenizer("zoo:coder-teacher-qwen")
    >>> Path("notes").mkdir(); _ = Path("notes/a.txt").write_text("hello world" * 10)
    >>> split_for("zoo:stdlib", "train"), split_for("zoo:stdlib", "eval"), split_for("notes/", "eval")
    ('train', 'validation', 'all')
    >>> stream = token_stream(tok, "notes/", purpose="eval")           # a folder of text: all of it
    >>> stream.dtype, int(stream[-1]) == tok.eos_token_id              # np.uint32 (N,), EOS after each document
    (dtype('uint32'), True)

Which split a purpose reads is decided here, once: data with splits (``zoo:stdlib``) is read from its
``train`` split to train or calibrate and from ``validation`` to evaluate; data without splits is read
whole. An explicit ``split`` wins. Documents that are only whitespace are skipped. Streams are cached
on disk per (data, split, tokenizer), keyed by the data's identity (the corpus fingerprint, or the
path with its size and mtime), so a second stage over the same data does not tokenize it again.
"""

from __future__ import annotations

import hashlib

import numpy as np

from downsize.data.packing import cached_stream
from downsize.data.refs import ALL, resolve_data

PURPOSES = {"train": "train", "calib": "train", "eval": "validation"}


def split_for(data_ref: str, purpose: str, split: str | None = None) -> str:
    """The split ``purpose`` reads from ``data_ref`` (``split`` when given)."""
    if split:
        return split
    if purpose not in PURPOSES:
        raise ValueError(f"purpose must be one of {', '.join(PURPOSES)}, got {purpose!r}")
    return PURPOSES[purpose] if resolve_data(data_ref).kind == "stdlib" else ALL


def token_stream(tokenizer, data_ref: str, purpose: str = "train", split: str | None = None) -> np.ndarray:
    """Token ids of the documents of ``data_ref`` (each followed by EOS), cached on disk."""
    ref = resolve_data(data_ref)
    split = split_for(data_ref, purpose, split)
    if ref.kind == "stdlib":
        from downsize.data.stdlib import StdlibCorpus

        corpus = StdlibCorpus.local()
        key = f"stdlib-{corpus.fingerprint[:16]}-{split}"
        return cached_stream(tokenizer, key, lambda: (t for _, t in corpus.documents(split)))
    h = hashlib.sha256(f"{ref.fingerprint}|{split}".encode())  # a Hub dataset: its datasets fingerprints
    if ref.path is not None:
        files = sorted(p for p in ref.path.rglob("*") if p.is_file()) if ref.path.is_dir() else [ref.path]
        for f in files:  # a folder's identity is every file in it, not the folder's own mtime
            st = f.stat()
            h.update(f"{f}|{st.st_size}|{st.st_mtime_ns}".encode())
    key = "data2-" + h.hexdigest()[:16]
    return cached_stream(tokenizer, key, lambda: (t for t in ref.texts(split, tokenizer) if t.strip()))
