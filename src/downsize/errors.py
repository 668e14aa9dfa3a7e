"""User-facing errors: each says what is wrong and how to fix it.

    >>> raise DownsizeError("no model at ./x", hint="pass a Hugging Face directory, zoo:NAME or a .gguf file")
"""

from __future__ import annotations


class DownsizeError(Exception):
    """An error caused by the user's input; the CLI prints it without a traceback and exits 2."""

    def __init__(self, message: str, hint: str | None = None):
        self.message = message
        self.hint = hint
        super().__init__(message if hint is None else f"{message}\n  hint: {hint}")


class NotBuiltYet(DownsizeError):
    """A command the product will have but that this version does not implement."""
