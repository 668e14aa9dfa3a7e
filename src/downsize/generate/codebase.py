"""Facts about a Python codebase, found with ``ast``: classes and their bases, functions and their
parameters, imports, files. Templates are filled from these facts and their answers computed from them.

    >>> from pathlib import Path
    >>> Path("repo/pkg").mkdir(parents=True)
    >>> _ = Path("repo/pkg/io.py").write_text("class ParseError(ValueError):\\n    pass\\n"
    ...                                       "def load(path, mode):\\n    return open(path, mode)\\n")
    >>> facts = scan_codebase("repo")
    >>> facts.subclasses["ValueError"]            # bases by their last dotted name
    ['ParseError']
    >>> facts.functions[0]
    FunctionFact(name='load', file='pkg/io.py', params=('path', 'mode'), cls=None)
"""

from __future__ import annotations

import ast
import logging
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from downsize.errors import DownsizeError

log = logging.getLogger(__name__)

SKIP_DIRS = {"__pycache__", "node_modules", "build", "dist"}


@dataclass(frozen=True)
class ClassFact:
    name: str
    file: str  # relative posix path
    bases: tuple[str, ...]  # last component of each dotted base name


@dataclass(frozen=True)
class FunctionFact:
    name: str
    file: str
    params: tuple[str, ...]  # positional, keyword-only, *args, **kwargs names; 'self'/'cls' dropped
    cls: str | None = None  # enclosing class for methods


@dataclass
class CodebaseFacts:
    root: Path
    files: list[str] = field(default_factory=list)  # every .py file (relative posix), sorted
    classes: list[ClassFact] = field(default_factory=list)
    functions: list[FunctionFact] = field(default_factory=list)
    imports: dict[str, list[str]] = field(default_factory=dict)  # top-level module -> files importing it
    unparsable: list[str] = field(default_factory=list)

    @property
    def subclasses(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = defaultdict(list)
        for c in self.classes:
            for b in c.bases:
                out[b].append(c.name)
        return {k: sorted(set(v)) for k, v in out.items()}

    def top_level_functions(self, file: str) -> list[str]:
        return sorted({f.name for f in self.functions if f.file == file and f.cls is None})

    def dirs(self) -> dict[str, list[str]]:
        """Directory (relative, '.' for the root) -> the .py files directly in it."""
        out: dict[str, list[str]] = defaultdict(list)
        for f in self.files:
            d = os.path.dirname(f) or "."
            out[d].append(f)
        return dict(out)


def _base_name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Subscript):  # Generic[T], Protocol[T]
        return _base_name(node.value)
    return None


def _params(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> tuple[str, ...]:
    a = fn.args
    names = [x.arg for x in (*a.posonlyargs, *a.args)]
    if a.vararg:
        names.append(a.vararg.arg)
    names += [x.arg for x in a.kwonlyargs]
    if a.kwarg:
        names.append(a.kwarg.arg)
    if names and names[0] in ("self", "cls"):
        names = names[1:]
    return tuple(names)


def scan_codebase(root: str | os.PathLike, max_files: int = 5000) -> CodebaseFacts:
    """Parse every ``.py`` file under root (hidden and build folders skipped, symlinks not followed)."""
    root = Path(root)
    if not root.is_dir():
        raise DownsizeError(f"--codebase {root} is not a directory", hint="point it at the root of a Python repository")
    facts = CodebaseFacts(root=root.resolve())
    imports: dict[str, set[str]] = defaultdict(set)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in SKIP_DIRS)
        for name in sorted(filenames):
            if not name.endswith(".py") or name.startswith("."):
                continue
            path = Path(dirpath) / name
            if path.is_symlink():
                continue
            rel = path.relative_to(root).as_posix()
            try:
                tree = ast.parse(path.read_text(encoding="utf-8"), filename=rel)
            except (SyntaxError, UnicodeDecodeError, ValueError) as e:
                log.info("skipping %s: %s", rel, e)
                facts.unparsable.append(rel)
                continue
            facts.files.append(rel)
            _collect(tree, rel, facts, imports)
            if len(facts.files) >= max_files:
                break
    facts.files.sort()
    facts.imports = {m: sorted(fs) for m, fs in sorted(imports.items())}
    if not facts.files:
        raise DownsizeError(f"no parsable Python files under {root}", hint="templates are filled from .py files; point --codebase at a Python project")
    return facts


def _collect(tree: ast.Module, rel: str, facts: CodebaseFacts, imports: dict[str, set[str]]) -> None:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                imports[a.name.split(".")[0]].add(rel)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imports[node.module.split(".")[0]].add(rel)
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            bases = tuple(b for b in (_base_name(x) for x in node.bases) if b)
            facts.classes.append(ClassFact(node.name, rel, bases))
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    facts.functions.append(FunctionFact(item.name, rel, _params(item), cls=node.name))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            facts.functions.append(FunctionFact(node.name, rel, _params(node)))
