"""One call for the CLI: export (optionally computing the importance matrix first) and report.

    >>> export_with_report("zoo:coder-teacher", "t-q4_k_m.gguf", "Q4_K_M", calib="zoo:stdlib", report=True)
"""

from __future__ import annotations

import os
from pathlib import Path


def export_with_report(model, out: str | os.PathLike, quant: str = "F16", *, imatrix=None, calib: str | None = None,
                       calib_samples: int = 64, report: bool = False, report_data: str = "zoo:stdlib",
                       report_tokens: int = 8192, rescale: bool = True, overwrite: bool = False) -> dict:
    from downsize.export.gguf import export_gguf
    from downsize.io import KIND_GGUF, check_output, record_file

    out = Path(out)
    check_output(out, KIND_GGUF, overwrite)
    result: dict = {}
    if calib and imatrix is None:
        from downsize.export.imatrix import ImatrixConfig, compute_imatrix, write_imatrix

        im_path = out.with_name(out.stem + ".imatrix.gguf")
        check_output(im_path, KIND_GGUF, overwrite)
        imatrix = write_imatrix(compute_imatrix(model, calib, ImatrixConfig(n_samples=calib_samples)), im_path)
        record_file(im_path, KIND_GGUF)
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
