"""User-facing errors, and the one boundary that turns every expected failure into a message.

    >>> raise DownsizeError("no model at ./x", hint="pass a Hugging Face directory, zoo:NAME or a .gguf file")
    Traceback (most recent call last):
    downsize.errors.DownsizeError: no model at ./x
      hint: pass a Hugging Face directory, zoo:NAME or a .gguf file
    >>> import sys
    >>> from downsize.cli import app
    >>> run_guarded(lambda: app(["zoo", "path", "no-such-model"]), debug=False, stream=sys.stdout)  # what `downsize` does
    error: no zoo model called 'no-such-model' (from 'zoo:no-such-model')
      hint: shipped zoo models: coder-teacher, coder-teacher-qwen
    2

``run_guarded`` prints ``error: WHAT (WHERE)`` and ``hint: HOW TO FIX`` on stderr, never a traceback,
and returns 2 for bad input or a failing environment (full disk, read-only or missing folder,
permission, a corrupt file); an unexpected exception is a bug in downsize and returns 1 with a
one-line summary. ``debug=True`` (``--debug``, or ``DOWNSIZE_DEBUG=1``) prints the traceback as well.
Every text that comes from the user (paths, values, file contents) is printed literally, never as
rich markup.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import sys
import traceback
from typing import Callable

DEBUG_ENV = "DOWNSIZE_DEBUG"
EXIT_USER = 2  # bad input or environment: the message says how to fix it
EXIT_BUG = 1  # an unexpected exception: a bug to report
EXIT_INTERRUPTED = 130


class DownsizeError(Exception):
    """An error caused by the user's input; the CLI prints it without a traceback and exits 2."""

    def __init__(self, message: str, hint: str | None = None):
        self.message = message
        self.hint = hint
        super().__init__(message if hint is None else f"{message}\n  hint: {hint}")


class NotBuiltYet(DownsizeError):
    """A command the product will have but that this version does not implement."""


@contextlib.contextmanager
def reading(what: object):
    """Word a decoding failure while reading ``what`` (a path or data reference) as a DownsizeError naming it."""
    try:
        yield
    except UnicodeDecodeError as e:
        raise DownsizeError(f"{what} is not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start})",
                            hint="pass text files (UTF-8); binary files and other encodings are not read") from None


def debug_enabled() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


# errno -> (what went wrong, how to fix it); the path comes from the exception.
_OS_ERRORS: dict[int, tuple[str, str]] = {
    errno.ENOSPC: ("no space left on the device", "free some space or write to another disk (--out)"),
    errno.EDQUOT: ("the disk quota is exhausted", "free some space or write to another disk (--out)"),
    errno.EROFS: ("the file system is read-only", "write to a writable folder (--out)"),
    errno.EACCES: ("permission denied", "check the owner and mode of the path (ls -l), or choose another path"),
    errno.EPERM: ("operation not permitted", "check the owner and mode of the path (ls -l), or choose another path"),
    errno.ENOENT: ("no such file or folder", "check the path"),
    errno.ENOTDIR: ("a component of the path is a file, not a folder", "check the path; choose an --out inside a folder"),
    errno.EISDIR: ("a folder is where a file was expected", "give the path of a file"),
    errno.ENAMETOOLONG: ("the file name is too long", "choose a shorter path"),
    errno.EMFILE: ("too many open files", "raise the limit (ulimit -n) or use fewer workers"),
    errno.EIO: ("an input/output error (the disk or the network file system failed)", "check the disk, then rerun"),
    errno.EXDEV: ("the output crosses file systems", "keep --out on one file system"),
}


def _os_message(e: OSError) -> tuple[str, str]:
    what, hint = _OS_ERRORS.get(e.errno or -1, (e.strerror or str(e), "check the path and rerun"))
    where = " → ".join(str(p) for p in (e.filename, e.filename2) if p is not None)
    return (f"{what}: {where}" if where else what), hint


def _known_foreign(e: BaseException) -> tuple[str, str] | None:
    """Exceptions of libraries that always mean bad input (a damaged file, a bad value), never a bug here."""
    name = type(e).__name__
    mod = type(e).__module__ or ""
    text = str(e).strip().splitlines()[0] if str(e).strip() else name
    if name == "SafetensorError" or mod.startswith("safetensors"):
        os_errno = re.search(r"\(os error (\d+)\)", text)  # an I/O failure while writing, not a damaged file
        if os_errno and int(os_errno.group(1)) in _OS_ERRORS:
            what, hint = _OS_ERRORS[int(os_errno.group(1))]
            return f"{what} (while writing a safetensors file)", hint
        return f"a safetensors file is damaged: {text}", "re-save the model (save_pretrained) or copy the file again"
    if name == "UnpicklingError":
        return ("a pickled checkpoint was refused: loading it would run code it carries",
                "downsize loads pickles only with weights_only; convert the checkpoint to safetensors where you trust it")
    if name in ("YAMLError", "ScannerError", "ParserError", "ComposerError", "ConstructorError") or mod.startswith("yaml"):
        return f"not valid YAML: {text}", "fix the YAML syntax at the line shown"
    if name == "JSONDecodeError":
        return f"not valid JSON: {text}", "fix or regenerate the file"
    if isinstance(e, UnicodeDecodeError):
        return f"a file is not UTF-8 text ({text})", "pass a text file (UTF-8), or convert it"
    if isinstance(e, MemoryError):
        return "out of memory", "use a smaller batch size, sequence length or model, or a machine with more RAM"
    return None


def _print(stream, label: str, message: str, hint: str | None) -> None:
    from rich.console import Console
    from rich.text import Text

    c = Console(file=stream, soft_wrap=True, highlight=False)
    line = Text(f"{label}: ", style="bold red")
    line.append(message)  # Text.append never parses markup: user paths like "[/x]" print as written
    c.print(line)
    if hint:
        h = Text("  hint: ", style="cyan")
        h.append(hint)
        c.print(h)


def report(e: BaseException, debug: bool = False, stream=None) -> int:
    """Print ``e`` as a message (and the traceback with ``debug``); return the exit code."""
    stream = stream or sys.stderr
    if debug:
        traceback.print_exception(e, file=stream)
    if isinstance(e, DownsizeError):
        _print(stream, "error", e.message, e.hint)
        return EXIT_USER
    if isinstance(e, KeyboardInterrupt):
        _print(stream, "interrupted", "stopped by the user", "rerun the same command to resume where it can")
        return EXIT_INTERRUPTED
    if isinstance(e, OSError) and e.errno is not None:
        what, hint = _os_message(e)
        _print(stream, "error", what, hint)
        return EXIT_USER
    known = _known_foreign(e)
    if known is not None:
        _print(stream, "error", *known)
        return EXIT_USER
    _print(stream, "internal error", f"{type(e).__name__}: {e}",
           f"this is a bug in downsize; rerun with --debug (or {DEBUG_ENV}=1) for the traceback and report it")
    return EXIT_BUG


def run_guarded(fn: Callable[[], object], debug: bool | None = None, stream=None) -> int:
    """Call ``fn`` (the CLI app); return 0, its ``SystemExit`` code, or ``report``'s code for an exception."""
    debug = debug_enabled() if debug is None else debug
    try:
        fn()
    except SystemExit as e:
        code = e.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except BaseException as e:  # noqa: BLE001 - this is the boundary: everything is reported here
        return report(e, debug, stream)
    return 0
