"""Our importance matrix against llama.cpp's own `llama-imatrix`, and our quantizer call against `llama-quantize`.

Peers: `llama-imatrix` and `llama-quantize` built from the llama.cpp sources vendored in the llama-cpp-python sdist
(not shipped, not built by `make`; build them once):

    pip download --no-deps --no-binary :all: llama-cpp-python==0.3.36 -d /tmp/sdist && tar xzf /tmp/sdist/*.tar.gz -C /tmp/sdist
    cmake -B /tmp/llbuild -S /tmp/sdist/llama_cpp_python-0.3.36/vendor/llama.cpp -DCMAKE_BUILD_TYPE=Release \
        -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF
    cmake --build /tmp/llbuild --target llama-imatrix llama-quantize -j2
    .venv/bin/python benchmarks/imatrix_parity.py --llama-bin /tmp/llbuild/bin --model zoo:coder-teacher-qwen

Both matrices are computed on the same calibration text (our calibration windows of the train split, decoded);
llama-imatrix re-tokenizes it and adds no BOS for the zoo tokenizers, so the token streams agree up to window
boundaries. Printed: wall time of each, per-tensor agreement of E[x²] (cosine and mean ratio), whether our
in-memory call of llama.cpp's quantizer writes the same tensors as `llama-quantize --imatrix`, and the perplexity
lost in llama.cpp with each matrix (paired over the same validation windows).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import gguf
import numpy as np

from downsize.export.gguf import export_gguf
from downsize.export.imatrix import ImatrixConfig, compute_imatrix, read_imatrix, write_imatrix
from downsize.export.quantize import quantize_gguf
from downsize.export.report import ReportConfig, paired_nll_delta, quant_report


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--llama-bin", type=Path, required=True, help="folder with llama-imatrix and llama-quantize")
    ap.add_argument("--model", default="zoo:coder-teacher-qwen")
    ap.add_argument("--calib-samples", type=int, default=256)
    ap.add_argument("--max-tokens", type=int, default=65536)
    ap.add_argument("--types", default="Q4_K_M,Q3_K_M,Q2_K")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1)))
    args = ap.parse_args()
    types = [t for t in args.types.split(",") if t]
    from downsize.models.refs import load_model
    from downsize.prune.calib import calibration_ids

    work = Path(tempfile.mkdtemp(prefix="imatrix_parity_"))
    try:
        f32 = export_gguf(args.model, work / "f32.gguf", "F32").path
        cfg = ImatrixConfig(n_samples=args.calib_samples, seq_len=256, split="train")
        t0 = time.perf_counter()
        ours = compute_imatrix(args.model, "zoo:stdlib", cfg)
        t_ours = time.perf_counter() - t0
        ours_f = write_imatrix(ours, work / "ours.imatrix.gguf")
        _, tok = load_model(args.model)
        ids = calibration_ids(tok, "zoo:stdlib", cfg.n_samples, cfg.seq_len, seed=cfg.seed, split=cfg.split)
        (work / "calib.txt").write_text("".join(tok.decode(row, skip_special_tokens=False) for row in ids.tolist()))
        theirs_f = work / "llama.imatrix.gguf"
        t0 = time.perf_counter()
        subprocess.run([str(args.llama_bin / "llama-imatrix"), "-m", str(f32), "-f", str(work / "calib.txt"),
                        "-c", "256", "-b", "256", "--chunks", str(cfg.n_samples), "--no-ppl", "--process-output",
                        "-t", str(args.threads), "-o", str(theirs_f)], check=True, capture_output=True)
        t_theirs = time.perf_counter() - t0
        a, b = read_imatrix(ours_f), read_imatrix(theirs_f)
        common = sorted(set(a) & set(b))
        print(f"{args.model}: imatrix from {cfg.n_samples}x{cfg.seq_len} train tokens; ours {t_ours:.1f} s "
              f"(HF forward, {args.threads} threads), llama-imatrix {t_theirs:.1f} s ({args.threads} threads)")
        print(f"tensors: ours {len(a)}, llama-imatrix {len(b)}, common {len(common)}; only ours: {sorted(set(a) - set(b))}; "
              f"only llama-imatrix: {sorted(set(b) - set(a))}")
        cos = [float(a[k] @ b[k] / np.linalg.norm(a[k]) / np.linalg.norm(b[k])) for k in common]
        ratio = [float(a[k].mean() / b[k].mean()) for k in common]
        print(f"E[x²] per column, ours vs llama-imatrix: cosine min {min(cos):.5f} median {np.median(cos):.5f}; "
              f"mean ratio {min(ratio):.4f}–{max(ratio):.4f}")

        rows, labels = [f32], [("F32", "-", False)]
        for q in types:
            mine = work / f"{q}-api.gguf"
            quantize_gguf(f32, mine, q, imatrix=theirs_f, rescale=False, threads=args.threads)
            ref = work / f"{q}-llama-quantize.gguf"
            subprocess.run([str(args.llama_bin / "llama-quantize"), "--imatrix", str(theirs_f), str(f32), str(ref), q,
                            str(args.threads)], check=True, capture_output=True)
            ta = {t.name: bytes(t.data) for t in gguf.GGUFReader(mine).tensors}
            tb = {t.name: bytes(t.data) for t in gguf.GGUFReader(ref).tensors}
            diff = sorted(k for k in ta if ta[k] != tb.get(k))
            print(f"{q}: quantize_gguf(imatrix=llama-imatrix's file) vs llama-quantize --imatrix: {len(ta)} tensors, "
                  f"{'all byte-identical' if not diff and ta.keys() == tb.keys() else f'{len(diff)} differ: {diff[:4]}'} "
                  f"(llama-quantize also writes quantize.imatrix.* metadata)")
            for name, f in (("ours", ours_f), ("llama-imatrix", theirs_f)):
                for rs in (False, True):
                    out = work / f"{q}-{name}-{rs}.gguf"
                    quantize_gguf(f32, out, q, imatrix=f, rescale=rs, threads=args.threads)
                    rows.append(out)
                    labels.append((q, name, rs))
        rep = quant_report(rows, args.model, ReportConfig(max_tokens=args.max_tokens, per_window=True))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    n_pred = rep[0]["tokens"]
    print(f"\nperplexity lost in llama.cpp, {n_pred} validation tokens (HF F32 perplexity {rep[0]['ppl_ref']:.4f}):")
    by = {lab: r for lab, r in zip(labels, rep)}
    rng = np.random.default_rng(0)
    for q in types:
        for rs in (False, True):
            o, t = by[(q, "ours", rs)], by[(q, "llama-imatrix", rs)]
            d, lo, hi = paired_nll_delta(t, o, rng=rng)  # one generator for all rows, as first run
            print(f"  {q:<7} {'rescaled ' if rs else 'llama.cpp'}  ours Δppl {o['ppl'] - o['ppl_ref']:+.4f} KL {o['kl']:.5f} | "
                  f"llama-imatrix Δppl {t['ppl'] - t['ppl_ref']:+.4f} KL {t['kl']:.5f} | ΔNLL ours − theirs "
                  f"{d:+.5f} [{lo:+.5f}, {hi:+.5f}]")


if __name__ == "__main__":
    main()
