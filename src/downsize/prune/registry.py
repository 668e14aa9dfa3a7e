"""The registry of prune methods: ``@register_method("wanda", targets=())``; a miss lists what exists."""

from __future__ import annotations
from downsize.registry import Registry

from dataclasses import dataclass
from typing import Callable

METHODS: Registry["Method"] = Registry("prune method")


@dataclass(frozen=True)
class Method:
    name: str
    fn: Callable  # fn(model, adapter, cfg, calib: LongTensor (N, T)) -> report dict
    check: Callable  # check(model, adapter, cfg) -> None; raises DownsizeError before any work
    targets: tuple[str, ...]
    structured: bool
    needs_calib: bool = True


def register_method(name: str, check: Callable, targets: tuple[str, ...] = (), structured: bool = False,
                    needs_calib: bool = True):
    def wrap(fn):
        METHODS.add(name, Method(name, fn, check, targets, structured, needs_calib))
        return fn

    return wrap


def _load_all() -> None:
    from downsize.prune import depth, lowrank, sparse, width  # noqa: F401


_load_all_done = False


def ensure_loaded() -> None:
    global _load_all_done
    if not _load_all_done:
        _load_all_done = True
        _load_all()
