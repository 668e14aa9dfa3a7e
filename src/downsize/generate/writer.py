"""Append-only JSONL with whole-line writes and resume by id.

    >>> with JsonlAppender("out.jsonl") as w:
    ...     w.append({"id": "abc123", "text": "one"})          # one os.write of one complete line, then fsync
    >>> _ = open("out.jsonl", "a").write('{"id": "torn')        # a killed run leaves a torn last line
    >>> w = JsonlAppender("out.jsonl")                         # ... which this repairs
    >>> "abc123" in w.ids, len(read_jsonl("out.jsonl"))        # ids already written (skip them)
    (True, 1)
    >>> w.close()

A line is written with a single ``write`` on an ``O_APPEND`` descriptor and flushed to disk before
``append`` returns, so a reader never sees half a record from this process. If the process is
killed inside that write, the file can end in a partial line; the next open cuts that tail
(logging how many bytes) and the record is produced again — nothing lost, nothing doubled.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path

log = logging.getLogger(__name__)

ID_KEY = "id"


class JsonlAppender:
    """``fresh=True`` ignores what the file holds and replaces it when the file is opened for writing (until
    then it is untouched). The file is created by ``create()`` or the first append, not by the constructor,
    so a caller that fails before it starts writing leaves no empty file behind."""

    def __init__(self, path: str | os.PathLike, fsync: bool = True, fresh: bool = False):
        self.path = Path(path)
        self.fsync = fsync
        self.fresh = fresh
        self.ids: set[str] = set()
        self.repaired_bytes = 0
        self._lock = threading.Lock()
        self._fd = -1
        if not fresh:
            self._scan()

    def create(self) -> None:
        """Create (or, with ``fresh``, empty) the file now, before the first record."""
        with self._lock:
            if self._fd < 0:
                self._open()

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | (os.O_TRUNC if self.fresh else 0)
        self._fd = os.open(self.path, flags, 0o666)  # the umask decides, as for any file the user creates

    def _scan(self) -> None:
        if not self.path.exists():
            return
        with open(self.path, "rb+") as f:
            data = f.read()
            keep = data.rfind(b"\n") + 1  # bytes up to and including the last newline
            if keep < len(data):
                self.repaired_bytes = len(data) - keep
                log.warning("%s: cutting a torn last line (%d bytes) left by an interrupted run", self.path, self.repaired_bytes)
                f.truncate(keep)
                data = data[:keep]
        for lineno, line in enumerate(data.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                self.ids.add(str(rec[ID_KEY]))
            except (json.JSONDecodeError, KeyError, TypeError):
                log.warning("%s line %d is not a JSON record with an id; it is kept but ignored", self.path, lineno)

    def append(self, record: dict) -> None:
        line = (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
        with self._lock:
            if self._fd < 0:
                self._open()
            view = memoryview(line)
            while view:  # a regular file takes the whole buffer in one write; loop only for safety
                n = os.write(self._fd, view)
                view = view[n:]
            if self.fsync:
                os.fsync(self._fd)
            self.ids.add(str(record[ID_KEY]))

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
