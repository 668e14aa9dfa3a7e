"""Quantize a GGUF with llama.cpp's own quantizer (through llama-cpp-python's ``llama_model_quantize``),
optionally guided by an importance matrix (see ``downsize.export.imatrix``).

    >>> from downsize.export.gguf import export_gguf
    >>> _ = export_gguf("zoo:coder-teacher-qwen", "model-f32.gguf", quant="F32")
    >>> r = quantize_gguf("model-f32.gguf", "model-q4_k_m.gguf", "Q4_K_M")    # llama.cpp's own quantizer
    >>> sorted(r)
    ['arch', 'imatrix', 'n_params', 'n_tensors', 'path', 'quant', 'rescale', 'seconds']

By default the quantized rows are then rescaled against the float source (``downsize.export.rescale``), which
undoes the shrinkage of llama.cpp's least-squares block fits; ``rescale=False`` keeps llama.cpp's bytes.

Why the library API and not the llama-quantize binary: the wheel already ships libllama with the quantizer,
so nothing has to be compiled; the importance matrix is handed over in memory as llama-quantize would.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import time
from pathlib import Path

import gguf
import numpy as np

from downsize.errors import DownsizeError
from downsize.io import KIND_GGUF, atomic_path, check_output

# Quant type names as llama.cpp's llama-quantize spells them -> llama_ftype.
QUANT_TYPES: dict[str, int] = {
    name: int(gguf.LlamaFileType[f"MOSTLY_{name}"]) for name in (
        "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1",
        "Q2_K", "Q2_K_S", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K",
        "IQ4_NL", "IQ4_XS", "IQ3_S", "IQ3_M", "IQ3_XXS", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M")
}
QUANT_TYPES["F32"] = int(gguf.LlamaFileType.ALL_F32)
# These are only usable with an importance matrix (llama.cpp refuses them otherwise).
NEEDS_IMATRIX = {"IQ3_XXS", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M"}


def _gguf_summary(path: Path) -> dict:
    from downsize.models.checks import read_gguf

    r = read_gguf(path)
    arch = r.fields["general.architecture"]
    arch_name = bytes(arch.parts[arch.data[0]]).decode()
    n_params = sum(int(np.prod(t.shape)) for t in r.tensors)
    return {"arch": arch_name, "n_tensors": len(r.tensors), "n_params": n_params}


LOG_TAIL_LINES = 8  # lines of llama.cpp's log quoted when it fails
_log_lines: list[str] = []
_log_listeners: list = []  # called with each log fragment while a capture is on (the progress bar)
# llama_model_quantize logs "[  12/ 147]  blk.1.attn_q.weight - [...], type = ..." as it starts each tensor
_TENSOR_LINE = re.compile(r"^\[\s*(\d+)/\s*(\d+)\]\s+(\S+)")


def _llama_log_sink():
    """One ctypes callback for the whole process (llama.cpp keeps the pointer, so it must never be freed)."""
    import llama_cpp

    global _LOG_SINK
    if _LOG_SINK is None:
        @llama_cpp.llama_log_callback
        def sink(level, text, user_data):
            line = text.decode("utf-8", errors="replace").rstrip()
            _log_lines.append(line)
            del _log_lines[:-200]
            for listener in _log_listeners:
                listener(line)

        _LOG_SINK = sink
    return _LOG_SINK


_LOG_SINK = None


@contextlib.contextmanager
def _capture_llama_log(desc: str | None = None, total: int | None = None):
    """Collect llama.cpp's log lines while the block runs (for the error message), then restore its logger.
    With ``desc``, a progress bar of ``total`` tensors follows the quantizer's per-tensor log lines."""
    import llama_cpp
    from llama_cpp import _logger

    from downsize.console import progress

    bar = progress(total=total, desc=desc, unit="tensor", enabled=desc is not None)

    def on_line(line: str) -> None:
        m = _TENSOR_LINE.match(line)
        if m:
            bar.total = int(m.group(2))
            bar.set_postfix_str(m.group(3), refresh=False)
            bar.update(int(m.group(1)) - bar.n)

    _log_lines.clear()
    _log_listeners.append(on_line)
    llama_cpp.llama_log_set(_llama_log_sink(), ctypes.c_void_p(0))
    try:
        yield _log_lines
    finally:
        llama_cpp.llama_log_set(_logger.llama_log_callback, ctypes.c_void_p(0))
        _log_listeners.remove(on_line)
        bar.close()


