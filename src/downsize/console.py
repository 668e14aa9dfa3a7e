"""Console hygiene: quiet third-party output by default, and numbers in human units.

    >>> from downsize.console import fmt_bytes, fmt_rate, fmt_duration, fmt_params, fmt_ratio
    >>> fmt_bytes(5252576), fmt_rate(1449.0322), fmt_duration(200), fmt_params(15_700_000)
    ('5.0 MiB', '1,449 tok/s', '3 min 20 s', '15.7M')
    >>> fmt_ratio(4.0, 30.0, smaller_is_better=True)     # 30 MB teacher, 4 MB student
    '×7.5 smaller'
    >>> quiet_third_party(verbose=False)   # the CLI calls this once; --verbose passes True

Third-party libraries print progress bars and advisories meant for their own developers
(transformers' "Loading weights" bar and "Token indices sequence length…" warning, gguf's
"Writing the following files…", huggingface_hub's upload bars). ``quiet_third_party`` turns
them off in this process and, through environment variables, in the child processes downsize
starts (speed measurements); downsize's own progress and messages are not affected.

downsize's own progress bars all come from ``progress`` (tqdm, on stderr): one line per long step
(training steps, eval windows, calibration batches, pruned layers, converted and quantized tensors,
cache writing, generation), with its rate and ETA, cleared when the step ends (the stage's summary
line replaces it). Bars are drawn only when stderr is a terminal: in pytest's captured output, a pipe
or CI logs they are off (no carriage-return lines), and ``DOWNSIZE_PROGRESS=1`` forces them on there
(redrawn at most every 30 s), ``DOWNSIZE_PROGRESS=0`` off everywhere. ``progress_scope(False)``
turns them off for a block (``run_recipe(progress=False)``, ``TrainConfig(progress=False)``).

    >>> with progress_scope(False):
    ...     sum(progress(range(3), desc="demo"))       # a plain iteration when bars are off
    3
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import math
import os
import sys

# Loggers of libraries whose INFO output is noise at a downsize prompt (gguf's writer logs every file it opens).
THIRD_PARTY_LOGGERS = ("gguf", "gguf.gguf_writer", "gguf.gguf_reader", "gguf.vocab", "gguf.lazy", "metadata",
                       "transformers", "huggingface_hub", "accelerate", "datasets", "peft", "urllib3", "httpx")
# Read by transformers and huggingface_hub at import, so child processes start quiet too.
QUIET_ENV = {"TRANSFORMERS_VERBOSITY": "error", "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
             "HF_HUB_DISABLE_PROGRESS_BARS": "1", "TOKENIZERS_PARALLELISM": "false"}


def quiet_third_party(verbose: bool = False) -> None:
    """Silence (``verbose=False``) or restore (``True``) third-party progress bars, warnings and INFO logs."""
    level = logging.INFO if verbose else logging.ERROR
    if verbose and not logging.getLogger().handlers:  # INFO records need a handler to be seen at all
        logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    for name in THIRD_PARTY_LOGGERS:
        logging.getLogger(name).setLevel(level)
    if not verbose:
        for k, v in QUIET_ENV.items():
            os.environ.setdefault(k, v)
    try:
        from transformers.utils import logging as tf_logging

        if verbose:
            tf_logging.set_verbosity_info()
            tf_logging.enable_progress_bar()
        else:
            tf_logging.set_verbosity_error()
            tf_logging.disable_progress_bar()
    except ImportError:  # transformers is a dependency, but console helpers must not need it
        pass
    try:
        from huggingface_hub.utils import disable_progress_bars, enable_progress_bars

        enable_progress_bars() if verbose else disable_progress_bars()
    except ImportError:
        pass


PROGRESS_ENV = "DOWNSIZE_PROGRESS"  # 1: bars even when stderr is not a terminal; 0: never
_OFF_TTY_INTERVAL_S = 30.0  # redraw interval of a bar forced on where stderr is not a terminal (logs)
_progress_on: contextvars.ContextVar[bool] = contextvars.ContextVar("downsize_progress", default=True)


@contextlib.contextmanager
def progress_scope(enabled: bool):
    """Bars on (``True``: as the terminal allows) or off (``False``) for the calls inside the block."""
    token = _progress_on.set(_progress_on.get() and enabled)
    try:
        yield
    finally:
        _progress_on.reset(token)


def bars_enabled(enabled: bool = True) -> bool:
    """Whether a bar asked for with ``enabled`` is drawn: the scope, ``DOWNSIZE_PROGRESS``, a terminal on stderr."""
    if not (enabled and _progress_on.get()):
        return False
    env = os.environ.get(PROGRESS_ENV, "").strip().lower()
    if env in ("0", "false", "no", "off"):
        return False
    if env in ("1", "true", "yes", "on"):
        return True
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stderr
        return False


def progress(iterable=None, *, total: float | None = None, desc: str | None = None, unit: str = "it",
             enabled: bool = True, leave: bool = False, **kwargs):
    """downsize's one progress bar: a tqdm on stderr, or a disabled one (plain iteration, no-op updates).

    ``unit="tok"`` with updates by token counts shows tok/s; ``set_postfix`` adds loss and the like.
    ``leave=False`` clears the line when the step ends, so a stage's summary line stands alone.
    """
    from tqdm.auto import tqdm

    on = bars_enabled(enabled)
    interval = {} if not on or sys.stderr.isatty() else {"mininterval": _OFF_TTY_INTERVAL_S}
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=not on, leave=leave, dynamic_ncols=True,
                unit_scale=unit == "tok" and (total or 0) >= 10_000, file=sys.stderr, **{**interval, **kwargs})


def progress_logging():
    """While bars are on: log records go through ``tqdm.write`` so they print above the bar, not into it."""
    if not bars_enabled():
        return contextlib.nullcontext()
    from tqdm.contrib.logging import logging_redirect_tqdm

    return logging_redirect_tqdm()


_BYTE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def fmt_bytes(n: float | None) -> str:
    """Bytes in binary units with one decimal: 5252576 -> '5.0 MiB', 512 -> '512 B'."""
    if n is None:
        return "–"
    n = float(n)
    i = 0
    while abs(n) >= 1024 and i < len(_BYTE_UNITS) - 1:
        n /= 1024
        i += 1
    return f"{n:.0f} {_BYTE_UNITS[i]}" if i == 0 else f"{n:.1f} {_BYTE_UNITS[i]}"


def fmt_mib(mib: float | None) -> str:
    """A size already in MiB (the unit of the eval rows): 30.02 -> '30.0 MiB'."""
    return "–" if mib is None else fmt_bytes(mib * 2**20)


def fmt_sig(x: float, digits: int = 3) -> str:
    """``digits`` significant figures without scientific notation, thousands separated: 1449.03 -> '1,449'."""
    if x == 0 or not math.isfinite(x):
        return f"{x:g}"
    decimals = max(0, digits - 1 - int(math.floor(math.log10(abs(x)))))
    return f"{x:,.{decimals}f}"


def fmt_rate(tok_s: float | None, unit: str = "tok/s") -> str:
    """Throughput to three significant figures: 1449.03 -> '1,449 tok/s', 14.49 -> '14.5 tok/s'."""
    return "–" if tok_s is None else f"{fmt_sig(tok_s)} {unit}"


def fmt_duration(seconds: float | None) -> str:
    """'0.42 s', '45 s', '3 min 20 s', '2 h 05 min'."""
    if seconds is None:
        return "–"
    s = float(seconds)
    if s < 10:
        digits = fmt_sig(s, 2)
        return (digits.rstrip("0").rstrip(".") if "." in digits else digits) + " s"
    if s < 60:
        return f"{s:.0f} s"
    if s < 3600:
        m, r = divmod(round(s), 60)
        return f"{m} min {r} s" if r else f"{m} min"
    h, r = divmod(round(s / 60), 60)
    return f"{h} h {r:02d} min"


def fmt_params(n: int | float | None) -> str:
    """Parameter counts: 15_700_000 -> '15.7M', 1_540_000_000 -> '1.54B', 4200 -> '4.2k'."""
    if n is None:
        return "–"
    for div, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            digits = fmt_sig(n / div)
            return (digits.rstrip("0").rstrip(".") if "." in digits else digits) + suffix
    return str(int(n))


def ratio(value: float | None, reference: float | None) -> float | None:
    """value / reference, or None where either is missing or the reference is zero."""
    if value is None or reference is None or reference == 0:
        return None
    return value / reference


def fmt_ratio(value: float | None, reference: float | None, smaller_is_better: bool,
              better: str = "", worse: str = "") -> str:
    """A ratio as a person says it: '×7.5 smaller', '×3.1 faster', '×1.2 slower', 'same'.

    ``better``/``worse`` name the direction (defaults: smaller/larger when smaller is better,
    faster/slower otherwise).
    """
    r = ratio(value, reference)
    if r is None or r <= 0:
        return "–"
    better = better or ("smaller" if smaller_is_better else "faster")
    worse = worse or ("larger" if smaller_is_better else "slower")
    improved = r < 1 if smaller_is_better else r > 1
    factor = 1 / r if r < 1 else r
    if abs(factor - 1) < 0.005:
        return "same"
    return f"×{fmt_sig(factor, 2 if factor < 10 else 3)} {better if improved else worse}"


def fmt_pct_change(value: float | None, reference: float | None) -> str:
    """Relative change in percent with its sign: 12.6 against 12.0 -> '+5.0 %'."""
    r = ratio(value, reference)
    if r is None:
        return "–"
    pct = 100 * (r - 1)
    return f"{pct:+.1f} %" if abs(pct) < 1000 else f"{pct:+,.0f} %"
