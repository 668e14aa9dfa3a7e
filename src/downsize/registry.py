"""One registry type for every named, pluggable thing: stages, model families, losses, prune methods, chat styles.

    >>> from downsize.registry import Registry
    >>> SHAPES = Registry("shape")
    >>> @SHAPES.register("square")
    ... def square(x):
    ...     return x * x
    >>> SHAPES["square"](3)
    9
    >>> SHAPES.get("cube")
    Traceback (most recent call last):
    ...
    downsize.errors.DownsizeError: unknown shape 'cube'; available: square

Registering a name twice raises (two modules claiming one name is a bug, not an override); a miss
raises ``DownsizeError`` that lists what exists, so a typo in a recipe or on the command line gets a
message, not a ``KeyError``. Entries may be lazy (``"package.module:attr"``), imported on first use,
so a registry can name things whose modules are expensive to import.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Callable, Generic, Iterator, TypeVar

from downsize.errors import DownsizeError

T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries of one kind; ``base`` (optional) is checked on registration."""

    def __init__(self, kind: str, base: type | None = None):
        self.kind = kind
        self.base = base
        self._entries: dict[str, T | str] = {}

    def add(self, name: str, entry: T | str) -> T | str:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        if self.base is not None and not isinstance(entry, str):
            ok = issubclass(entry, self.base) if isinstance(entry, type) else isinstance(entry, self.base)
            if not ok:
                raise TypeError(f"{self.kind} {name!r} must be a {self.base.__name__}, got {entry!r}")
        self._entries[name] = entry
        return entry

    def register(self, *names: str) -> Callable[[T], T]:
        """Decorator: register the decorated object under each of ``names``."""
        def deco(obj: T) -> T:
            for n in names:
                self.add(n, obj)
            return obj
        return deco

    def get(self, name: str) -> T:
        if name not in self._entries:
            close = difflib.get_close_matches(str(name), list(self._entries), n=1)
            hint = f"did you mean {close[0]!r}?" if close else None
            raise DownsizeError(f"unknown {self.kind} {name!r}; available: {', '.join(sorted(self._entries))}", hint=hint)
        entry = self._entries[name]
        if isinstance(entry, str):  # lazy "module:attr"
            module, _, attr = entry.partition(":")
            entry = getattr(importlib.import_module(module), attr)
            self._entries[name] = entry
        return entry  # type: ignore[return-value]

    __getitem__ = get

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def keys(self):  # dict(registry) is a plain copy of its (loaded) entries
        return self._entries.keys()

    def names(self) -> list[str]:
        return list(self._entries)

    def values(self) -> list[T]:
        return [self.get(n) for n in self._entries]

    def items(self) -> list[tuple[str, T]]:
        return [(n, self.get(n)) for n in self._entries]

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._entries)})"
