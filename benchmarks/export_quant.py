"""Perplexity lost per quant type on a zoo model, with and without an importance matrix, with llama.cpp's bytes
and with downsize's row rescaling (export.rescale, the default), beside llama.cpp's published deltas for
Llama-3-8B (tools/quantize/quantize.cpp) as a reference for the shape of the curve.

Each GGUF runs in llama.cpp (llama-cpp-python); the reference is the F32 HF model in transformers on the same
validation windows. The importance matrix is computed from the *train* split (disjoint from the evaluation).
The importance-matrix effect is reported as a paired difference (same windows) with a 95 % bootstrap interval
over windows.

    .venv/bin/python benchmarks/export_quant.py                     # zoo:coder-teacher, 16384 validation tokens
    .venv/bin/python benchmarks/export_quant.py --model zoo:coder-teacher-qwen --max-tokens 65536 --calib-samples 256
    .venv/bin/python benchmarks/export_quant.py --types Q4_K_M,Q3_K_M --imatrix-types Q4_K_M,Q3_K_M --max-tokens 65536
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from downsize.export.gguf import export_gguf
from downsize.export.imatrix import ImatrixConfig, compute_imatrix, write_imatrix
from downsize.export.report import ReportConfig, paired_nll_delta, quant_report

# llama-quantize's own table: added perplexity at Llama-3-8B (absolute, wikitext); F16/BF16 are at Mistral-7B.
LLAMA3_8B_DELTA = {"Q8_0": 0.0026, "Q6_K": 0.0217, "Q5_K_M": 0.0569, "Q4_K_M": 0.1754, "Q4_0": 0.4685,
                   "Q3_K_M": 0.6569, "Q2_K": 3.5199}
TYPES = ["F16", "Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q4_0", "Q3_K_M", "Q2_K"]
IMATRIX_TYPES = ["Q4_K_M", "Q3_K_M", "Q2_K", "IQ4_XS"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="zoo:coder-teacher")
    ap.add_argument("--max-tokens", type=int, default=16384)
    ap.add_argument("--calib-samples", type=int, default=64)
    ap.add_argument("--types", default=",".join(TYPES), help="quant types without an imatrix (F32 always runs)")
    ap.add_argument("--imatrix-types", default=",".join(IMATRIX_TYPES), help="quant types with the importance matrix")
    ap.add_argument("--json-out", type=Path, default=None)
    args = ap.parse_args()
    types = [t for t in args.types.split(",") if t and t != "F32"]
    imatrix_types = [t for t in args.imatrix_types.split(",") if t]
    work = Path(tempfile.mkdtemp(prefix="export_quant_"))
    try:
        t0 = time.perf_counter()
        im = compute_imatrix(args.model, "zoo:stdlib", ImatrixConfig(n_samples=args.calib_samples, seq_len=256, split="train"))
        imf = write_imatrix(im, work / "imatrix.gguf")
        t_im = time.perf_counter() - t0
        paths, labels = [], []

        def add(q: str, imx: bool, rescale: bool) -> None:
            p = work / f"{q}-{'im' if imx else 'plain'}-{'rs' if rescale else 'raw'}.gguf"
            export_gguf(args.model, p, q, imatrix=imf if imx else None, rescale=rescale)
            paths.append(p)
            labels.append((q, imx, rescale))

        add("F32", False, False)
        for q in types:
            for rescale in ((False, True) if q not in ("F16", "BF16", "Q8_0") else (False,)):
                add(q, False, rescale)
        for q in imatrix_types:
            if q not in types:
                add(q, False, False)
                add(q, False, True)
            add(q, True, False)
            add(q, True, True)
        t1 = time.perf_counter()
        rows = quant_report(paths, args.model, ReportConfig(max_tokens=args.max_tokens, per_window=True))
        t_eval = time.perf_counter() - t1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for r, (q, imx, rs) in zip(rows, labels):
        r.update(quant=q, imatrix=imx, rescaled=rs, gguf=Path(r["gguf"]).name)
    n_pred = rows[0]["tokens"]
    print(f"{args.model}: {n_pred} validation tokens, HF F32 perplexity {rows[0]['ppl_ref']:.4f}; "
          f"imatrix from {im.chunk_count}x{im.chunk_size} train tokens in {t_im:.0f} s; evaluation {t_eval:.0f} s")
    print(f"{'type':<8} {'imatrix':<7} {'scales':<9} {'MB':>7} {'bpw':>6} {'ppl':>9} {'Δppl':>8} {'Δ%':>7} {'KL':>8} "
          f"{'top1':>6}  Llama-3-8B Δppl")
    for r in rows:
        ref = LLAMA3_8B_DELTA.get(r["quant"])
        print(f"{r['quant']:<8} {'yes' if r['imatrix'] else 'no':<7} {'rescaled' if r['rescaled'] else 'llama.cpp':<9} "
              f"{r['file_bytes'] / 2**20:7.2f} {r['bits_per_weight']:6.2f} "
              f"{r['ppl']:9.4f} {r['ppl'] - r['ppl_ref']:+8.4f} {r['ppl_delta_pct']:+7.3f} {r['kl']:8.5f} {r['top1_agreement']:6.3f}  "
              f"{'+%.4f' % ref if ref is not None and not r['imatrix'] and not r['rescaled'] else ''}")
    by = {(r["quant"], r["imatrix"], r["rescaled"]): r for r in rows}
    print("\nimportance matrix effect: perplexity lost without -> with the matrix; paired ΔNLL/token (with - without), 95 % CI")
    for q in imatrix_types:
        for rs in (False, True):
            b, i = by[(q, False, rs)], by[(q, True, rs)]
            lost_b, lost_i = b["ppl"] - b["ppl_ref"], i["ppl"] - i["ppl_ref"]
            d, lo, hi = paired_nll_delta(b, i)
            print(f"  {q:<7} {'rescaled' if rs else 'llama.cpp':<9} Δppl {lost_b:+.4f} -> {lost_i:+.4f} "
                  f"({(1 - lost_i / lost_b) * 100 if lost_b else 0:+.0f}% of the loss removed), KL {b['kl']:.5f} -> {i['kl']:.5f}, "
                  f"ΔNLL {d:+.5f} [{lo:+.5f}, {hi:+.5f}]")
    print("\nrow rescaling effect: llama.cpp's bytes -> rescaled; paired ΔNLL/token (rescaled - llama.cpp), 95 % CI")
    for (q, imx, rs), r in by.items():
        if rs and (q, imx, False) in by:
            b = by[(q, imx, False)]
            d, lo, hi = paired_nll_delta(b, r)
            print(f"  {q:<7} imatrix {'yes' if imx else 'no ':<3} Δppl {b['ppl'] - b['ppl_ref']:+.4f} -> {r['ppl'] - r['ppl_ref']:+.4f}, "
                  f"KL {b['kl']:.5f} -> {r['kl']:.5f}, ΔNLL {d:+.5f} [{lo:+.5f}, {hi:+.5f}]")
    if args.json_out:
        args.json_out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
