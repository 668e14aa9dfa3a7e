"""Read a Hugging Face checkpoint (safetensors, single file or sharded) as numpy, a block of rows at a time.

The safetensors header (8-byte little-endian length, then JSON: name -> dtype, shape, data_offsets) is parsed
here and the data read with plain file reads: no torch, no memory map, so the process's resident memory holds
only the rows being converted, not every page of the checkpoint it has touched.

    ckpt = Checkpoint.open(Path("model_dir"))        # validates every shard and header up front
    for name in ckpt.names():
        meta = ckpt.tensors[name]                   # shape, dtype ("BF16", "F16", ...), file, byte range
        rows = ckpt.read_rows(name, 0, 64)          # (64, *shape[1:]) in the stored dtype (bf16 as uint16 bits)
        x = to_float(rows, meta.dtype)              # float32 for bf16 (exact), the stored float type otherwise
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from downsize.errors import DownsizeError
from downsize.models.checks import SAFETENSORS, SAFETENSORS_INDEX, safetensors_entries


# safetensors dtype -> numpy storage type. BF16 has no numpy type: it is kept as its uint16 bit pattern.
DTYPES: dict[str, np.dtype] = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "BF16": np.dtype("<u2"),
    "I64": np.dtype("<i8"), "I32": np.dtype("<i4"), "I8": np.dtype("i1"), "U8": np.dtype("u1"), "BOOL": np.dtype("?"),
}


def bf16_to_f32(bits: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (uint16) -> float32, exactly: bf16 is the upper half of an IEEE float32."""
    out = np.empty(bits.shape, dtype=np.uint32)
    np.left_shift(bits, 16, out=out, dtype=np.uint32)
    return out.view(np.float32)


def to_float(a: np.ndarray, dtype: str) -> np.ndarray:
    """Stored values as a float array for the family transforms and the encoders: BF16 -> float32 (exact);
    F32/F16/F64 as stored; integer and bool tensors -> float32."""
    if dtype == "BF16":
        return bf16_to_f32(a)
    if a.dtype.kind == "f":
        return a
    return a.astype(np.float32)


@dataclass
class TensorMeta:
    name: str
    shape: tuple[int, ...]
    dtype: str  # safetensors dtype name: "BF16", "F16", "F32", ...
    file: Path
    start: int = 0  # absolute byte offset of the data in ``file``
    end: int = 0

    @property
    def row_nbytes(self) -> int:
        """Bytes of one row (one index of the first dimension); a 1-D tensor's rows are its elements."""
        return math.prod(self.shape[1:]) * DTYPES[self.dtype].itemsize


@dataclass
class Checkpoint:
    root: Path
    tensors: dict[str, TensorMeta]
    _handles: dict[Path, object] = field(default_factory=dict, repr=False)

    @classmethod
    def open(cls, root: Path) -> "Checkpoint":
        root = Path(root)
        if (root / SAFETENSORS_INDEX).exists():
            try:
                weight_map = json.loads((root / SAFETENSORS_INDEX).read_text())["weight_map"]
                files = sorted(set(weight_map.values()))
            except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
                raise DownsizeError(f"{root / SAFETENSORS_INDEX} is not a valid shard index ({type(e).__name__}: {e})",
                                    hint="re-save the model with save_pretrained") from None
            missing = [f for f in files if not (root / f).exists()]
            if missing:
                raise DownsizeError(f"the checkpoint in {root} is sharded into {len(files)} files and "
                                    f"{len(missing)} are missing: {', '.join(missing[:5])}",
                                    hint="copy or download the missing shards next to the index, then export again")
        elif (root / SAFETENSORS).exists():
            files = [SAFETENSORS]
        elif any(root.glob("pytorch_model*.bin")):
            raise DownsizeError(f"{root} holds PyTorch .bin weights; the GGUF exporter streams safetensors only",
                                hint="load and re-save it: AutoModelForCausalLM.from_pretrained(d).save_pretrained(d, safe_serialization=True)")
        else:
            raise DownsizeError(f"no weights in {root} (looked for {SAFETENSORS} and {SAFETENSORS_INDEX})",
                                hint="point at the folder that holds the model's safetensors files")
        tensors: dict[str, TensorMeta] = {}
        for f in files:
            # Names in sorted order within each file (as safetensors' safe_open lists them): the GGUF tensor order.
            for meta in sorted(read_header(root / f), key=lambda m: m.name):
                tensors[meta.name] = meta
        if not tensors:
            raise DownsizeError(f"the checkpoint in {root} holds no tensors", hint="re-save the model with save_pretrained")
        return cls(root, tensors)

    def names(self) -> list[str]:
        return list(self.tensors)

    def read_rows(self, name: str, r0: int, r1: int) -> np.ndarray:
        """Rows [r0, r1) of tensor ``name`` (first dimension), in the stored dtype, as a fresh array."""
        meta = self.tensors[name]
        rows = meta.shape[0] if meta.shape else 1
        if not 0 <= r0 <= r1 <= rows:
            raise IndexError(f"rows [{r0}, {r1}) of {name} with {rows} rows")
        shape = (r1 - r0, *meta.shape[1:]) if meta.shape else ()
        out = np.empty(shape, dtype=DTYPES[meta.dtype])
        if out.nbytes == 0:
            return out
        h = self._handles.get(meta.file)
        if h is None:
            h = self._handles[meta.file] = open(meta.file, "rb")
        h.seek(meta.start + r0 * meta.row_nbytes)
        if h.readinto(memoryview(out.reshape(-1)).cast("B")) != out.nbytes:
            raise DownsizeError(f"{meta.file} ends inside tensor {name!r}",
                                hint="the file is truncated; re-save or re-download it")
        return out

    def get(self, name: str) -> np.ndarray:
        """The whole tensor in the stored dtype (small tensors; large ones are read with ``read_rows``)."""
        meta = self.tensors[name]
        return self.read_rows(name, 0, meta.shape[0] if meta.shape else 1)

    def close(self) -> None:
        for h in self._handles.values():
            h.close()
        self._handles.clear()


def read_header(path: Path) -> list[TensorMeta]:
    """Every tensor of one safetensors file, validated (downsize.models.checks), in a dtype the exporter reads."""
    try:
        base, entries = safetensors_entries(path)
    except OSError as e:
        raise DownsizeError(f"cannot read {path}: {e}", hint="check the file's permissions and that it is complete") from None
    out = []
    for name, dt, shape, a, b in entries:
        if dt not in DTYPES:
            raise DownsizeError(f"tensor {name!r} in {path} has dtype {dt}, which the exporter cannot read",
                                hint="save the model in float32, float16 or bfloat16")
        out.append(TensorMeta(name, shape, dt, path, base + a, base + b))
    return out
