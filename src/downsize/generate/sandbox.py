"""A read-only tool sandbox over one repository: list files, read a file, search text.

    >>> from pathlib import Path
    >>> Path("repo/pkg").mkdir(parents=True)
    >>> _ = Path("repo/pkg/mod.py").write_text("from typing import Protocol\\n\\nclass Foo(Protocol):\\n    x: int\\n")
    >>> box = Sandbox("repo")
    >>> print(box.call("read_file", '{"path": "pkg/mod.py"}'))   # the model's JSON arguments, or a dict
    from typing import Protocol
    <BLANKLINE>
    class Foo(Protocol):
        x: int
    >>> box.call("grep", {"pattern": "class .*Protocol"})
    'pkg/mod.py:3: class Foo(Protocol):'
    >>> box.call("read_file", {"path": "../etc/passwd"})        # an error string, never raises for model input
    "error: '..' is not allowed in paths ('../etc/passwd')"

Confinement: paths are relative to the root; absolute paths and any ``..`` component are refused;
the real path (symlinks resolved) must stay inside the root, so a symlink pointing out is refused
too. A file with several hard links is read only when every one of its links is inside the root
(counted by (device, inode) over the whole tree, hidden folders included): a hard link from inside
to a file outside — which no path check can see — is refused. Named pipes, sockets and devices are
reported as what they are and never opened for reading (a FIFO would block, a device never end).
Nothing runs a shell or a subprocess.

Limits hold within a file, not only between files: files are read line by line (at most
``max_line`` bytes of a line are kept; longer lines are skipped by grep, so memory stays bounded
whatever the file size), the deadline is checked every line, and each regex search runs with the
``regex`` package's timeout set to the time left of the call, so a catastrophic pattern stops at the
deadline. That timeout counts the CPU time of the search: on an idle machine it is the wall time; on
one shared by busy processes the CPU a search burns stays bounded while its wall time stretches with
the contention. Model-caused problems come back as ``"error: ..."`` strings, which is what the model sees
as the tool result.
"""

from __future__ import annotations

import json
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import regex

from downsize.errors import DownsizeError

TOOL_LIST_FILES = "list_files"
TOOL_READ_FILE = "read_file"
TOOL_GREP = "grep"

# OpenAI tool schemas (the `tools` request field); the agent loop and the stored traces use them.
TOOL_SCHEMAS: list[dict] = [
    {"type": "function", "function": {
        "name": TOOL_LIST_FILES,
        "description": "List files under a directory of the repository (recursive), one relative path per line.",
        "parameters": {"type": "object", "properties": {
            "path": {"type": "string", "description": "directory relative to the repository root; '.' for the root"},
            "pattern": {"type": "string", "description": "optional glob on the file name, e.g. '*.py'"}},
            "required": []}}},
    {"type": "function", "function": {
        "name": TOOL_READ_FILE,
        "description": "Read a text file of the repository.",
        "parameters": {"type": "object", "properties": {
            "path": {"type": "string", "description": "file path relative to the repository root"}},
            "required": ["path"]}}},
    {"type": "function", "function": {
        "name": TOOL_GREP,
        "description": "Search files for a regular expression; returns 'path:line: text' for each match.",
        "parameters": {"type": "object", "properties": {
            "pattern": {"type": "string", "description": "Python regular expression"},
            "path": {"type": "string", "description": "file or directory to search, relative to the root; default '.'"}},
            "required": ["pattern"]}}},
]
TOOL_NAMES = tuple(t["function"]["name"] for t in TOOL_SCHEMAS)


_SPECIAL = {stat.S_IFIFO: "a named pipe (FIFO)", stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a character device",
            stat.S_IFBLK: "a block device"}


class ToolError(Exception):
    """A tool call the sandbox refuses or cannot run; its message goes back to the model."""


@dataclass(frozen=True)
class SandboxLimits:
    max_output: int = 8000  # characters returned per call
    max_seconds: float = 2.0  # wall time per call
    max_line: int = 2000  # grep skips longer lines
    max_pattern: int = 200  # grep refuses longer patterns
    max_files: int = 2000  # files visited per call


