"""Quality of distillation on zoo:stdlib: a ~4x-smaller student trained on a fixed token pool with
cross entropy only vs each KD loss (from a top-k teacher cache), dense online KD, on-policy GKD,
and a pruned-teacher initialisation. Validation perplexity on the first --eval-tokens tokens of the
zoo:stdlib validation split (windows of --seq-len).

    $ .venv/bin/python benchmarks/distill_quality.py --teacher zoo:coder-teacher --steps 200 --workers 2

Every run sees the same windows in the same order (same seed), the same schedule and the same
student initialisation; runs execute in --workers processes with one thread each.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import tempfile
import time
from pathlib import Path

import torch

STUDENT = dict(num_hidden_layers=4, hidden_size=160, num_attention_heads=5, num_key_value_heads=1)
PRUNED = dict(layers=4, hidden=160, ffn=416, heads=2, kv_heads=1)  # about the same size, via downsize.prune

RUNS = {
    # name: (loss, kd_ratio, teacher source, extra)
    "ce-only": ("fkl", 0.0, "cache", {}),
    "fkl": ("fkl", 1.0, "cache", {}),
    "rkl": ("rkl", 1.0, "cache", {}),
    "jsd(0.5)": ("jsd", 1.0, "cache", {}),
    "skl(0.1)": ("skl", 1.0, "cache", {}),
    "srkl(0.1)": ("srkl", 1.0, "cache", {}),
    "tvd": ("tvd", 1.0, "cache", {}),
    "fkl+ce(0.5)": ("fkl", 0.5, "cache", {}),
    "fkl online dense": ("fkl", 1.0, "online", {}),
    "fkl on-policy λ=0.5": ("fkl", 1.0, "online", {"on_policy": 0.5}),
    "fkl pruned-init": ("fkl", 1.0, "cache", {"pruned": True}),
    "ce-only pruned-init": ("fkl", 0.0, "cache", {"pruned": True}),
}


def run_one(job) -> dict:
    name, args, cache, tmp = job
    torch.set_num_threads(1)
    from downsize.distill import DistillConfig, LossSpec, OnPolicy, StudentSpec, distill
    from downsize.train.loop import TrainConfig

    loss, ratio, source, extra = RUNS[name]
    student = StudentSpec.derived(seed=0, **STUDENT)
    if extra.get("pruned"):
        student = str(Path(tmp) / "pruned")
        if not (Path(student) / "config.json").exists():
            return {"name": name, "error": "pruned teacher unavailable"}
    op = OnPolicy(lmbda=extra["on_policy"], prompt_len=args.seq_len // 4, new_tokens=args.seq_len * 3 // 4) if "on_policy" in extra else None
    cfg = DistillConfig(
        train=TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, warmup_steps=max(1, args.steps // 10),
                          progress=False, log_every=max(1, args.steps // 10), seed=0),
        loss=LossSpec(loss, kd_ratio=ratio), seq_len=args.seq_len, windows=args.steps * args.batch_size,
        cache=cache if source == "cache" else None, on_policy=op, save_dtype="float32")
    t = time.perf_counter()
    out = distill(args.teacher, student, "zoo:stdlib", cfg, Path(tmp) / "runs" / name.replace(" ", "_"),
                  eval_tokens=args.eval_tokens)
    card = json.loads((out / "distill_card.json").read_text())
    return {"name": name, "val_ppl": card["final_metrics"]["val_perplexity"], "train_kd": card["final_metrics"].get("kd"),
            "train_ce": card["final_metrics"].get("ce"), "params": card["student_parameters"], "tokens": card["tokens"],
            "wall_s": time.perf_counter() - t}


def make_pruned(args, tmp: Path) -> dict:
    from downsize.models.refs import load_model

    try:
        from downsize.prune import PruneConfig, prune, save_pruned
    except ImportError as e:
        return {"error": f"downsize.prune unavailable: {e}"}
    model, tok = load_model(args.teacher)
    try:
        model = prune(model, tok, PruneConfig(method="depth", targets={"layers": PRUNED["layers"]}), "zoo:stdlib")
        model = prune(model, tok, PruneConfig(method="width", targets={k: v for k, v in PRUNED.items() if k != "layers"}),
                      "zoo:stdlib")
    except Exception as e:  # report, do not hide: the pruned rows then say why they are missing
        return {"error": f"{type(e).__name__}: {e}"}
    save_pruned(model, tok, tmp / "pruned", model.prune_report)
    return {"params": sum(p.numel() for p in model.parameters())}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--teacher", default="zoo:coder-teacher")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--top-k", type=int, default=64)
    ap.add_argument("--eval-tokens", type=int, default=65536)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--runs", default=",".join(RUNS))
    ap.add_argument("--out-json")
    args = ap.parse_args()
    names = [n for n in args.runs.split(",") if n]
    from downsize.distill import cache_teacher
    from downsize.distill.train import load_stream
    from downsize.eval.perplexity import perplexity
    from downsize.models.refs import load_model

    torch.set_num_threads(args.workers)
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        meta = cache_teacher(args.teacher, "zoo:stdlib", Path(tmp) / "cache", k=args.top_k, seq_len=args.seq_len,
                             windows=args.steps * args.batch_size, batch_size=16, split="train")
        cache_s = time.perf_counter() - t
        teacher, tok = load_model(args.teacher)
        t_ppl = perplexity(teacher, load_stream(tok, "zoo:stdlib", "validation"), seq_len=args.seq_len,
                           max_tokens=args.eval_tokens).perplexity
        t_params = sum(p.numel() for p in teacher.parameters())
        del teacher
        pruned = make_pruned(args, Path(tmp)) if any("pruned" in n for n in names) else {}
        jobs = [(n, args, str(Path(tmp) / "cache"), tmp) for n in names]
        ctx = mp.get_context("spawn")
        with ctx.Pool(args.workers) as pool:
            results = pool.map(run_one, jobs, chunksize=1)
    base = next((r["val_ppl"] for r in results if r["name"] == "ce-only" and "val_ppl" in r), None)
    print(f"teacher {args.teacher}: {t_params:,} params, val ppl {t_ppl:.2f}; student {STUDENT}; "
          f"{args.steps} steps x {args.batch_size} x {args.seq_len} = {args.steps * args.batch_size * args.seq_len:,} tokens; "
          f"cache k={args.top_k} {meta['bytes_per_token']} B/token in {cache_s:.0f} s; pruned: {pruned or '-'}")
    print("| run | student params | val ppl | vs CE-only | final train KD | wall s |")
    print("|---|---|---|---|---|---|")
    for r in results:
        if "error" in r:
            print(f"| {r['name']} | - | {r['error']} | | | |")
            continue
        vs = f"{r['val_ppl'] / base:.3f}×" if base else "-"
        kd = f"{r['train_kd']:.3f}" if r.get("train_kd") is not None else "-"
        print(f"| {r['name']} | {r['params'] / 1e6:.2f}M | {r['val_ppl']:.2f} | {vs} | {kd} | {r['wall_s']:.0f} |")
    blob = {"teacher_ppl": t_ppl, "teacher_params": t_params, "results": results, "cache": meta, "pruned": pruned,
            "args": vars(args)}
    if args.out_json:
        Path(args.out_json).write_text(json.dumps(blob, indent=1))
    print("JSON " + json.dumps(blob))


if __name__ == "__main__":
    main()
