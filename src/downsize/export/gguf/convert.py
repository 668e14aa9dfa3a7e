"""The streaming HF → GGUF writer: plan every tensor from the safetensors headers, write the header, then
read, transform, convert and write one tensor at a time. Peak memory is about the largest tensor (in F32).

    >>> result = convert_checkpoint(Path("model_dir"), Path("out.gguf"), "F16")
"""

from __future__ import annotations

import logging
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import gguf
import numpy as np
import torch
from transformers import AutoConfig

from downsize.errors import DownsizeError
from downsize.export.gguf.base import Family, family_for
from downsize.export.gguf.source import Checkpoint
from downsize.export.gguf.vocab import write_tokenizer

log = logging.getLogger(__name__)

Q = gguf.GGMLQuantizationType
# Types the converter writes itself (everything else goes through llama.cpp's quantizer; see export/quantize.py).
DIRECT_TYPES: dict[str, tuple[Q, gguf.LlamaFileType]] = {
    "F32": (Q.F32, gguf.LlamaFileType.ALL_F32),
    "F16": (Q.F16, gguf.LlamaFileType.MOSTLY_F16),
    "BF16": (Q.BF16, gguf.LlamaFileType.MOSTLY_BF16),
    "Q8_0": (Q.Q8_0, gguf.LlamaFileType.MOSTLY_Q8_0),
}


@dataclass(frozen=True)
class PlannedTensor:
    hf_name: str | None  # None for tensors computed from the config
    gguf_name: str
    shape: tuple[int, ...]  # numpy order (rows, cols)
    qtype: Q
    nbytes: int
    data: np.ndarray | None = None  # only for computed tensors


@dataclass(frozen=True)
class ConvertResult:
    path: Path
    arch: str
    quant: str
    n_tensors: int
    n_params: int
    nbytes: int
    seconds: float
    tokenizer: dict


def _pick_type(family: Family, gguf_name: str, shape: tuple[int, ...], want: Q) -> Q:
    if family.f32_tensor(gguf_name, len(shape)):
        return Q.F32
    block, _ = gguf.GGML_QUANT_SIZES[want]
    if shape[-1] % block:
        return Q.F16  # a row that does not fill whole blocks cannot be quantized (llama.cpp falls back the same way)
    return want


def _nbytes(shape: tuple[int, ...], qtype: Q) -> int:
    return int(math.prod(gguf.quant_shape_to_byte_shape(shape, qtype))) if qtype not in (Q.F32, Q.F16) else \
        int(math.prod(shape)) * (4 if qtype == Q.F32 else 2)


def _encode(t: torch.Tensor, qtype: Q) -> np.ndarray:
    # F32/F16 are cast by torch straight from the source dtype (no float32 intermediate for bf16 -> f16, and
    # torch's vectorised casts are several times faster than numpy's float16 conversion).
    if qtype == Q.F32:
        return np.ascontiguousarray(t.to(torch.float32).numpy())
    if qtype == Q.F16:
        return np.ascontiguousarray(t.to(torch.float16).numpy())
    return gguf.quants.quantize(t.to(torch.float32).numpy(), qtype)


def safe_model_name(name: str) -> str:
    """general.name, minus the substrings llama.cpp keys tokenizer hacks on (a name containing "phi3" makes it
    look up SentencePiece tokens like "</s>" and change special-token stripping, breaking byte-level BPE vocabs)."""
    return re.sub(r"(?i)phi-?3", "phi_3", name)


def load_config(root: Path):
    if not (root / "config.json").exists():
        raise DownsizeError(f"{root} has no config.json", hint="point at a Hugging Face model folder")
    try:
        return AutoConfig.from_pretrained(str(root), trust_remote_code=False)
    except (ValueError, KeyError, OSError) as e:
        raise DownsizeError(f"cannot read {root / 'config.json'}: {e}",
                            hint="the exporter supports transformers' built-in architectures only (trust_remote_code is off)") from None


def plan_tensors(family: Family, ckpt: Checkpoint, want: Q) -> list[PlannedTensor]:
    plan: list[PlannedTensor] = []
    for hf_name in ckpt.names():
        name = family.tensor_name(hf_name)
        if name is None:
            continue
        shape = ckpt.tensors[hf_name].shape
        qt = _pick_type(family, name, shape, want)
        plan.append(PlannedTensor(hf_name, name, shape, qt, _nbytes(shape, qt)))
    for name, data in family.extra_tensors():
        plan.append(PlannedTensor(None, name, tuple(data.shape), Q.F32, data.nbytes, data))
    names = [p.gguf_name for p in plan]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise DownsizeError(f"two checkpoint tensors map to the same GGUF tensor: {', '.join(dup[:5])}",
                            hint="the checkpoint holds duplicate weights; re-save it with save_pretrained")
    if family.tied is False and "output.weight" not in names and "token_embd.weight" in names:
        log.info("no lm_head in the checkpoint: llama.cpp will reuse token_embd as the output layer")
    return plan


def convert_checkpoint(root: Path, out_tmp: Path, quant: str, progress: Callable[[str], None] | None = None) -> ConvertResult:
    """Write ``root`` (an HF folder) as GGUF type ``quant`` (one of DIRECT_TYPES) to ``out_tmp`` (not atomic itself)."""
    if quant not in DIRECT_TYPES:
        raise DownsizeError(f"the converter writes {', '.join(DIRECT_TYPES)} directly, not {quant}",
                            hint="other types are made by llama.cpp's quantizer from an F32/F16 export (export_gguf does this)")
    t0 = time.perf_counter()
    cfg = load_config(root)
    family = family_for(cfg)
    ckpt = Checkpoint.open(root)
    want, ftype = DIRECT_TYPES[quant]
    plan = plan_tensors(family, ckpt, want)

    w = gguf.GGUFWriter(None, family.arch_name)
    w.add_name(safe_model_name(root.name))
    w.add_type(gguf.GGUFType.MODEL)
    family.write_hparams(w)
    w.add_file_type(ftype)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    tok_info = write_tokenizer(w, root, cfg)
    for p in plan:
        w.add_tensor_info(p.gguf_name, p.shape, np.float32, p.nbytes, raw_dtype=p.qtype)
    w.write_header_to_file(out_tmp)
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    n_params = 0
    try:
        for i, p in enumerate(plan):
            if p.data is not None:
                arr = p.data
            else:
                t = family.transform(p.hf_name, ckpt.get(p.hf_name))
                arr = _encode(t, p.qtype)
                del t
            if arr.nbytes != p.nbytes:
                raise RuntimeError(f"{p.gguf_name}: planned {p.nbytes} bytes, encoded {arr.nbytes}")
            w.write_tensor_data(arr)
            n_params += math.prod(p.shape)
            del arr
            if progress:
                progress(f"[{i + 1}/{len(plan)}] {p.gguf_name} {p.qtype.name} {p.shape}")
    finally:
        w.close()
        ckpt.close()
    return ConvertResult(out_tmp, family.arch_name, quant, len(plan), n_params, out_tmp.stat().st_size,
                         time.perf_counter() - t0, tok_info)
