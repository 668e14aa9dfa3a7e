"""The llama-cpp-python sdist (which vendors llama.cpp) as test data, read at test time, never copied into the repo.

    from sdist import llama_cpp_dir
    templates = sorted((llama_cpp_dir() / "models" / "templates").glob("*.jinja"))   # ~70 real chat templates
    vocabs = sorted((llama_cpp_dir() / "models").glob("ggml-vocab-*.gguf"))         # with .inp/.out id tests

The sdist is the same version set-up installs (pyproject's `llama` extra). It is found in
``$DOWNSIZE_LLAMA_CPP_SDIST`` (an unpacked ``llama_cpp_python-X`` folder), else downloaded once from
PyPI with pip into ``$DOWNSIZE_CACHE/sdist`` (``~/.cache/downsize/sdist``). Tests that need it skip
when the package index cannot be reached.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from functools import lru_cache
from pathlib import Path

import pytest

VERSION = "0.3.36"
NAME = f"llama_cpp_python-{VERSION}"


def _cache() -> Path:
    return Path(os.environ.get("DOWNSIZE_CACHE", Path.home() / ".cache" / "downsize")) / "sdist"


@lru_cache(maxsize=1)
def sdist_dir() -> Path:
    given = os.environ.get("DOWNSIZE_LLAMA_CPP_SDIST")
    if given:
        return Path(given)
    root = _cache()
    unpacked = root / NAME
    if (unpacked / "vendor" / "llama.cpp" / "models").is_dir():
        return unpacked
    root.mkdir(parents=True, exist_ok=True)
    archive = root / f"{NAME}.tar.gz"
    if not archive.exists():
        r = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                            f"llama-cpp-python=={VERSION}", "-d", str(root)], capture_output=True, text=True)
        if r.returncode != 0 or not archive.exists():
            pytest.skip(f"the llama-cpp-python {VERSION} sdist could not be downloaded: {r.stderr[-300:]}")
    tmp = root / f".{NAME}.unpack-{os.getpid()}"
    with tarfile.open(archive) as tf:
        members = [m for m in tf.getmembers() if "/vendor/llama.cpp/" in m.name and
                   ("/models/" in m.name or m.name.endswith(".py") or "/gguf-py/" in m.name)]
        tf.extractall(tmp, members=members, filter="data")
    os.replace(tmp / NAME, unpacked)
    return unpacked


def llama_cpp_dir() -> Path:
    """The vendored llama.cpp source tree: models/templates, models/ggml-vocab-*, convert_hf_to_gguf.py."""
    return sdist_dir() / "vendor" / "llama.cpp"
