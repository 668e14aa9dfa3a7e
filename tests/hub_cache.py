"""Build real Hugging Face caches offline for tests: the Hub cache layout huggingface_hub writes
(``models--Org--Name/{blobs,snapshots/<commit>,refs/<branch>}``, blobs named by their git/LFS hash,
snapshot files as relative symlinks), a datasets cache written by ``datasets`` itself, and a local Ollama
model store (``$OLLAMA_MODELS``: manifests naming content-addressed blobs).

    from hub_cache import add_hub_repo, add_cached_dataset
    snap = add_hub_repo(tmp_path / "hf" / "hub", "Org/Tiny", {"config.json": b"{}", "model.safetensors": path})
    add_cached_dataset(tmp_path / "hf" / "datasets", "Org/chat", {"train": [{"text": "hi"}]})
    add_ollama_model(tmp_path / "ollama", "library/tiny", "latest")   # resolves as ollama:tiny
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

LFS_SUFFIXES = (".safetensors", ".bin", ".gguf", ".parquet", ".model")


def _blob_name(name: str, data: bytes) -> str:
    if name.endswith(LFS_SUFFIXES):  # LFS files: the blob is named by the sha256 of the content
        return hashlib.sha256(data).hexdigest()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()  # git's blob id for regular files


def add_hub_repo(cache: Path, repo_id: str, files: dict[str, bytes | Path], ref: str | None = "main",
                 commit: str | None = None, repo_type: str = "model") -> Path:
    """Add one snapshot of ``repo_id`` to the Hub cache ``cache``; ``ref`` (a branch/tag) points at it.
    Returns the snapshot folder. Files are bytes or paths of files to copy in."""
    contents = {n: (v.read_bytes() if isinstance(v, Path) else v) for n, v in files.items()}
    if commit is None:
        commit = hashlib.sha1(json.dumps(sorted((n, _blob_name(n, d)) for n, d in contents.items())).encode()).hexdigest()
    repo = Path(cache) / f"{repo_type}s--{repo_id.replace('/', '--')}"
    snap = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    for name, data in contents.items():
        blob = repo / "blobs" / _blob_name(name, data)
        if not blob.exists():
            blob.write_bytes(data)
        link = snap / name
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(os.path.relpath(blob, link.parent))
    if ref is not None:
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / ref).write_text(commit)  # huggingface_hub writes the bare hash, no newline
    return snap


def add_model_dir(cache: Path, repo_id: str, model_dir: Path, **kw) -> Path:
    """A saved Hugging Face folder as a Hub snapshot (every file of it)."""
    return add_hub_repo(cache, repo_id, {p.name: p for p in sorted(Path(model_dir).iterdir()) if p.is_file()}, **kw)


def add_cached_dataset(datasets_cache: Path, repo_id: str, splits: dict[str, list[dict]], tmp: Path) -> Path:
    """Write ``splits`` into the datasets cache exactly where ``datasets.load_dataset(repo_id)`` looks when offline
    (``Org___name/default/0.0.0/<hash>/name-<split>.arrow`` + dataset_info.json), using datasets' own builder."""
    from datasets.packaged_modules.json.json import Json

    org, name = repo_id.split("/")
    files = {}
    tmp.mkdir(parents=True, exist_ok=True)
    for split, rows in splits.items():
        files[split] = str(tmp / f"{split}.jsonl")
        Path(files[split]).write_text("".join(json.dumps(r) + "\n" for r in rows))
    builder = Json(cache_dir=str(datasets_cache), dataset_name=name, config_id="default", data_files=files,
                   hash=hashlib.sha1(repo_id.encode()).hexdigest()[:16])
    builder.download_and_prepare()
    # The builder files it under the (snake-cased) dataset name; a Hub load files it under "Org___name".
    src, dst = Path(datasets_cache) / name, Path(datasets_cache) / f"{org}___{name}"
    src.rename(dst)
    return dst


def write_minimal_gguf(path):
    """A GGUF file with one tensor: enough for anything that reads the header."""
    import gguf
    import numpy as np

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(1)
    w.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def add_ollama_model(root: Path, name: str = "library/tiny", tag: str = "latest",
                     media: str = "application/vnd.ollama.image.model", blob_ok: bool = True) -> str:
    """An Ollama store at ``root`` holding ``name:tag``: a manifest (a template layer and a ``media`` layer) and,
    with ``blob_ok``, the model blob (a minimal GGUF). Returns the blob's digest."""
    digest = "sha256:" + "ab" * 32
    man = Path(root) / "manifests" / "registry.ollama.ai" / name / tag
    man.parent.mkdir(parents=True)
    man.write_text(json.dumps({"schemaVersion": 2, "layers": [
        {"mediaType": "application/vnd.ollama.image.template", "digest": "sha256:" + "cd" * 32},
        {"mediaType": media, "digest": digest}]}))
    blobs = Path(root) / "blobs"
    blobs.mkdir(exist_ok=True)
    if blob_ok:
        write_minimal_gguf(blobs / digest.replace(":", "-"))
    return digest
