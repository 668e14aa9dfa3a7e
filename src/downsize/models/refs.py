"""Model references, resolved in one place for every command.

    >>> resolve_model("zoo:coder-teacher")          # a shipped reference model
    >>> resolve_model("./runs/x/student")           # a Hugging Face directory
    >>> resolve_model("model-q8_0.gguf")            # a GGUF file (loaded through transformers, dequantised)
    >>> resolve_model("ollama:qwen2.5-coder:7b")    # the GGUF blob in the local Ollama store
    >>> model, tok = load_model("zoo:coder-teacher")

Anything else raises ``DownsizeError`` naming what was looked for, where, and what to do.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from downsize.errors import DownsizeError

HF_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
GGUF_MAGIC = b"GGUF"
OLLAMA_MODEL_MEDIA = "application/vnd.ollama.image.model"
OLLAMA_ADAPTER_MEDIA = "application/vnd.ollama.image.adapter"
OLLAMA_DEFAULT_HOST = "registry.ollama.ai"


@dataclass(frozen=True)
class ModelRef:
    ref: str  # as the user wrote it
    kind: str  # "hf", "zoo", "gguf"
    path: Path  # a directory for hf/zoo, a file for gguf

    @property
    def is_gguf(self) -> bool:
        return self.kind == "gguf"


def _resolve_zoo(ref: str, name: str) -> ModelRef:
    from downsize.zoo import ZOO, zoo_path

    shipped = [n for n, s in ZOO.items() if s.shipped]
    if name not in ZOO:
        raise DownsizeError(f"no zoo model called {name!r} (from {ref!r})", hint=f"shipped zoo models: {', '.join(shipped)}")
    path = zoo_path(name)
    if not (path / "config.json").exists():
        raise DownsizeError(
            f"zoo model {name!r} is not in this installation (looked in {path})",
            hint=f"train it with `downsize zoo train {name} --steps N`, or reinstall downsize from a full clone",
        )
    return ModelRef(ref, "zoo", path)


def ollama_models_dir() -> Path:
    return Path(os.environ.get("OLLAMA_MODELS") or Path.home() / ".ollama" / "models")


def _resolve_ollama(ref: str, spec: str) -> ModelRef:
    """``ollama:NAME[:TAG]`` -> the model blob named by the manifest in the local store."""
    name, _, tag = spec.partition(":")
    tag = tag or "latest"
    parts = name.split("/")
    if not name or any(not p for p in parts) or len(parts) > 3:
        raise DownsizeError(f"malformed Ollama reference {ref!r}", hint="write ollama:NAME or ollama:NAME:TAG, e.g. ollama:qwen2.5-coder:7b")
    if len(parts) == 1:
        parts = [OLLAMA_DEFAULT_HOST, "library", parts[0]]
    elif len(parts) == 2:
        parts = [OLLAMA_DEFAULT_HOST, *parts]
    root = ollama_models_dir()
    manifest = root / "manifests" / Path(*parts) / tag
    if not manifest.exists():
        raise DownsizeError(
            f"Ollama model {name}:{tag} not found: no manifest at {manifest}",
            hint=f"run `ollama pull {name}:{tag}` or `ollama list` to see what is installed; set OLLAMA_MODELS if the store is elsewhere",
        )
    try:
        layers = json.loads(manifest.read_text())["layers"]
        digest = next(layer["digest"] for layer in layers if layer.get("mediaType") == OLLAMA_MODEL_MEDIA)
    except (json.JSONDecodeError, KeyError, TypeError, StopIteration) as e:
        raise DownsizeError(f"the Ollama manifest {manifest} has no model layer ({type(e).__name__})",
                            hint="re-pull the model with `ollama pull`") from None
    blob = root / "blobs" / digest.replace(":", "-")
    if not blob.exists():
        raise DownsizeError(f"the Ollama manifest {manifest} names blob {digest}, which is missing at {blob}",
                            hint=f"re-pull the model with `ollama pull {name}:{tag}`")
    _check_gguf(blob, ref)
    return ModelRef(ref, "gguf", blob)


def _check_gguf(path: Path, ref: str) -> None:
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != GGUF_MAGIC:
        raise DownsizeError(f"{path} is not a GGUF file (starts with {magic!r}, expected b'GGUF')",
                            hint="pass a .gguf file written by llama.cpp, Ollama or `downsize export gguf`")


def _resolve_path(ref: str) -> ModelRef:
    path = Path(ref).expanduser()
    if not path.exists():
        raise DownsizeError(
            f"no model at {ref!r}: the path does not exist",
            hint="pass a Hugging Face directory, a .gguf file, zoo:NAME (see `downsize zoo list`) or ollama:NAME[:TAG]",
        )
    if path.is_file():
        _check_gguf(path, ref)
        return ModelRef(ref, "gguf", path.resolve())
    if not (path / "config.json").exists():
        raise DownsizeError(f"{path} is a directory without config.json, so not a Hugging Face model",
                            hint="point at the folder that holds config.json and the weights (model.safetensors)")
    if not any((path / f).exists() for f in HF_WEIGHT_FILES):
        raise DownsizeError(f"{path} has config.json but no weights ({', '.join(HF_WEIGHT_FILES[:2])})",
                            hint="the save may have been interrupted; save the model again with save_pretrained")
    return ModelRef(ref, "hf", path.resolve())


_SCHEMES = {"zoo": _resolve_zoo, "ollama": _resolve_ollama}


def resolve_model(ref: str | os.PathLike) -> ModelRef:
    ref = str(ref)
    scheme, sep, rest = ref.partition(":")
    if sep and scheme in _SCHEMES:
        return _SCHEMES[scheme](ref, rest)
    if sep and len(scheme) > 1 and not Path(ref).exists() and "/" not in scheme:
        raise DownsizeError(f"unknown model reference scheme {scheme!r} in {ref!r}",
                            hint=f"use a path, or one of: {', '.join(s + ':' for s in _SCHEMES)}")
    return _resolve_path(ref)


def load_tokenizer(ref: str | ModelRef, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    r = ref if isinstance(ref, ModelRef) else resolve_model(ref)
    if r.is_gguf:
        return AutoTokenizer.from_pretrained(str(r.path.parent), gguf_file=r.path.name, trust_remote_code=trust_remote_code)
    if not any((r.path / f).exists() for f in ("tokenizer.json", "tokenizer.model", "vocab.json")):
        raise DownsizeError(f"{r.path} has no tokenizer files (tokenizer.json, tokenizer.model or vocab.json)",
                            hint="copy the tokenizer of the model it came from into the folder (tokenizer.save_pretrained)")
    return AutoTokenizer.from_pretrained(str(r.path), trust_remote_code=trust_remote_code)


def load_model(ref: str | ModelRef, dtype=None, trust_remote_code: bool = False, with_tokenizer: bool = True,
               **placement):
    """Load a causal LM (and its tokenizer) from any model reference; GGUF weights are dequantised.
    ``placement``: ``device_map``/``max_memory`` for ``from_pretrained`` (see ``models.placement``)."""
    import torch
    from transformers import AutoModelForCausalLM

    r = ref if isinstance(ref, ModelRef) else resolve_model(ref)
    dtype = dtype or torch.float32
    try:
        if r.is_gguf:
            model = AutoModelForCausalLM.from_pretrained(str(r.path.parent), gguf_file=r.path.name, dtype=dtype,
                                                         trust_remote_code=trust_remote_code, **placement)
        else:
            model = AutoModelForCausalLM.from_pretrained(str(r.path), dtype=dtype, trust_remote_code=trust_remote_code,
                                                         use_safetensors=None, **placement)
    except DownsizeError:
        raise
    except (OSError, ValueError, KeyError) as e:
        raise DownsizeError(f"could not load {r.ref} ({r.path}): {e}",
                            hint="check that the files are complete; GGUF support covers the families transformers can read") from None
    tok = load_tokenizer(r, trust_remote_code) if with_tokenizer else None
    return model, tok
