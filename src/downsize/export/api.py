"""One call for the CLI: export (optionally computing the importance matrix first) and report.

    >>> r = export_with_report("zoo:coder-teacher-qwen", "t-q4_k_m.gguf", "Q4_K_M", calib="zoo:stdlib", calib_tokens=1024)
    >>> sorted(r)
    ['arch', 'bits_per_weight', 'bytes', 'imatrix', 'imatrix_file', 'out', 'params', 'quant', 'rescale',
     'seconds', 'tensors', 'tokenizer']
"""

from __future__ import annotations

import os
from pathlib import Path

IMATRIX_SEQ_LEN = 256  # calibration window of the importance matrix (llama-imatrix's -c default is 512)


def export_with_report(model, out: str | os.PathLike, quant: str, *, imatrix=None, calib: str | None = None,
                       calib_tokens: int = 16384, seed: int = 0, report: bool = False, report_data: str = "zoo:stdlib",
                       report_tokens: int = 8192, rescale: bool = True, overwrite: bool = False) -> dict:
    """Export ``model`` as GGUF ``quant``; with ``calib`` (and no ``imatrix`` file) the importance matrix is
    computed first from ``calib_tokens`` tokens of it, in windows of 256, and kept beside the output."""
    from downsize.export.gguf import export_gguf
    from downsize.io import KIND_GGUF, check_output, record_file

    out = Path(out)
    check_output(out, KIND_GGUF, overwrite)
    from downsize.models.checks import check_checkpoint
    from downsize.models.refs import resolve_model

    ref = resolve_model(model)
    if not ref.is_gguf:  # the same checks and messages as every command, before the importance matrix loads it
        check_checkpoint(ref.path)
    result: dict = {}
    if calib and imatrix is None:
        from downsize.export.imatrix import ImatrixConfig, compute_imatrix, write_imatrix

        imatrix = out.with_name(out.stem + ".imatrix.gguf")
        if not imatrix.exists():  # a rerun (a resumed recipe) keeps the matrix it already computed
            check_output(imatrix, KIND_GGUF, overwrite)
            cfg = ImatrixConfig(n_samples=max(1, calib_tokens // IMATRIX_SEQ_LEN), seq_len=IMATRIX_SEQ_LEN, seed=seed)
            write_imatrix(compute_imatrix(model, calib, cfg), imatrix)
            record_file(imatrix, KIND_GGUF)
        result["imatrix_file"] = str(imatrix)
    r = export_gguf(model, out, quant, imatrix=imatrix, rescale=rescale, overwrite=overwrite)
    result.update({"out": str(r.path), "arch": r.arch, "quant": r.quant, "tensors": r.n_tensors, "params": r.n_params,
                   "bytes": r.nbytes, "bits_per_weight": 8 * r.nbytes / max(r.n_params, 1), "seconds": r.seconds,
                   "imatrix": imatrix is not None, "tokenizer": r.tokenizer})
    if r.rescale is not None:
        result["rescale"] = r.rescale
    if report:
        from downsize.export.report import ReportConfig, quant_report

        row = quant_report([out], model, ReportConfig(data=report_data, max_tokens=report_tokens))[0]
        result["report"] = {k: row[k] for k in ("bits_per_weight", "tokens", "ppl_ref", "ppl", "ppl_delta_pct", "kl",
                                                "top1_agreement")}
    return result
