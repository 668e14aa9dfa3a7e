"""Hugging Face → GGUF export, our own converter on the ``gguf`` package (one module per family, in downsize.families).

    >>> r = export_gguf("zoo:coder-teacher-qwen", "teacher-f32.gguf", quant="F32")      # direct: no llama.cpp needed
    >>> r.arch, r.quant, r.n_params
    ('qwen2', 'F32', 4198656)
    >>> r = export_gguf("zoo:coder-teacher-qwen", "teacher-q4_k_m.gguf", quant="Q4_K_M")   # F32, then llama.cpp quantizes
    >>> r.quant, r.nbytes < 4 * r.n_params / 2
    ('Q4_K_M', True)

F32/F16/BF16/Q8_0 are written directly, streaming a block of rows at a time in numpy, without importing torch
or transformers (convert.py); the other types (Q4_0, the K-quants, IQ4) are made by llama.cpp's own quantizer
from an F32/F16/BF16 intermediate. Output is atomic: on any error no partial file is left.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

# Families register themselves from their own modules (downsize.families), loaded on first use.
from downsize.export.gguf.base import FAMILIES, Family, family_for, register_family
from downsize.export.gguf.convert import DIRECT_TYPES, ConvertResult, convert_checkpoint
from downsize.export.gguf.vocab import KNOWN_PRETOKENIZERS, detect_pretokenizer

__all__ = ["export_gguf", "FAMILIES", "Family", "family_for", "register_family", "DIRECT_TYPES", "ConvertResult",
           "KNOWN_PRETOKENIZERS", "detect_pretokenizer"]


def _intermediate_type(root: Path) -> str:
    """The lossless (or nearly) base for llama.cpp's quantizer: the checkpoint's own float type."""
    import json

    cfg = json.loads((root / "config.json").read_text())
    dtype = str(cfg.get("dtype") or cfg.get("torch_dtype") or "float32")
    return {"float16": "F16", "bfloat16": "BF16"}.get(dtype, "F32")


def export_gguf(model: str | os.PathLike, out: str | os.PathLike, quant: str = "F16", *,
                imatrix: str | os.PathLike | None = None, progress: Callable[[str], None] | None = None,
                rescale: bool = True, overwrite: bool = False) -> ConvertResult:
    """Export a model reference (HF folder, zoo:NAME) to ``out`` as GGUF of type ``quant``; atomic.

    ``out`` must be new or a GGUF downsize wrote unless ``overwrite`` (downsize.io.check_output).

    ``imatrix`` (a llama.cpp imatrix GGUF, see export.imatrix) guides the low-bit quant types. ``rescale``
    undoes the shrinkage of llama.cpp's block fits on the types it quantizes (export.rescale).
    """
    from downsize.errors import DownsizeError
    from downsize.export.quantize import QUANT_TYPES, quantize_gguf
    from downsize.io import KIND_GGUF, atomic_path, check_output
    from downsize.models.checks import check_checkpoint
    from downsize.models.refs import resolve_model

    quant = quant.upper()
    if quant not in DIRECT_TYPES and quant not in QUANT_TYPES:
        raise DownsizeError(f"unknown quant type {quant!r}",
                            hint=f"choose one of {', '.join([*DIRECT_TYPES, *[q for q in QUANT_TYPES if q not in DIRECT_TYPES]])}")
    ref = resolve_model(model)
    out = Path(out)
    check_output(out, KIND_GGUF, overwrite)
    if not ref.is_gguf:
        check_checkpoint(ref.path)  # the same checks and messages as every other command that loads it
    if ref.is_gguf:
        if quant in DIRECT_TYPES and quant not in QUANT_TYPES:
            raise DownsizeError(f"{ref.path} is already a GGUF file", hint="use `downsize quantize` to change its type")
        r = quantize_gguf(ref.path, out, quant, imatrix=imatrix, rescale=rescale, overwrite=overwrite)
        return ConvertResult(out, r["arch"], quant, r["n_tensors"], r["n_params"], out.stat().st_size, r["seconds"], {},
                             r["rescale"])
    if quant in DIRECT_TYPES and imatrix is None:
        with atomic_path(out, KIND_GGUF, overwrite) as tmp:
            res = convert_checkpoint(ref.path, tmp, quant, progress)
        return ConvertResult(out, res.arch, res.quant, res.n_tensors, res.n_params, out.stat().st_size, res.seconds,
                             res.tokenizer)
    base = _intermediate_type(ref.path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.", dir=out.parent) as d:
        mid = Path(d) / f"base-{base.lower()}.gguf"
        res = convert_checkpoint(ref.path, mid, base, progress)
        r = quantize_gguf(mid, out, quant, imatrix=imatrix, rescale=rescale, overwrite=overwrite)  # atomic itself
    return ConvertResult(out, res.arch, quant, res.n_tensors, res.n_params, out.stat().st_size,
                         res.seconds + r["seconds"], res.tokenizer, r["rescale"])
