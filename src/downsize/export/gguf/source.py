"""Read a Hugging Face checkpoint one tensor at a time (safetensors, single file or sharded).

    ckpt = Checkpoint.open(Path("model_dir"))      # validates every shard and header up front
    for name in ckpt.names():
        t = ckpt.get(name)                       # one tensor in memory at a time (memory-mapped read)
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from downsize.errors import DownsizeError

SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"

_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64,
           "I64": torch.int64, "I32": torch.int32, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool}


@dataclass
class TensorMeta:
    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    file: Path
    start: int = 0  # absolute byte offset of the data in ``file``
    end: int = 0


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
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise DownsizeError(f"{root / SAFETENSORS_INDEX} is not a valid shard index ({type(e).__name__}: {e})",
                                    hint="re-save the model with save_pretrained") from None
            files = sorted(set(weight_map.values()))
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
            path = root / f
            try:
                with safe_open(path, framework="pt") as h:
                    for name in h.keys():
                        sl = h.get_slice(name)
                        dt = sl.get_dtype()
                        if dt not in _DTYPES:
                            raise DownsizeError(f"tensor {name!r} in {path} has dtype {dt}, which the exporter cannot read",
                                                hint="save the model in float32, float16 or bfloat16")
                        tensors[name] = TensorMeta(name, tuple(sl.get_shape()), _DTYPES[dt], path)
            except SafetensorError as e:
                raise DownsizeError(f"{path} is not a readable safetensors file: {e}",
                                    hint="the file is truncated or corrupt; re-save or re-download it") from None
            except OSError as e:
                raise DownsizeError(f"cannot read {path}: {e}", hint="check the file's permissions and that it is complete") from None
        for f in files:
            _fill_offsets(root / f, tensors)
        if not tensors:
            raise DownsizeError(f"the checkpoint in {root} holds no tensors", hint="re-save the model with save_pretrained")
        return cls(root, tensors)

    def names(self) -> list[str]:
        return list(self.tensors)

    def get(self, name: str) -> torch.Tensor:
        """Read one tensor with a plain file read (not a memory map), so the process's resident memory holds only
        the tensors being converted, not every page of the checkpoint it has touched."""
        meta = self.tensors[name]
        h = self._handles.get(meta.file)
        if h is None:
            h = self._handles[meta.file] = open(meta.file, "rb")
        h.seek(meta.start)
        buf = bytearray(meta.end - meta.start)
        if h.readinto(buf) != len(buf):
            raise DownsizeError(f"{meta.file} ends before tensor {name!r}",
                                hint="the file is truncated; re-save or re-download it")
        if not buf:
            return torch.zeros(meta.shape, dtype=meta.dtype)
        return torch.frombuffer(buf, dtype=meta.dtype).reshape(meta.shape)

    def close(self) -> None:
        for h in self._handles.values():
            h.close()
        self._handles.clear()


def _fill_offsets(path: Path, tensors: dict[str, TensorMeta]) -> None:
    """Absolute data offsets from the safetensors header (8-byte length, JSON, then the data block)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    size = path.stat().st_size
    for name, info in header.items():
        if name == "__metadata__" or name not in tensors:
            continue
        a, b = info["data_offsets"]
        tensors[name].start, tensors[name].end = 8 + n + a, 8 + n + b
        if tensors[name].end > size:
            raise DownsizeError(f"{path} is truncated: tensor {name!r} ends at byte {tensors[name].end} of {size}",
                                hint="re-save or re-download the file")
