"""The streaming HF → GGUF writer: plan every tensor from the safetensors headers, write the header, then
read, transform, convert and write each tensor a block of rows at a time, in numpy (no torch, no transformers).

Working memory is a block of at most ``block_bytes`` (16 MiB of float32 by default) and its encoded copy,
whatever the tensor size: a 152064 x 5120 embedding streams in 16 MiB pieces instead of 3 GiB of float32. A
family transform that must see several rows together (Llama's q/k permutation: the rows of one head) gets whole
groups; one that needs the whole tensor (``row_group`` None) gets the whole tensor. Q8_0 quantizes 32-value blocks
within a row, so it streams too. The file is byte-identical whatever the block size.

    >>> from pathlib import Path
    >>> from downsize.models.refs import resolve_model
    >>> result = convert_checkpoint(resolve_model("zoo:coder-teacher-qwen").path, Path("out.gguf"), "F16")
    >>> result.arch, result.n_tensors, result.nbytes == Path("out.gguf").stat().st_size
    ('qwen2', 50, True)
"""

from __future__ import annotations

import logging
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable

import gguf
import numpy as np

from downsize.errors import DownsizeError
from downsize.export.gguf.base import Family, check_architecture, family_for
from downsize.export.gguf.config import HFConfig
from downsize.export.gguf.config import load_config as _load_config
from downsize.export.gguf.source import Checkpoint, to_float
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
    rescale: dict | None = None  # row-rescale statistics when llama.cpp quantized it (export.rescale)


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


# float32 bytes per block of rows converted at once; bounds the working set whatever the tensor size.
BLOCK_BYTES = 16 << 20


def _encode(x: np.ndarray, qtype: Q) -> np.ndarray:
    """Float rows (float32, or float16/float64 as stored) -> the bytes of ``qtype`` (IEEE round-to-nearest-even casts;
    BF16 and Q8_0 by gguf's reference quantizers, as before)."""
    if qtype == Q.F32:
        return np.ascontiguousarray(x, dtype=np.float32)
    if qtype == Q.F16:
        return np.ascontiguousarray(x, dtype=np.float16)
    return gguf.quants.quantize(np.asarray(x, dtype=np.float32), qtype)


def safe_model_name(name: str) -> str:
    """general.name, minus the substrings llama.cpp keys tokenizer hacks on (a name containing "phi3" makes it
    look up SentencePiece tokens like "</s>" and change special-token stripping, breaking byte-level BPE vocabs)."""
    return re.sub(r"(?i)phi-?3", "phi_3", name)


def load_config(root: Path) -> HFConfig:
    """config.json with transformers' defaults for its model type (config.py); unsupported architectures refused."""
    return _load_config(Path(root), check_architecture)


class _TensorData:
    """Writes the tensor-data section after gguf's header/KV/tensor-info phases, one tensor in pieces at a time,
    with the same alignment padding as GGUFWriter.write_tensor_data (so the file is byte-identical)."""

    def __init__(self, fout: BinaryIO, alignment: int):
        self.fout, self.alignment = fout, alignment
        self._left: int | None = None  # bytes still due for the open tensor; None between tensors
        self._nbytes = 0

    def _pad(self, n: int) -> None:
        pad = -n % self.alignment
        if pad:
            self.fout.write(bytes(pad))

    def begin(self, nbytes: int) -> None:
        if self._left is not None:
            raise RuntimeError("begin() before the previous tensor ended")
        self._pad(self.fout.tell())
        self._left, self._nbytes = nbytes, nbytes

    def write(self, arr: np.ndarray) -> None:
        if self._left is None:
            raise RuntimeError("write() outside begin()/end()")
        if arr.nbytes > self._left:
            raise RuntimeError(f"tensor data overflows its planned size ({self._nbytes} bytes)")
        self.fout.write(memoryview(np.ascontiguousarray(arr)).cast("B"))
        self._left -= arr.nbytes

    def end(self) -> None:
        if self._left is None:
            raise RuntimeError("end() without begin()")
        if self._left:
            raise RuntimeError(f"tensor data is {self._left} bytes short of its planned {self._nbytes}")
        self._pad(self._nbytes)
        self._left = None


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


def _row_blocks(family: Family, p: PlannedTensor, block_bytes: int):
    """(r0, r1) row ranges of one tensor: about ``block_bytes`` of float32 each, whole ``row_group``s."""
    shape = p.shape
    rows = shape[0] if shape else 1
    group = family.row_group(p.hf_name, shape) if len(shape) > 1 else None
    if group is None:
        yield 0, rows
        return
    row_f32 = 4 * math.prod(shape[1:])
    step = max(1, block_bytes // max(row_f32 * group, 1)) * group
    for r0 in range(0, rows, step):
        yield r0, min(rows, r0 + step)


def convert_checkpoint(root: Path, out_tmp: Path, quant: str, progress: Callable[[str], None] | None = None, *,
                       block_bytes: int = BLOCK_BYTES) -> ConvertResult:
    """Write ``root`` (an HF folder) as GGUF type ``quant`` (one of DIRECT_TYPES) to ``out_tmp`` (not atomic itself).

    ``block_bytes``: float32 bytes of rows converted at once (the output does not depend on it).
    """
    if quant not in DIRECT_TYPES:
        raise DownsizeError(f"the converter writes {', '.join(DIRECT_TYPES)} directly, not {quant}",
                            hint="other types are made by llama.cpp's quantizer from an F32/F16 export (export_gguf does this)")
    t0 = time.perf_counter()
    root = Path(root)
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
    data = _TensorData(w.fout[0], w.data_alignment)
    n_params = 0
    from downsize.console import progress as bar_of

    bar = bar_of(total=len(plan), desc=f"GGUF {quant}: converting tensors", unit="tensor")
    try:
        for i, p in enumerate(plan):
            bar.set_postfix_str(p.gguf_name, refresh=False)
            data.begin(p.nbytes)
            if p.data is not None:
                data.write(p.data)
            else:
                dtype = ckpt.tensors[p.hf_name].dtype
                for r0, r1 in _row_blocks(family, p, block_bytes):
                    x = to_float(ckpt.read_rows(p.hf_name, r0, r1), dtype)
                    data.write(_encode(family.transform(p.hf_name, x, p.shape), p.qtype))
                    del x
            data.end()
            n_params += math.prod(p.shape)
            bar.update(1)
            if progress:
                progress(f"[{i + 1}/{len(plan)}] {p.gguf_name} {p.qtype.name} {p.shape}")
    finally:
        bar.close()
        w.close()
        ckpt.close()
    return ConvertResult(out_tmp, family.arch_name, quant, len(plan), n_params, out_tmp.stat().st_size,
                         time.perf_counter() - t0, tok_info)