def _imatrix_array(imatrix: dict[str, np.ndarray]):
    """A NULL-terminated llama_model_imatrix_data array (and the buffers it points into, to keep alive)."""
    import llama_cpp

    keep = []
    arr = (llama_cpp.llama_model_imatrix_data * (len(imatrix) + 1))()
    for i, (name, values) in enumerate(imatrix.items()):
        v = np.ascontiguousarray(values, dtype=np.float32)
        b = name.encode()
        keep += [v, b]
        arr[i].name = b
        arr[i].data = v.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        arr[i].size = v.size
    arr[len(imatrix)].name = None
    return arr, keep


def quantize_gguf(src: str | os.PathLike, out: str | os.PathLike, quant: str, *,
                  imatrix: str | os.PathLike | dict | None = None, threads: int | None = None,
                  rescale: bool = True, overwrite: bool = False) -> dict:
    """Quantize GGUF ``src`` to ``out`` (atomic). ``imatrix``: a llama.cpp imatrix file or {tensor: mean x²}.

    ``rescale``: make every quantized row unbiased against ``src`` (see ``downsize.export.rescale``).
    """
    import llama_cpp

    quant = quant.upper()
    if quant not in QUANT_TYPES:
        raise DownsizeError(f"unknown quant type {quant!r}", hint=f"choose one of {', '.join(QUANT_TYPES)}")
    src = Path(src)
    if not src.exists():
        raise DownsizeError(f"no GGUF file at {src}", hint="export one first with `downsize export gguf`")
    if src.is_dir():
        raise DownsizeError(f"{src} is a folder, not a GGUF file", hint="pass the .gguf file itself")
    if Path(out).exists() and os.path.samefile(src, out):
        raise DownsizeError(f"--out {out} is the input file itself", hint="write the quantized model to another file")
    check_output(out, KIND_GGUF, overwrite)
    from downsize.models.checks import read_gguf

    n_tensors = len(read_gguf(src).tensors)  # a damaged file gets a message here, not llama.cpp's return code
    if quant in NEEDS_IMATRIX and imatrix is None:
        raise DownsizeError(f"{quant} needs an importance matrix", hint="pass --imatrix FILE or --calib DATA")
    data = None
    if imatrix is not None:
        from downsize.export.imatrix import read_imatrix

        data = imatrix if isinstance(imatrix, dict) else read_imatrix(imatrix)
    from llama_cpp._logger import set_verbose

    set_verbose(False)  # llama.cpp's per-tensor log goes to stderr otherwise
    t0 = time.perf_counter()
    stats = None
    with atomic_path(out, KIND_GGUF, overwrite) as tmp:
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = QUANT_TYPES[quant]
        params.nthread = threads or os.cpu_count() or 1
        params.allow_requantize = False
        keep = None
        if data:
            arr, keep = _imatrix_array(data)
            params.imatrix = ctypes.cast(arr, ctypes.POINTER(llama_cpp.llama_model_imatrix_data))
        with _capture_llama_log(f"{quant}: quantizing tensors", n_tensors) as logged:
            rc = llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(), ctypes.byref(params))
        del keep
        if rc != 0:
            tail = "; ".join(line for line in logged[-LOG_TAIL_LINES:] if line) or "(llama.cpp logged nothing)"
            raise DownsizeError(f"llama.cpp could not quantize {src} to {quant} (return code {rc}); its log ends: {tail}",
                                hint="quantize from an F32/F16/BF16 GGUF (an already quantized one is refused); "
                                     "the log says which tensor or key failed")
        if rescale and quant not in ("F32", "F16", "BF16"):
            from downsize.export.rescale import rescale_rows

            stats = rescale_rows(src, tmp).as_dict()
    return {"path": Path(out), "quant": quant, "seconds": time.perf_counter() - t0, "imatrix": bool(data),
            "rescale": stats, **_gguf_summary(Path(out))}
