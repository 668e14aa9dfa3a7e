"""Pruning benchmark on the reference teacher: unstructured/N:M quality, width vs depth before and after recovery.

    $ .venv/bin/python benchmarks/prune_bench.py                       # zoo:coder-teacher, ~10 min on 2 cores
    $ .venv/bin/python benchmarks/prune_bench.py --recover-steps 0     # skip the distillation part

Every method runs in a fresh child process (spawn), so its wall time and peak RSS are its own;
"Δ RSS" is the peak minus the RSS right after the model was loaded. Perplexity is token-weighted
on the first ``--max-tokens`` tokens of the zoo:stdlib validation split (downsize.eval.perplexity).
Peers, measured in the same run: the dense teacher (for sparsity) and depth pruning to the same
parameter count (for width), each after the same distillation budget (downsize.distill, forward KL).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import tempfile
import time
from pathlib import Path


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _ppl(model, tok, max_tokens: int, seq_len: int = 256) -> float:
    from downsize.eval.perplexity import perplexity
    from downsize.zoo.train import stdlib_stream

    return perplexity(model, stdlib_stream(tok, "validation"), seq_len=seq_len, batch_size=8, max_tokens=max_tokens).perplexity


def job_prune(args: dict) -> dict:
    """Child: load, prune (or not), measure perplexity, optionally save."""
    import torch

    from downsize.eval.speed import peak_rss_mb
    from downsize.models.refs import load_model
    from downsize.prune import PruneConfig, prune, save_pruned

    torch.set_num_threads(args["threads"])
    model, tok = load_model(args["model"])
    rss0 = _rss_mib()
    rep = {}
    t0 = time.perf_counter()
    if args.get("cfg"):
        prune(model, tok, PruneConfig(**args["cfg"]), "zoo:stdlib")
        rep = model.prune_report
    wall = time.perf_counter() - t0
    peak = peak_rss_mb()
    out = {"ppl": _ppl(model, tok, args["max_tokens"]), "params": sum(p.numel() for p in model.parameters()),
           "wall_s": wall, "peak_rss_mib": peak, "delta_rss_mib": peak - rss0,
           "sparsity": rep.get("mean_linear_sparsity"), "sizes": rep.get("sizes", {}).get("after"),
           "removed_layers": rep.get("removed_layers"), "layers": model.config.num_hidden_layers,
           "hidden": model.config.hidden_size, "heads": model.config.num_attention_heads}
    if "matrices" in rep:
        out["lowrank_total"] = len(rep["matrices"])
        out["lowrank_smaller"] = sum(m["factorised_smaller"] for m in rep["matrices"])
    if args.get("save"):
        save_pruned(model, tok, args["save"])
    return out


def job_recover(args: dict) -> dict:
    """Child: distil the teacher into a pruned model for a fixed budget, then measure perplexity."""
    import torch

    from downsize.models.refs import load_model

    torch.set_num_threads(args["threads"])
    t0 = time.perf_counter()
    try:
        from downsize.distill import DistillConfig, StudentSpec, TrainConfig, distill

        cfg = DistillConfig(train=TrainConfig(steps=args["steps"], batch_size=8, lr=5e-4, warmup_steps=10,
                                              progress=False, log_every=10), seq_len=256)
        out = distill(args["teacher"], StudentSpec.from_ref(args["model"]), "zoo:stdlib", cfg, args["out"],
                      eval_tokens=None)
        how = "downsize.distill (forward KL, online teacher)"
    except ImportError:  # the distillation package is not there: plain CE recovery through the one training loop
        from downsize.data.packing import PackedDataset
        from downsize.train.loop import TrainConfig, lm_loss, train
        from downsize.zoo.train import stdlib_stream

        model, tok = load_model(args["model"])
        train(model, lm_loss, PackedDataset(stdlib_stream(tok, "train"), 256, seed=0),
              TrainConfig(steps=args["steps"], batch_size=8, lr=5e-4, warmup_steps=10, progress=False), args["out"] + ".work")
        model.save_pretrained(args["out"]); tok.save_pretrained(args["out"])  # noqa: E702
        out = args["out"]
        how = "downsize.train.loop.train with lm_loss (cross-entropy recovery; downsize.distill missing)"
    wall = time.perf_counter() - t0
    model, tok = load_model(str(out))
    return {"ppl": _ppl(model, tok, args["max_tokens"]), "wall_s": wall, "how": how}


def _guarded(fn, args: dict) -> dict:
    import traceback

    try:
        return fn(args)
    except BaseException:  # noqa: BLE001  (sent back as text: exceptions do not always survive pickling)
        return {"error": traceback.format_exc()}


def child(fn, args: dict) -> dict:
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as ex:
        r = ex.submit(_guarded, fn, args).result()
    if "error" in r:
        raise RuntimeError(f"{fn.__name__}({args.get('cfg') or args.get('model')}) failed in the child:\n{r['error']}")
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", default="zoo:coder-teacher")
    ap.add_argument("--max-tokens", type=int, default=32768)
    ap.add_argument("--calib-samples", type=int, default=64)
    ap.add_argument("--remove-layers", type=int, default=3, help="depth pruning target; width is matched to its size")
    ap.add_argument("--recover-steps", type=int, default=60)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--patterns", default="0.5,2:4,4:8", help="sparsity patterns: ratios and/or N:M, comma-separated")
    ap.add_argument("--sections", default="sparse,structured,lowrank", help="which parts to run")
    ap.add_argument("--out", default=None, help="keep pruned models and results here (default: a temp dir)")
    a = ap.parse_args()
    work = Path(a.out or tempfile.mkdtemp(prefix="prune-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    base = {"model": a.teacher, "max_tokens": a.max_tokens, "threads": a.threads}
    cal = {"calib_samples": a.calib_samples, "calib_seq_len": 256}
    results: dict = {"setup": vars(a)}
    t_all = time.perf_counter()

    dense = child(job_prune, base)
    results["dense"] = dense
    print(f"dense teacher: ppl {dense['ppl']:.3f}, {dense['params']:,} params (first {a.max_tokens} validation tokens)",
          flush=True)
    sections = set(a.sections.split(","))
    patterns = [{"nm": p} if ":" in p else {"sparsity": float(p)} for p in a.patterns.split(",")] if "sparse" in sections else []
    if patterns:
        print("\n## Unstructured and N:M sparsity (all decoder linears; embeddings and LM head dense)\n")
        print("| method | pattern | sparsity | val ppl | × dense ppl | prune wall s | peak RSS MiB | Δ RSS MiB |")
        print("|---|---|---|---|---|---|---|---|")
    for pattern in patterns:
        for method in ("magnitude", "wanda", "sparsegpt"):
            r = child(job_prune, {**base, "cfg": {"method": method, **pattern, **cal}})
            results[f"{method} {pattern}"] = r
            print(f"| {method} | {pattern.get('nm') or format(pattern['sparsity'], '.0%')} | {r['sparsity']:.1%} | {r['ppl']:.3f} | "
                  f"{r['ppl'] / dense['ppl']:.2f} | {r['wall_s']:.1f} | {r['peak_rss_mib']:.0f} | {r['delta_rss_mib']:.0f} |",
                  flush=True)

    if not sections & {"structured", "lowrank"}:
        _finish(results, work, t_all)
        return
    print(f"\n## Width vs depth to the same parameter count (depth: remove {a.remove_layers} layers)\n")
    runs = {}
    depth = child(job_prune, {**base, "cfg": {"method": "depth", "targets": {"remove": a.remove_layers}, **cal},
                              "save": str(work / "depth")})
    runs["depth (block influence)"] = (depth, work / "depth")
    ratio = depth["params"] / dense["params"]
    depth_ppl = child(job_prune, {**base, "cfg": {"method": "depth", "targets": {"remove": a.remove_layers},
                                                  "depth_score": "ppl", **cal}, "save": str(work / "depth-ppl")})
    runs["depth (ppl increase)"] = (depth_ppl, work / "depth-ppl")
    width = child(job_prune, {**base, "cfg": {"method": "width", "targets": {"params": ratio}, **cal},
                              "save": str(work / "width")})
    runs["width (Minitron, ffn+hidden)"] = (width, work / "width")
    print("| method | params | × teacher | shape | val ppl (pruned) | prune wall s | peak RSS MiB |"
          + (f" val ppl after {a.recover_steps} KD steps | recovery wall s |" if a.recover_steps else ""))
    print("|---|---|---|---|---|---|---|" + ("---|---|" if a.recover_steps else ""))
    for name, (r, path) in runs.items():
        shape = (f"layers {r['layers']}, removed {r['removed_layers']}" if r["removed_layers"] is not None else
                 f"ffn {r['sizes']['ffn']}, heads {r['sizes']['heads']}/{r['sizes']['kv_heads']}, hidden {r['sizes']['hidden']}")
        row = (f"| {name} | {r['params']:,} | {r['params'] / dense['params']:.3f} | {shape} | {r['ppl']:.2f} | "
               f"{r['wall_s']:.1f} | {r['peak_rss_mib']:.0f} |")
        if a.recover_steps:
            rec = child(job_recover, {**base, "teacher": a.teacher, "model": str(path), "steps": a.recover_steps,
                                      "out": str(path) + "-recovered"})
            r["recovered"] = rec
            row += f" {rec['ppl']:.2f} | {rec['wall_s']:.0f} |"
        print(row, flush=True)
    if a.recover_steps:
        print(f"\nrecovery: {next(iter(runs.values()))[0]['recovered']['how']}")
    results["structured"] = {k: v[0] for k, v in runs.items()}

    print("\n## Low-rank (no recovery)\n")
    print("| method | target | params | val ppl | × dense ppl | note |")
    print("|---|---|---|---|---|---|")
    h = width["hidden"]
    if h >= dense["hidden"]:  # the budget did not touch hidden: compare at 3/4 of it (a multiple of the head count)
        h = dense["hidden"] * 3 // 4 // dense["heads"] * dense["heads"]
    lowrank_runs = [("width (Minitron channels), hidden only", {"method": "width", "targets": {"hidden": h}}),
                    ("lowrank PCA slice (one rotation)", {"method": "lowrank", "targets": {"hidden": h}}),
                    ("lowrank whitened SVD", {"method": "lowrank", "targets": {"energy": 0.9}})]
    for name, cfg in lowrank_runs:
        r = child(job_prune, {**base, "cfg": {**cfg, **cal}})
        results[f"lowrank {name}"] = r
        note = (f"{r['lowrank_smaller']}/{r['lowrank_total']} matrices smaller if factorised; stored dense"
                if r.get("lowrank_total") else "")
        print(f"| {name} | {cfg['targets']} | {r['params']:,} | {r['ppl']:.2f} | {r['ppl'] / dense['ppl']:.2f} | {note} |",
              flush=True)
    _finish(results, work, t_all)


def _finish(results: dict, work: Path, t_all: float) -> None:
    results["total_wall_s"] = time.perf_counter() - t_all
    (work / "results.json").write_text(json.dumps(results, indent=2, default=str))
    print(f"\ntotal {results['total_wall_s'] / 60:.1f} min; results in {work / 'results.json'}")


if __name__ == "__main__":
    main()
