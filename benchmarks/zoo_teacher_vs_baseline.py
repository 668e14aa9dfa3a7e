"""The zoo teacher against chance and against a ~4x smaller model trained for the same wall time.

    $ .venv/bin/python benchmarks/zoo_teacher_vs_baseline.py [--baseline runs/zoo/coder-small-baseline]

Both are evaluated here, in this run, on the whole zoo:stdlib validation split (windows of 256,
token-weighted, exact); chance is a uniform distribution over the vocabulary. The baseline is
trained with `downsize zoo train coder-small-baseline --minutes M --threads T` beside the teacher.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from downsize.eval.perplexity import perplexity
from downsize.models.refs import load_model
from downsize.zoo import zoo_path
from downsize.zoo.train import load_card, stdlib_stream


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--teacher", default=str(zoo_path("coder-teacher")))
    p.add_argument("--baseline", default="runs/zoo/coder-small-baseline")
    p.add_argument("--split", default="validation")
    a = p.parse_args()
    rows = {}
    for name, path in (("coder-teacher", a.teacher), ("coder-small-baseline", a.baseline)):
        model, tok = load_model(path)
        card = load_card(Path(path))
        t0 = time.perf_counter()
        r = perplexity(model, stdlib_stream(tok, a.split), seq_len=256, batch_size=8)
        rows[name] = {"params": sum(p.numel() for p in model.parameters()), "perplexity": r.perplexity,
                      "tokens": r.tokens, "eval_s": time.perf_counter() - t0,
                      "train_wall_min": card["training"]["wall_time_s"] / 60, "tokens_seen": card["training"]["tokens_seen"],
                      "threads": card["training"]["torch_threads"]}
        vocab = len(tok)
    t, b = rows["coder-teacher"], rows["coder-small-baseline"]
    print(f"{'model':24} {'params':>10} {'train min':>9} {'tokens seen':>12} {'val ppl':>9}")
    print(f"{'chance (uniform)':24} {'-':>10} {'-':>9} {'-':>12} {vocab:>9.1f}")
    for n, r in rows.items():
        print(f"{n:24} {r['params']:>10,} {r['train_wall_min']:>9.1f} {r['tokens_seen']:>12,} {r['perplexity']:>9.3f}")
    print(f"param ratio teacher/baseline: {t['params'] / b['params']:.2f}x")
    print(f"perplexity: teacher is {b['perplexity'] / t['perplexity']:.2f}x lower than the baseline, "
          f"{vocab / t['perplexity']:.0f}x lower than chance")
    print(json.dumps(rows))


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
