"""Data references, resolved in one place for every command.

    >>> resolve_data("zoo:stdlib").texts("validation")     # the reference corpus split
    >>> resolve_data("notes.txt").texts()                   # one document
    >>> resolve_data("src/").texts()                        # every text file below, sorted
    >>> resolve_data("train.jsonl").records()               # {"text": ...} or {"messages": [...]} per line

Splits of user data are taken by a hash of each document's id (path or line number), like the
stdlib corpus, so they are stable; ``split="all"`` (the default for user data) takes everything.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from downsize.data.stdlib import SPLITS, StdlibCorpus, split_of
from downsize.errors import DownsizeError

TEXT_SUFFIXES = {".txt", ".md", ".rst", ".py", ".json", ".yaml", ".yml", ".toml", ".c", ".h", ".cpp", ".js",
                 ".ts", ".go", ".rs", ".java", ".sh", ".html", ".css", ".csv", ".tex", ".ini", ".cfg"}
ALL = "all"


@dataclass(frozen=True)
class DataRef:
    ref: str
    kind: str  # "stdlib", "text", "dir", "jsonl"
    path: Path | None

    @property
    def default_split(self) -> str:
        return "validation" if self.kind == "stdlib" else ALL

    def records(self, split: str | None = None) -> Iterator[dict]:
        """Each document as a record: ``{"id", "text"}`` or ``{"id", "messages"}`` (chat JSONL)."""
        split = split or self.default_split
        if split != ALL and split not in SPLITS:
            raise DownsizeError(f"unknown split {split!r}", hint=f"choose one of {', '.join((*SPLITS, ALL))}")
        for rec in _READERS[self.kind](self, split):
            if split == ALL or self.kind == "stdlib" or split_of(rec["id"]) == split:
                yield rec

    def texts(self, split: str | None = None, tokenizer=None) -> Iterator[str]:
        """Plain text of each document; chat records are rendered with ``tokenizer``'s chat template."""
        for rec in self.records(split):
            if "text" in rec:
                yield rec["text"]
            elif tokenizer is None or not getattr(tokenizer, "chat_template", None):
                raise DownsizeError(f"{self.ref} holds chat messages, which need a tokenizer with a chat template",
                                    hint="use a model whose tokenizer has a chat_template, or give {\"text\": ...} records")
            else:
                yield tokenizer.apply_chat_template(rec["messages"], tokenize=False)


def _read_stdlib(ref: DataRef, split: str) -> Iterator[dict]:
    corpus = StdlibCorpus.local()
    splits = SPLITS if split == ALL else (split,)
    for s in splits:
        for path, text in corpus.documents(s):
            yield {"id": path, "text": text}


def _read_text(ref: DataRef, split: str) -> Iterator[dict]:
    yield {"id": ref.path.name, "text": _read_utf8(ref.path)}


def _read_dir(ref: DataRef, split: str) -> Iterator[dict]:
    for p in sorted(ref.path.rglob("*")):
        if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES and not any(part.startswith(".") for part in p.relative_to(ref.path).parts):
            yield {"id": p.relative_to(ref.path).as_posix(), "text": _read_utf8(p)}


def _read_jsonl(ref: DataRef, split: str) -> Iterator[dict]:
    with open(ref.path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DownsizeError(f"{ref.path}:{lineno}: not valid JSON ({e.msg})",
                                    hint="each line must be one JSON object: {\"text\": ...} or {\"messages\": [...]}") from None
            rid = str(obj.get("id", lineno)) if isinstance(obj, dict) else str(lineno)
            if isinstance(obj, dict) and isinstance(obj.get("text"), str):
                yield {"id": rid, "text": obj["text"]}
            elif isinstance(obj, dict) and isinstance(obj.get("messages"), list):
                yield {"id": rid, "messages": obj["messages"]}
            else:
                raise DownsizeError(f"{ref.path}:{lineno}: a record needs a string 'text' or a list 'messages'",
                                    hint="write {\"text\": \"...\"} for plain text or {\"messages\": [{\"role\": ..., \"content\": ...}]} for chat")


_READERS = {"stdlib": _read_stdlib, "text": _read_text, "dir": _read_dir, "jsonl": _read_jsonl}


def _read_utf8(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DownsizeError(f"{path} is not UTF-8 text (byte {e.start})", hint="convert it to UTF-8 or leave it out") from None


DATA_SCHEMES = {"zoo:stdlib": "stdlib"}


def resolve_data(ref: str) -> DataRef:
    ref = str(ref)
    if ref.startswith("zoo:"):
        if ref not in DATA_SCHEMES:
            raise DownsizeError(f"no zoo dataset called {ref[4:]!r}", hint=f"available: {', '.join(DATA_SCHEMES)}")
        return DataRef(ref, DATA_SCHEMES[ref], None)
    path = Path(ref).expanduser()
    if not path.exists():
        raise DownsizeError(f"no data at {ref!r}: the path does not exist",
                            hint="pass a text file, a directory of text files, a .jsonl file or zoo:stdlib")
    if path.is_dir():
        if not any(p.is_file() and p.suffix.lower() in TEXT_SUFFIXES for p in path.rglob("*")):
            raise DownsizeError(f"the directory {path} holds no text files ({', '.join(sorted(TEXT_SUFFIXES)[:6])}, ...)",
                                hint="point at a folder of .txt/.py/.md files, or at a .jsonl file")
        return DataRef(ref, "dir", path)
    if path.stat().st_size == 0:
        raise DownsizeError(f"the data file {path} is empty", hint="give a file with some text in it")
    return DataRef(ref, "jsonl" if path.suffix.lower() in (".jsonl", ".ndjson") else "text", path)
