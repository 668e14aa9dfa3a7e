"""The checks every model load goes through, so every command says the same thing about the same bad file.

    >>> from downsize.models.refs import load_model
    >>> model, tok = load_model("zoo:coder-teacher-qwen")
    >>> model.save_pretrained("runs/student")
    >>> check_checkpoint(Path("runs/student"))["model_type"]     # config.json, shard index, every safetensors header
    'qwen2'
    >>> read_config(Path("runs/student"))["hidden_size"]         # config.json as a dict, or a DownsizeError
    256
    >>> weights = Path("runs/student/model.safetensors")
    >>> _ = weights.write_bytes(weights.read_bytes()[:4_000_000])   # an interrupted copy
    >>> check_checkpoint(Path("runs/student"))
    Traceback (most recent call last):
    downsize.errors.DownsizeError: runs/student/model.safetensors is a damaged safetensors file: tensor '...' ends at byte ... of 4000000 (the file is truncated)
      hint: the file is truncated or corrupt; re-save the model (save_pretrained) or copy the files again
    >>> from downsize.export.gguf import export_gguf
    >>> _ = export_gguf("zoo:coder-teacher-qwen", "model.gguf", "Q8_0")
    >>> len(read_gguf(Path("model.gguf")).tensors)               # a gguf.GGUFReader, or a DownsizeError
    50
    >>> _ = Path("empty.gguf").write_bytes(b"")
    >>> read_gguf(Path("empty.gguf"))
    Traceback (most recent call last):
    downsize.errors.DownsizeError: empty.gguf is empty: not a complete GGUF file
      hint: the export or download was interrupted; write or copy it again

Nothing here runs code from a model folder: a pickle (``pytorch_model.bin``) is loaded by transformers
with ``weights_only`` (a pickle that needs more is refused, see ``pickle_refused``), and a config that
needs remote code for an architecture transformers does not ship is refused before anything is imported.
Checks read headers only (a few KiB per file), never the weights.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

from downsize.errors import DownsizeError

CONFIG_FILE = "config.json"
SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
PICKLE_FILES = ("pytorch_model.bin", "pytorch_model.bin.index.json")
MAX_HEADER_BYTES = 100 << 20  # the safetensors format's own limit
GGUF_MIN_BYTES = 24  # magic, version, tensor count, metadata count
RESAVE = "re-save the model (save_pretrained) or copy the files again"

# Bytes per element of every safetensors dtype (structure check only; which dtypes a command can use is its own business)
ST_ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8, "U32": 4,
               "U16": 2, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1, "C64": 8}


def read_config(root: Path) -> dict:
    """``root/config.json`` as a dict; a missing, unreadable, non-JSON or non-object file is a DownsizeError."""
    path = Path(root) / CONFIG_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DownsizeError(f"{root} has no {CONFIG_FILE}, so it is not a Hugging Face model folder",
                            hint="point at the folder that holds config.json and the weights") from None
    except UnicodeDecodeError:
        raise DownsizeError(f"{path} is not text (not UTF-8)", hint=RESAVE) from None
    try:
        cfg = json.loads(text)
    except json.JSONDecodeError as e:
        raise DownsizeError(f"{path} is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}",
                            hint=f"fix the file or {RESAVE}") from None
    if not isinstance(cfg, dict):
        raise DownsizeError(f"{path} holds a JSON {type(cfg).__name__}, not an object", hint=RESAVE)
    if not isinstance(cfg.get("model_type"), str):
        raise DownsizeError(f"{path} has no \"model_type\", so transformers cannot tell which architecture it is",
                            hint=f"add the model type (e.g. \"llama\") or {RESAVE}")
    return cfg


def check_remote_code(root: Path, cfg: dict, trust_remote_code: bool) -> None:
    """Refuse a config whose architecture exists only as code in the model folder (auto_map)."""
    if trust_remote_code or "auto_map" not in cfg:
        return
    from transformers import CONFIG_MAPPING

    if cfg["model_type"] in CONFIG_MAPPING:
        return  # transformers has the class itself and ignores the folder's code
    raise DownsizeError(f"{Path(root) / CONFIG_FILE} needs code shipped in the model folder (auto_map, model type "
                        f"{cfg['model_type']!r}) and downsize does not run such code",
                        hint="use a model whose architecture transformers ships; from Python you can opt in with "
                             "trust_remote_code=True if you trust the folder")


def safetensors_entries(path: Path) -> tuple[int, list[tuple[str, str, tuple[int, ...], int, int]]]:
    """Validate one safetensors file's header against its size: ``(header_end, [(name, dtype, shape, a, b)])``
    with data offsets ``a..b`` relative to ``header_end``. The one parser of the format (the checked loader and
    the GGUF converter's streaming reader both use it)."""
    def corrupt(why: str) -> DownsizeError:
        return DownsizeError(f"{path} is a damaged safetensors file: {why}",
                             hint=f"the file is truncated or corrupt; {RESAVE}")

    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise corrupt(f"it is {size} bytes long, shorter than the 8-byte header length")
        n = struct.unpack("<Q", head)[0]
        if n > MAX_HEADER_BYTES or 8 + n > size:
            raise corrupt(f"its header claims {n} bytes and the file has {size}")
        raw = f.read(n)
    try:
        header = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise corrupt(f"the JSON header does not parse ({e})") from None
    if not isinstance(header, dict):
        raise corrupt("the JSON header is not an object")
    data = size - 8 - n
    entries = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dt, shape, (a, b) = info["dtype"], tuple(int(s) for s in info["shape"]), info["data_offsets"]
            a, b = int(a), int(b)
        except (KeyError, TypeError, ValueError) as e:
            raise corrupt(f"the entry of tensor {name!r} is malformed ({type(e).__name__})") from None
        if dt not in ST_ITEMSIZE:
            raise corrupt(f"tensor {name!r} has the unknown dtype {dt!r}")
        if min(shape, default=0) < 0 or not 0 <= a <= b or b - a != math.prod(shape) * ST_ITEMSIZE[dt]:
            raise corrupt(f"tensor {name!r} ({dt}, shape {list(shape)}) has data offsets [{a}, {b}] that do not match "
                          "its size")
        if b > data:
            raise corrupt(f"tensor {name!r} ends at byte {8 + n + b} of {size} (the file is truncated)")
        entries.append((name, dt, shape, a, b))
    return 8 + n, entries


def check_safetensors(path: Path) -> list[str]:
    """Validate one safetensors file's header against its size; returns the tensor names."""
    return [name for name, *_ in safetensors_entries(path)[1]]


def _shards(root: Path) -> list[Path]:
    index = root / SAFETENSORS_INDEX
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        files = sorted(set(weight_map.values()))
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as e:
        raise DownsizeError(f"{index} is not a valid shard index ({type(e).__name__})", hint=RESAVE) from None
    missing = [f for f in files if not (root / f).is_file()]
    if missing:
        raise DownsizeError(f"the checkpoint in {root} is sharded into {len(files)} files and {len(missing)} "
                            f"{'is' if len(missing) == 1 else 'are'} missing: {', '.join(missing[:5])}",
                            hint="copy the missing shards next to the index")
    return [root / f for f in files]


def check_checkpoint(root: Path, trust_remote_code: bool = False) -> dict:
    """Check a Hugging Face folder before anything loads it; returns its config."""
    root = Path(root)
    cfg = read_config(root)
    check_remote_code(root, cfg, trust_remote_code)
    if (root / SAFETENSORS_INDEX).exists():
        files = _shards(root)
    elif (root / SAFETENSORS).exists():
        files = [root / SAFETENSORS]
    elif any((root / f).exists() for f in PICKLE_FILES):
        return cfg  # transformers loads these with weights_only; load_model words a refusal
    else:
        raise DownsizeError(f"{root} has {CONFIG_FILE} but no weights ({SAFETENSORS} or {SAFETENSORS_INDEX})",
                            hint="the save may have been interrupted; save the model again with save_pretrained")
    if not any([check_safetensors(f) for f in files]):
        raise DownsizeError(f"the checkpoint in {root} holds no tensors", hint=RESAVE)
    return cfg


def pickle_refused(root: Path, e: BaseException) -> DownsizeError:
    return DownsizeError(f"{root} holds a pickled checkpoint (pytorch_model.bin) that would run code when loaded "
                         f"({type(e).__name__}); downsize loads pickles only with weights_only and refused it",
                         hint="convert it to safetensors in an environment you trust, or use the safetensors "
                              "release of the model")


def read_gguf(path: Path):
    """A ``gguf.GGUFReader`` over ``path``, or a DownsizeError for an empty, truncated or damaged file."""
    import gguf

    path = Path(path)
    size = path.stat().st_size
    if size < GGUF_MIN_BYTES:
        raise DownsizeError(f"{path} is {'empty' if size == 0 else f'only {size} bytes'}: not a complete GGUF file",
                            hint="the export or download was interrupted; write or copy it again")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"GGUF":
        raise DownsizeError(f"{path} is not a GGUF file (it starts with {magic!r}, a GGUF file with b'GGUF')",
                            hint="pass a .gguf file written by llama.cpp, Ollama or `downsize export gguf`")
    try:
        reader = gguf.GGUFReader(path)
    except (ValueError, IndexError, KeyError, TypeError, OverflowError, struct.error, UnicodeDecodeError) as e:
        raise DownsizeError(f"{path} is a damaged GGUF file ({type(e).__name__}: {e})",
                            hint="the file is truncated or corrupt; export or download it again") from None
    end = max((t.data_offset + t.n_bytes for t in reader.tensors), default=0)
    if end > size:
        raise DownsizeError(f"{path} is truncated: its tensors end at byte {end} of {size}",
                            hint="the export or download was interrupted; write or copy it again")
    return reader
