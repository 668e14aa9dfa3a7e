"""Model references, resolved in one place for every command.

    >>> resolve_model("zoo:coder-teacher")          # a shipped reference model
    ModelRef(ref='zoo:coder-teacher', kind='zoo', path=PosixPath('.../zoo/models/coder-teacher'), repo_id=None, revision=None)
    >>> model, tok = load_model("zoo:coder-teacher-qwen")   # fp32 model and its tokenizer, from any reference
    >>> model.save_pretrained("runs/x/student"); _ = tok.save_pretrained("runs/x/student")
    >>> resolve_model("./runs/x/student").kind      # a Hugging Face directory
    'hf'
    >>> from downsize.export.gguf import export_gguf
    >>> _ = export_gguf("zoo:coder-teacher-qwen", "model-q8_0.gguf", "Q8_0")
    >>> resolve_model("model-q8_0.gguf").kind       # a GGUF file (loaded through transformers, dequantised)
    'gguf'
    >>> resolve_model("ollama:qwen2.5-coder:7b").path.name    # the GGUF blob in the local Ollama store
    'sha256-abab...'
    >>> r = resolve_model("Qwen/Qwen2.5-0.5B-Instruct")    # a Hub id: the cached (or downloaded) snapshot folder
    >>> r.kind, r.repo_id, (r.path / "config.json").exists()
    ('hf', 'Qwen/Qwen2.5-0.5B-Instruct', True)
    >>> resolve_model("Qwen/Qwen2.5-0.5B-Instruct@7ae557604adf67be50417f59c2c2f167def9a775").revision  # pinned
    '7ae557604adf67be50417f59c2c2f167def9a775'
    >>> model_config("Qwen/Qwen2.5-32B-Instruct")["num_hidden_layers"]   # config.json alone, no weights
    64
    >>> resolve_model("./no/such/model")
    Traceback (most recent call last):
    downsize.errors.DownsizeError: no model at './no/such/model': the path does not exist
      hint: ...

(Run in the tests with an offline Hub cache and an Ollama store holding those names.)

A local path that exists always wins over a Hub id of the same spelling; ``hf:Org/Name`` forces the Hub.
Hub snapshots are kind "hf" (a Hugging Face directory) with ``repo_id``/``revision`` set; see
``downsize.models.hub`` for what is downloaded and how offline mode works.
Anything else raises ``DownsizeError`` naming what was looked for, where, and what to do (the last example).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from downsize.errors import DownsizeError
from downsize.models.checks import read_config  # noqa: F401 - re-exported: the one config reader

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
    repo_id: str | None = None  # set for Hub snapshots (kind "hf")
    revision: str | None = None  # the revision asked for (None = main)

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
            hint="pass a Hugging Face directory, a .gguf file, a Hub id Org/Name[@revision], zoo:NAME "
                 "(see `downsize zoo list`) or ollama:NAME[:TAG]",
        )
    if path.is_file():
        _check_gguf(path, ref)
        return ModelRef(ref, "gguf", path.resolve())
    _check_hf_dir(path)
    return ModelRef(ref, "hf", path.resolve())


def _check_hf_dir(path: Path) -> None:
    if not (path / "config.json").exists():
        raise DownsizeError(f"{path} is a directory without config.json, so not a Hugging Face model",
                            hint="point at the folder that holds config.json and the weights (model.safetensors)")
    if not any((path / f).exists() for f in HF_WEIGHT_FILES):
        raise DownsizeError(f"{path} has config.json but no weights ({', '.join(HF_WEIGHT_FILES[:2])})",
                            hint="the save may have been interrupted; save the model again with save_pretrained")


def _resolve_hub(ref: str, hub) -> ModelRef:
    """A Hub id -> its snapshot folder (cache or download), checked like any Hugging Face directory."""
    from downsize.models.hub import HUB_MODEL_FILES, download_command, hub_snapshot

    path = hub_snapshot(hub, HUB_MODEL_FILES)
    missing = [f for f, ok in (("config.json", (path / "config.json").exists()),
                               ("safetensors weights", any(path.glob("*.safetensors")))) if not ok]
    if missing:
        raise DownsizeError(f"the snapshot of Hub model {hub} at {path} has no {' and no '.join(missing)}",
                            hint=f"complete it with `{download_command(hub, HUB_MODEL_FILES)}`; downsize reads "
                                 "safetensors weights only (a repo with only pytorch_model.bin needs converting first)")
    return ModelRef(ref, "hf", path, repo_id=hub.repo_id, revision=hub.revision)


def _resolve_hub_scheme(ref: str, spec: str) -> ModelRef:
    from downsize.models.hub import parse_hub_id

    hub = parse_hub_id(spec)
    if hub is None:
        raise DownsizeError(f"malformed Hub reference {ref!r}", hint="write hf:Org/Name or hf:Org/Name@revision")
    return _resolve_hub(ref, hub)


_SCHEMES = {"zoo": _resolve_zoo, "ollama": _resolve_ollama, "hf": _resolve_hub_scheme}


def resolve_model(ref: str | os.PathLike) -> ModelRef:
    from downsize.models.hub import parse_hub_id

    ref = str(ref)
    scheme, sep, rest = ref.partition(":")
    if sep and scheme in _SCHEMES:
        return _SCHEMES[scheme](ref, rest)
    if sep and len(scheme) > 1 and not Path(ref).exists() and "/" not in scheme:
        raise DownsizeError(f"unknown model reference scheme {scheme!r} in {ref!r}",
                            hint=f"use a path, a Hub id Org/Name, or one of: {', '.join(s + ':' for s in _SCHEMES)}")
    hub = None if Path(ref).expanduser().exists() else parse_hub_id(ref)  # a local folder wins over a Hub id
    if hub is not None:
        return _resolve_hub(ref, hub)
    return _resolve_path(ref)


def check_model_ref(ref: str | os.PathLike) -> None:
    """Raise DownsizeError unless ``ref`` resolves, downloading nothing big: online, a Hub id is checked by its
    config.json alone (the weights come when a stage needs them), so `downsize validate` never pulls weights;
    offline it must be fully in the cache."""
    from downsize.models.hub import hub_offline, parse_hub_id

    ref = str(ref)
    local = Path(ref).expanduser().exists()
    hub = parse_hub_id(ref) if ref.startswith("hf:") or (":" not in ref and not local) else None
    if hub is not None and not hub_offline():
        model_config(ref)
    else:
        resolve_model(ref)


def model_config(ref: str | os.PathLike) -> dict:
    """The config.json of a model reference without touching its weights: a Hub id reads config.json from the
    cache (or downloads that file alone); a folder, a config.json file or a zoo model reads the file."""
    from downsize.models.hub import HUB_CONFIG_ONLY, hub_snapshot, parse_hub_id

    ref = str(ref)
    path = Path(ref).expanduser()
    hub = parse_hub_id(ref) if not path.exists() and (ref.startswith("hf:") or ":" not in ref) else None
    if path.is_file() and path.name == "config.json":
        folder = path.parent
    elif path.is_dir():
        folder = path
    elif hub is not None:
        folder = hub_snapshot(hub, HUB_CONFIG_ONLY)
    else:
        r = resolve_model(ref)  # zoo:, ollama:, a .gguf, or the usual error for a missing path
        if r.is_gguf:
            raise DownsizeError(f"{ref} is a GGUF file, which has no config.json",
                                hint="pass the Hugging Face model (folder, Hub id or config.json) it was converted from")
        folder = r.path
    cfg_file = folder / "config.json"
    if not cfg_file.exists():
        raise DownsizeError(f"{folder} has no config.json", hint="point at the folder that holds config.json")
    try:
        return json.loads(cfg_file.read_text())
    except json.JSONDecodeError as e:
        raise DownsizeError(f"{cfg_file} is not valid JSON ({e.msg})", hint="download or save the config again") from None


def load_tokenizer(ref: str | ModelRef, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    r = ref if isinstance(ref, ModelRef) else resolve_model(ref)
    if not r.is_gguf and not any((r.path / f).exists() for f in ("tokenizer.json", "tokenizer.model", "vocab.json")):
        raise DownsizeError(f"{r.path} has no tokenizer files (tokenizer.json, tokenizer.model or vocab.json)",
                            hint="copy the tokenizer of the model it came from into the folder (tokenizer.save_pretrained)")
    if r.is_gguf:
        from downsize.models.checks import read_gguf

        read_gguf(r.path)
    try:
        if r.is_gguf:
            return AutoTokenizer.from_pretrained(str(r.path.parent), gguf_file=r.path.name, trust_remote_code=trust_remote_code)
        return AutoTokenizer.from_pretrained(str(r.path), trust_remote_code=trust_remote_code)
    except DownsizeError:
        raise
    except Exception as e:  # noqa: BLE001 - tokenizers raises bare Exception for a damaged tokenizer.json
        raise DownsizeError(f"could not load the tokenizer of {r.ref} ({r.path}): {type(e).__name__}: {_first_line(e)}",
                            hint="the tokenizer files are damaged or incomplete; copy them again from the model "
                                 "they came from (tokenizer.save_pretrained)") from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else ""


def load_model(ref: str | ModelRef, dtype=None, trust_remote_code: bool = False, with_tokenizer: bool = True,
               **placement):
    """Load a causal LM (and its tokenizer) from any model reference; GGUF weights are dequantised.

    This is the one checked path of every command (downsize.models.checks): the config, the shard index
    and every safetensors header are validated first, pickles load only with weights_only, and code in
    the model folder never runs unless ``trust_remote_code``. ``placement``: ``device_map``/``max_memory``
    for ``from_pretrained`` (see ``models.placement``).
    """
    import pickle

    import torch
    from transformers import AutoModelForCausalLM

    from downsize.models.checks import check_checkpoint, pickle_refused, read_gguf

    r = ref if isinstance(ref, ModelRef) else resolve_model(ref)
    dtype = dtype or torch.float32
    if r.is_gguf:
        read_gguf(r.path)
    else:
        check_checkpoint(r.path, trust_remote_code)
    try:
        if r.is_gguf:
            model = AutoModelForCausalLM.from_pretrained(str(r.path.parent), gguf_file=r.path.name, dtype=dtype,
                                                         trust_remote_code=trust_remote_code, **placement)
        else:
            model = AutoModelForCausalLM.from_pretrained(str(r.path), dtype=dtype, trust_remote_code=trust_remote_code,
                                                         use_safetensors=None, **placement)
    except DownsizeError:
        raise
    except pickle.UnpicklingError as e:
        raise pickle_refused(r.path, e) from None
    except (OSError, ValueError, KeyError, RuntimeError, TypeError, AttributeError, IndexError) as e:
        if "weights_only" in str(e) or "Unpickl" in str(e):
            raise pickle_refused(r.path, e) from None
        raise DownsizeError(f"could not load {r.ref} ({r.path}): {type(e).__name__}: {_first_line(e)}",
                            hint="check that the files are complete and match config.json; GGUF support covers the "
                                 "families transformers can read") from None
    tok = load_tokenizer(r, trust_remote_code) if with_tokenizer else None
    return model, tok