class Sandbox:
    def __init__(self, root: str | os.PathLike, limits: SandboxLimits = SandboxLimits()):
        root = Path(root)
        if not root.is_dir():
            raise DownsizeError(f"the tool sandbox root {root} is not a directory", hint="pass --codebase DIR pointing at a repository")
        self.root = Path(os.path.realpath(root))
        self.limits = limits
        self._links: dict[tuple[int, int], int] | None = None  # (st_dev, st_ino) -> links found inside the root
        self._tools: dict[str, Callable[..., str]] = {
            TOOL_LIST_FILES: self.list_files, TOOL_READ_FILE: self.read_file, TOOL_GREP: self.grep}

    # -- confinement -------------------------------------------------------------------------
    def resolve(self, rel: str | None) -> Path:
        """Map a model-given relative path to a real path inside the root, or raise ToolError."""
        rel = "." if rel in (None, "") else str(rel)
        if "\x00" in rel:
            raise ToolError("path contains a NUL byte")
        p = Path(rel)
        if p.is_absolute():
            raise ToolError(f"absolute paths are not allowed ({rel!r}); give a path relative to the repository root")
        if ".." in p.parts:
            raise ToolError(f"'..' is not allowed in paths ({rel!r})")
        real = Path(os.path.realpath(self.root / p))
        if real != self.root and self.root not in real.parents:
            raise ToolError(f"{rel!r} leads outside the repository (symlink)")
        if not real.exists():
            raise ToolError(f"no such file or directory: {rel!r}")
        return real

    def _links_inside(self, st: os.stat_result) -> int:
        """How many directory entries inside the root point at this inode (the tree is walked once)."""
        if self._links is None:
            counts: dict[tuple[int, int], int] = {}
            for dirpath, _dirs, files in os.walk(self.root, followlinks=False):
                for name in files:
                    try:
                        s = os.lstat(os.path.join(dirpath, name))
                    except OSError:
                        continue
                    if stat.S_ISREG(s.st_mode) and s.st_nlink > 1:
                        counts[(s.st_dev, s.st_ino)] = counts.get((s.st_dev, s.st_ino), 0) + 1
            self._links = counts
        return self._links.get((st.st_dev, st.st_ino), 0)

    def _open_regular(self, real: Path, rel: str):
        """Open a file for reading after checking what it is (on the descriptor: no race with a swap)."""
        st = os.lstat(real)
        kind = _SPECIAL.get(stat.S_IFMT(st.st_mode))
        if kind is not None:
            raise ToolError(f"{rel!r} is {kind}, not a regular file; it is not read")
        if stat.S_ISDIR(st.st_mode):
            raise ToolError(f"{rel!r} is a directory; use list_files")
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise ToolError(f"{rel!r} is not a regular file; it is not read")
            if st.st_nlink > 1 and self._links_inside(st) < st.st_nlink:
                raise ToolError(f"{rel!r} is a hard link to a file outside the repository; it is not read")
        except BaseException:
            os.close(fd)
            raise
        return os.fdopen(fd, "rb")

    def _lines(self, f, deadline: float) -> Iterator[tuple[int, bytes | None]]:
        """(line number, line) for each line, ``None`` for a line longer than max_line (its rest is skipped
        in bounded chunks); stops with TimeoutError at the deadline."""
        cap = self.limits.max_line
        i = 0
        while True:
            if time.monotonic() > deadline:
                raise TimeoutError
            line = f.readline(cap + 1)
            if not line:
                return
            i += 1
            if len(line) > cap and not line.endswith(b"\n"):
                while (rest := f.readline(1 << 16)) and not rest.endswith(b"\n"):
                    if time.monotonic() > deadline:
                        raise TimeoutError
                yield i, None
                continue
            yield i, line

    def _rel(self, real: Path) -> str:
        return real.relative_to(self.root).as_posix()

    def _walk(self, top: Path, deadline: float, state: dict):
        """Files under top (sorted, hidden entries skipped, symlinks leaving the root skipped).

        Stops at the time or file-count limit, saying so in ``state["stopped"]``.
        """
        if top.is_file():
            yield top
            return
        count = 0
        for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__pycache__")
            for name in sorted(filenames):
                if name.startswith("."):
                    continue
                path = Path(dirpath) / name
                real = Path(os.path.realpath(path))
                if self.root not in real.parents or not real.is_file():
                    continue  # symlinks out, FIFOs, sockets and devices are not listed or searched
                if count >= self.limits.max_files:
                    state["stopped"] = f"[stopped after {self.limits.max_files} files]"
                    return
                if count and time.monotonic() > deadline:
                    state["stopped"] = f"[stopped after {self.limits.max_seconds:g} s]"
                    return
                count += 1
                yield path

    def _clip(self, text: str) -> str:
        n = self.limits.max_output
        return text if len(text) <= n else text[:n] + f"\n[truncated: {len(text) - n} more characters]"

    # -- tools -------------------------------------------------------------------------------
    def list_files(self, path: str = ".", pattern: str | None = None) -> str:
        top = self.resolve(path)
        deadline = time.monotonic() + self.limits.max_seconds
        state: dict = {}
        out = [self._rel(p) for p in self._walk(top, deadline, state) if pattern is None or p.match(pattern)]
        if "stopped" in state:
            out.append(state["stopped"])
        return self._clip("\n".join(out) if out else "(no files)")

    def read_file(self, path: str) -> str:
        real = self.resolve(path)
        with self._open_regular(real, path) as f:
            data = f.read(self.limits.max_output * 4 + 1)
        if b"\x00" in data[:1024]:
            raise ToolError(f"{path!r} is a binary file")
        return self._clip(data.decode("utf-8", errors="replace"))

    def grep(self, pattern: str, path: str = ".") -> str:
        if len(pattern) > self.limits.max_pattern:
            raise ToolError(f"pattern longer than {self.limits.max_pattern} characters")
        try:
            rx = regex.compile(pattern)
        except (regex.error, ValueError, OverflowError) as e:
            raise ToolError(f"bad regular expression {pattern!r}: {e}") from None
        top = self.resolve(path)
        deadline = time.monotonic() + self.limits.max_seconds
        stopped = f"[stopped after {self.limits.max_seconds:g} s]"
        hits: list[str] = []
        size = 0
        state: dict = {}
        for f in self._walk(top, deadline, state):
            try:
                fh = self._open_regular(f, self._rel(f))
            except (ToolError, OSError):
                continue  # one unreadable file does not end the search
            try:
                with fh:
                    for i, raw in self._lines(fh, deadline):
                        if raw is None or b"\x00" in raw:
                            continue
                        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                        if rx.search(line, timeout=max(deadline - time.monotonic(), 1e-3)):
                            hit = f"{self._rel(f)}:{i}: {line.strip()}"
                            hits.append(hit)
                            size += len(hit) + 1
                            if size > self.limits.max_output:
                                return self._clip("\n".join(hits))
            except TimeoutError:
                hits.append(stopped)
                return self._clip("\n".join(hits))
        if "stopped" in state:
            hits.append(state["stopped"])
        return self._clip("\n".join(hits) if hits else "(no matches)")

    # -- dispatch ----------------------------------------------------------------------------
    def call(self, name: str, arguments: str | dict | None) -> str:
        """Run one tool call; every failure caused by the model's input becomes an ``error:`` result."""
        fn = self._tools.get(name)
        if fn is None:
            return f"error: unknown tool {name!r}; available: {', '.join(self._tools)}"
        try:
            args = parse_arguments(arguments)
            return fn(**args)
        except ToolError as e:
            return f"error: {e}"
        except TypeError as e:  # wrong or missing argument names
            return f"error: bad arguments for {name}: {e}"
        except OSError as e:
            return f"error: {e.strerror or e}"


def parse_arguments(arguments: str | dict | None) -> dict[str, Any]:
    """Tool-call arguments (a JSON string in the OpenAI format, or already a dict) -> dict, or ToolError."""
    if arguments is None or arguments == "":
        return {}
    if isinstance(arguments, dict):
        return arguments
    try:
        args = json.loads(arguments)
    except json.JSONDecodeError as e:
        raise ToolError(f"arguments are not valid JSON: {e}") from None
    if not isinstance(args, dict):
        raise ToolError("arguments must be a JSON object")
    return args
