"""Real shapes on the CPU: Qwen2.5-0.5B/1.5B (all layers) and 2 layers of Qwen2.5-7B, random-init, with the
real Qwen2 vocabulary and Qwen2.5 chat template, through the whole chain, one subprocess per stage.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/real_shapes.py --shapes qwen2.5-0.5b --out runs/real_shapes
    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/real_shapes.py --shapes qwen2.5-7b-2l \\
        --stages init,prune,export_f16,imatrix,export_q4km --out runs/real_shapes

Stages (each in a fresh process; wall time and the process's peak RSS, VmHWM, are recorded):
init (random-init teacher saved in bf16, as real checkpoints) -> prune (width to half the parameters) ->
cache (offline top-k teacher cache) -> distill_online / distill_offline (a few steps, fp32, batch 1 x 256)
-> export_f16 -> imatrix (streamed layer by layer) -> export_q4km (with the imatrix) -> verify (llama.cpp
tokens and logits vs transformers, F16 and Q4_K_M) -> modelfile -> eval (Q4_K_M GGUF against the teacher).

A distill step is compared with its compute-bound time: (6 N_student + 2 N_teacher) x tokens FLOPs (N without
a separate input embedding, which is a lookup; the teacher term only online) over the fp32 matmul rate of
this CPU at one thread, measured in the same process. Results: RESULT lines on stdout, a JSON file and a
markdown table (``--json``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

ALL_STAGES = ("init", "kd_memory", "prune", "cache", "distill_online", "distill_offline", "export_f16", "imatrix", "export_q4km",
              "verify", "modelfile", "eval")
SEQ = 256
RESULT = "RESULT "


# ---- the stages (run inside the child) --------------------------------------------------------

def matmul_flops(seconds: float = 3.0) -> float:
    """fp32 GEMM FLOP/s of this process's threads, on a (256 x 2048) @ (2048 x 8192) product (a distill step's shape)."""
    import torch

    a, b = torch.randn(256, 2048), torch.randn(2048, 8192)
    torch.mm(a, b)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        torch.mm(a, b)
        n += 1
    return 2 * 256 * 2048 * 8192 * n / (time.perf_counter() - t0)


def st_init(d: Path, shape: str, a) -> dict:
    import torch
    from real_shapes import make_shape, qwen25_tokenizer
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(qwen25_tokenizer(d / "tokenizer"))
    model = make_shape(shape, dtype=torch.bfloat16)
    model.generation_config.eos_token_id = [151645, 151643]
    model.save_pretrained(d / "teacher", safe_serialization=True)
    tok.save_pretrained(d / "teacher")
    return {"params": sum(p.numel() for p in model.parameters()), "vocab": len(tok),
            "embedding_rows": model.get_input_embeddings().weight.shape[0]}


def st_kd_memory(d: Path, shape: str, a) -> dict:
    """The KD loss's own memory at this vocabulary: forward + backward over ``--kd-rows`` rows from the LM head, chunked,
    against what full (rows, V) fp32 logits of student and teacher would take."""
    import torch

    from downsize.distill.losses import Head, LossSpec, kd_loss
    from downsize.eval.speed import peak_rss_mb
    from real_shapes import SHAPES

    n, h, v = a.kd_rows, SHAPES[shape]["hidden_size"], SHAPES[shape]["vocab_size"]
    g = torch.Generator().manual_seed(0)
    hs = (torch.randn(n, h, generator=g) * 0.5).requires_grad_(True)
    w_s = (torch.randn(v, h, generator=g) * 0.02).requires_grad_(True)
    t = Head(torch.randn(n, h, generator=g) * 0.5, torch.randn(v, h, generator=g) * 0.02)
    labels = torch.randint(0, v, (n,), generator=g)
    base = peak_rss_mb()
    spec = LossSpec("fkl", chunk_size=256)
    loss, _ = kd_loss(Head(hs, w_s), t, labels, spec)
    loss.backward()
    grew = peak_rss_mb() - base
    full = 2 * n * v * 4 / 2**20  # student + teacher logits, fp32
    chunk = spec.chunk_size * v * 4 / 2**20
    wgrad = v * h * 4 / 2**20  # the LM head's gradient (V, H) exists whatever the loss does
    return {"rows": n, "vocab": v, "chunk": spec.chunk_size, "loss_peak_growth_mb": round(grew),
            "head_grad_mb": round(wgrad), "full_logits_mb": round(full), "one_chunk_mb": round(chunk),
            "beyond_head_grad_in_chunks": round((grew - wgrad) / chunk, 1)}


def st_prune(d: Path, shape: str, a) -> dict:
    from downsize.prune import PruneConfig, prune_ref

    r = prune_ref(str(d / "teacher"), d / "pruned", PruneConfig("width", targets={"params": 0.5},
                                                                 calib_samples=a.calib, calib_seq_len=SEQ, batch_size=2))
    return {"sizes": r["sizes"], "params": r["params"], "alignment_notes": r["alignment"]["notes"]}


def st_cache(d: Path, shape: str, a) -> dict:
    from downsize.distill import cache_teacher

    m = cache_teacher(str(d / "teacher"), "zoo:stdlib", d / "cache", k=32, seq_len=SEQ, windows=a.steps * a.batch,
                      batch_size=a.batch, dtype="fp32")
    return {"windows": m["windows"], "bytes_per_token": m["bytes_per_token"]}


def _distill(d: Path, a, cache: bool) -> dict:
    from downsize.distill import DistillConfig, LossSpec, distill
    from downsize.train.loop import TrainConfig

    rate = matmul_flops()
    cfg = DistillConfig(train=TrainConfig(steps=a.steps, batch_size=a.batch, lr=1e-4, warmup_steps=1, mixed_precision="no",
                                          progress=False, log_every=1), loss=LossSpec("fkl"), seq_len=SEQ,
                        windows=a.steps * a.batch, teacher_dtype="fp32", cache=str(d / "cache") if cache else None,
                        val_tokens=a.val_tokens)
    name = "student" if cache else "student_online"
    out = distill(None if cache else str(d / "teacher"), str(d / "pruned"), "zoo:stdlib", cfg, d / name)
    rows = [json.loads(x) for x in (d / f"{name}.work" / "metrics.jsonl").read_text().splitlines()]
    ends = [r["tokens"] / r["tok_s"] for r in rows]  # seconds since the loop started, after each step
    steps = [b - a_ for a_, b in zip([0.0, *ends], ends)]
    tokens = a.batch * SEQ
    from real_shapes import matmul_params

    n_s, n_t = matmul_params(d / "pruned"), matmul_params(d / "teacher")
    flops = (6 * n_s + (0 if cache else 2 * n_t)) * tokens
    bound = flops / rate
    later = steps[1:] or steps
    card = json.loads((out / "distill_card.json").read_text())
    return {"step_s": [round(s, 2) for s in steps], "matmul_gflops": round(rate / 1e9, 1),
            "compute_bound_s": round(bound, 2), "ratio_to_bound": round(min(later) / bound, 2),
            "ratio_median": round(sorted(later)[len(later) // 2] / bound, 2), "n_student": n_s,
            "n_teacher": None if cache else n_t, "final_metrics": card["final_metrics"],
            "work_checkpoints_left": (d / f"{name}.work" / "checkpoints").exists()}


def st_distill_online(d, shape, a):
    return _distill(d, a, cache=False)


def st_distill_offline(d, shape, a):
    return _distill(d, a, cache=True)


def _student(d: Path, a) -> Path:
    return d / (a.export_from or ("student" if (d / "student").exists() else "teacher"))


def st_export_f16(d, shape, a):
    from downsize.export.gguf import export_gguf

    r = export_gguf(str(_student(d, a)), d / "model-f16.gguf", "F16")
    return {"bytes": r.nbytes, "tensors": r.n_tensors, "from": _student(d, a).name}


def st_imatrix(d, shape, a):
    from downsize.export.imatrix import ImatrixConfig, compute_imatrix, write_imatrix

    im = compute_imatrix(str(_student(d, a)), "zoo:stdlib", ImatrixConfig(n_samples=a.calib, seq_len=SEQ, batch_size=2))
    write_imatrix(im, d / "model.imatrix.gguf")
    return {"entries": len(im.sums), "tokens": im.chunk_count * im.chunk_size}


def st_export_q4km(d, shape, a):
    from collections import Counter

    import gguf

    from downsize.export.gguf import export_gguf

    r = export_gguf(str(_student(d, a)), d / "model-q4_k_m.gguf", "Q4_K_M", imatrix=d / "model.imatrix.gguf")
    types = {t.name: t.tensor_type.name for t in gguf.GGUFReader(d / "model-q4_k_m.gguf").tensors}
    blk = Counter(v for k, v in types.items() if k.startswith("blk."))
    down = Counter(v for k, v in types.items() if k.endswith("ffn_down.weight"))
    return {"bytes": r.nbytes, "block_types": dict(blk), "ffn_down_types": dict(down)}


def st_verify(d, shape, a):
    from downsize.export.verify import compare_with_hf

    out = {}
    for q in ("f16", "q4_k_m"):
        r = compare_with_hf(d / f"model-{q}.gguf", _student(d, a))
        out[q] = {k: (round(v, 5) if isinstance(v, float) else v) for k, v in r.items() if k != "gguf"}
    return out


def st_modelfile(d, shape, a):
    from downsize.export.ollama import convert_gguf

    r = convert_gguf(d / "model-q4_k_m.gguf", "real-shape", d / "ollama", create=False)
    text = Path(r["modelfile"]).read_text()
    return {"template_style": r["template_style"], "stops": r["stops"], "has_tools": ".Tools" in text}


def st_eval(d, shape, a):
    from downsize.eval.run import evaluate

    r = evaluate(str(d / "model-q4_k_m.gguf"), "zoo:stdlib", teacher=str(d / "teacher"), max_tokens=a.eval_tokens)
    return {k: r.get(k) for k in ("perplexity", "teacher_perplexity", "kl_to_teacher", "top1_agreement", "tokens")}


def run_stage(stage: str, d: Path, shape: str, a) -> dict:
    import torch

    from downsize.eval.speed import peak_rss_mb

    torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    detail = globals()[f"st_{stage}"](d, shape, a)
    return {"shape": shape, "stage": stage, "wall_s": round(time.perf_counter() - t0, 1),
            "peak_rss_mb": round(peak_rss_mb()), **detail}


# ---- the driver ------------------------------------------------------------------------------

def table(rows: list[dict]) -> str:
    lines = ["| shape | stage | wall s | peak RSS GB | detail |", "|---|---|---:|---:|---|"]
    for r in rows:
        skip = {"shape", "stage", "wall_s", "peak_rss_mb"}
        detail = {k: v for k, v in r.items() if k not in skip}
        lines.append(f"| {r['shape']} | {r['stage']} | {r['wall_s']} | {r['peak_rss_mb'] / 1024:.2f} | "
                     f"{json.dumps(detail, separators=(',', ':'))[:400]} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shapes", default="qwen2.5-0.5b")
    p.add_argument("--stages", default=",".join(ALL_STAGES))
    p.add_argument("--out", type=Path, default=Path("runs/real_shapes"))
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--calib", type=int, default=8, help="calibration windows of 256 tokens (prune, imatrix)")
    p.add_argument("--val-tokens", type=int, default=2048)
    p.add_argument("--eval-tokens", type=int, default=2048)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--kd-rows", type=int, default=2048, help="kd_memory: rows (tokens) through the loss")
    p.add_argument("--export-from", default=None, help="model folder to export (default: student, else teacher)")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--stage", default=None, help=argparse.SUPPRESS)  # internal: run one stage in this process
    a = p.parse_args(argv)
    if a.stage:
        (shape,) = a.shapes.split(",")
        r = run_stage(a.stage, a.out / shape, shape, a)
        print(RESULT + json.dumps(r), flush=True)
        return 0
    rows = []
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "MKL_NUM_THREADS": str(a.threads),
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])}
    for shape in a.shapes.split(","):
        (a.out / shape).mkdir(parents=True, exist_ok=True)
        for stage in a.stages.split(","):
            cmd = [sys.executable, __file__, "--stage", stage, "--shapes", shape,
                   *[x for k, v in vars(a).items() if k not in ("stage", "shapes", "stages", "json") and v is not None
                     for x in (f"--{k.replace('_', '-')}", str(v))]]
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
            got = [json.loads(line[len(RESULT):]) for line in proc.stdout.splitlines() if line.startswith(RESULT)]
            if proc.returncode or not got:
                print(f"{shape} {stage} FAILED (rc {proc.returncode}):\n{proc.stderr[-3000:]}", file=sys.stderr)
                rows.append({"shape": shape, "stage": stage, "wall_s": None, "peak_rss_mb": 0, "failed": proc.stderr[-300:]})
                break
            rows.append(got[0])
            print(RESULT + json.dumps(got[0]), flush=True)
            if a.json:
                a.json.write_text(json.dumps(rows, indent=1))
    print(table(rows))
    return 0 if all(r.get("wall_s") is not None for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
