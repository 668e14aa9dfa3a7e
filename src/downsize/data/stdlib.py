"""The ``zoo:stdlib`` corpus: the running interpreter's standard-library ``.py`` files.

Every machine with Python has it, so the reference zoo trains and evaluates on real code
without downloading anything. The split of a file (train/validation/test) is a pure function
of its path relative to the stdlib root, so adding or removing files never moves other files
between splits.

    >>> corpus = StdlibCorpus.local()
    >>> len(corpus.manifest()["fingerprint"])                         # names exactly what a result was measured on
    64
    >>> sorted({f.split for f in corpus.files})
    ['test', 'train', 'validation']
    >>> relpath, text = next(corpus.documents("validation"))          # (relpath, text) in sorted order
    >>> split_of(relpath)
    'validation'
"""

from __future__ import annotations

import hashlib
import os
import sys
import sysconfig
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Iterator

SPLITS = ("train", "validation", "test")
# Fractions of the hash space: 90% train, 5% validation, 5% test.
_SPLIT_BOUNDS = {"train": (0.0, 0.90), "validation": (0.90, 0.95), "test": (0.95, 1.0)}
_SKIP_DIRS = {"site-packages", "dist-packages", "__pycache__"}
STDLIB_ENV = "DOWNSIZE_STDLIB"


def split_of(relpath: str) -> str:
    """The split a file belongs to, from a hash of its relative path (stable across machines)."""
    h = int.from_bytes(hashlib.sha256(relpath.encode("utf-8")).digest()[:8], "big") / 2**64
    for name, (lo, hi) in _SPLIT_BOUNDS.items():
        if lo <= h < hi:
            return name
    return "test"


@dataclass(frozen=True)
class FileEntry:
    path: str  # relative to the stdlib root, '/'-separated
    size: int
    sha256: str
    split: str


@dataclass(frozen=True)
class StdlibCorpus:
    root: Path

    @classmethod
    def local(cls) -> "StdlibCorpus":
        """This interpreter's stdlib, or the folder in ``$DOWNSIZE_STDLIB`` (another Python's stdlib unpacked, e.g. on
        a GPU machine whose Python differs from the one a zoo model was trained on: same files, same fingerprint)."""
        return cls(Path(os.environ.get(STDLIB_ENV) or sysconfig.get_paths()["stdlib"]))

    @cached_property
    def files(self) -> tuple[FileEntry, ...]:
        entries = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
            for fn in sorted(filenames):
                if not fn.endswith(".py"):
                    continue
                full = Path(dirpath) / fn
                rel = full.relative_to(self.root).as_posix()
                data = full.read_bytes()
                entries.append(FileEntry(rel, len(data), hashlib.sha256(data).hexdigest(), split_of(rel)))
        entries.sort(key=lambda e: e.path)
        return tuple(entries)

    def manifest(self) -> dict:
        """Paths, sizes and hashes of every file, with a fingerprint over all of them."""
        h = hashlib.sha256()
        for e in self.files:
            h.update(f"{e.path}\0{e.size}\0{e.sha256}\n".encode())
        splits = {s: {"files": 0, "bytes": 0} for s in SPLITS}
        for e in self.files:
            splits[e.split]["files"] += 1
            splits[e.split]["bytes"] += e.size
        return {
            "name": "stdlib",
            "python": sys.version.split()[0],
            "root": str(self.root),
            "fingerprint": h.hexdigest(),
            "splits": splits,
            "files": [e.__dict__ for e in self.files],
        }

    @property
    def fingerprint(self) -> str:
        return self.manifest()["fingerprint"]

    def documents(self, split: str) -> Iterator[tuple[str, str]]:
        if split not in SPLITS:
            from downsize.errors import DownsizeError

            raise DownsizeError(f"unknown split {split!r}", hint=f"choose one of {', '.join(SPLITS)}")
        for e in self.files:
            if e.split == split:
                text = (self.root / e.path).read_bytes().decode("utf-8", errors="replace")
                yield e.path, text


def corpus_warning(trained_fingerprint: str | None, corpus: StdlibCorpus | None = None) -> str | None:
    """A warning when the local corpus differs from the one a zoo model was trained on."""
    if not trained_fingerprint:
        return None
    corpus = corpus or StdlibCorpus.local()
    local = corpus.fingerprint
    if local == trained_fingerprint:
        return None
    return (
        f"the local zoo:stdlib corpus (fingerprint {local[:12]}, Python {sys.version.split()[0]}) differs from the "
        f"one this model was trained on ({trained_fingerprint[:12]}); perplexities are not comparable with its model card"
    )
