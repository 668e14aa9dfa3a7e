"""Teacher generation throughput: a local llama.cpp server with 1, 4 and 8 requests in flight, and the
local transformers backend with batches of 1, 4 and 8 as the peer, on the same model and prompts.

    $ .venv/bin/python benchmarks/generate_throughput.py --model zoo:coder-teacher --prompts 32 --max-tokens 64

Every run goes through downsize.generate.generate (HTTP client or batcher, JSONL writer with fsync),
so the numbers are what `downsize generate` delivers. Ratios are against 1 in flight on the same backend.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "generate"))

from llamacpp import LlamaServer  # noqa: E402

from downsize.export.gguf import export_gguf  # noqa: E402
from downsize.generate import GenerateConfig, GenParams, generate  # noqa: E402
from downsize.generate.codebase import scan_codebase  # noqa: E402
from downsize.generate.prompts import codebase_tasks  # noqa: E402


def _prompts(path: Path, n: int) -> None:
    src = Path(__file__).resolve().parents[1] / "src" / "downsize"
    tasks = codebase_tasks(scan_codebase(src), n, seed=0)
    path.write_text("".join(json.dumps({"prompt": t.prompt}) + "\n" for t in tasks))


def _run(teacher: str, prompts: Path, out: Path, in_flight: int, max_tokens: int) -> dict:
    cfg = GenerateConfig(teacher=teacher, out=str(out), prompts=str(prompts), n_negative=0, in_flight=in_flight,
                         params=GenParams(max_tokens=max_tokens, batch_size=in_flight, timeout_s=600))
    s = generate(cfg)
    assert s["written"] + s["rejected"] == s["tasks"], s
    return {"prompts_per_s": s["prompts_per_s"], "tok_per_s": s["completion_tok_per_s"], "tokens": s["completion_tokens"],
            "seconds": s["seconds"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="zoo:coder-teacher")
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--in-flight", default="1,4,8")
    ap.add_argument("--skip-local", action="store_true")
    a = ap.parse_args()
    levels = [int(x) for x in a.in_flight.split(",")]
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        prompts = d / "prompts.jsonl"
        _prompts(prompts, a.prompts)
        gguf = d / "teacher-f16.gguf"
        export_gguf(a.model, gguf, quant="F16")
        rows = []
        srv = LlamaServer(gguf, n_ctx=2048, threads=a.threads, log=d / "server.log").start()
        try:
            # warm-up: one untimed pass identical to a measured one; the first pass after start is much
            # slower (measured 40 s vs 1.3 s for 8 prompts), so it is reported apart, not as "1 in flight"
            cold = _run(srv.ref, prompts, d / "warm.jsonl", 1, a.max_tokens)
            print(f"cold first pass (1 in flight, untimed in the table): {cold['tok_per_s']:.1f} tok/s, {cold['seconds']:.1f} s")
            for i, n in enumerate(levels):
                rows.append({"backend": "llama.cpp server (F16)", "in_flight": n,
                             **_run(srv.ref, prompts, d / f"srv-{i}-{n}.jsonl", n, a.max_tokens)})
        finally:
            srv.stop()
        if not a.skip_local:
            import torch

            torch.set_num_threads(a.threads)
            for i, n in enumerate(levels):
                rows.append({"backend": "transformers local (fp32)", "in_flight": n,
                             **_run(a.model, prompts, d / f"local-{i}-{n}.jsonl", n, a.max_tokens)})
    base = {r["backend"]: r["tok_per_s"] for r in rows if r["in_flight"] == levels[0]}
    print(f"model {a.model}, {a.prompts} prompts, max {a.max_tokens} new tokens, {a.threads} threads, greedy")
    print(f"{'backend':28s} {'in flight':>9s} {'prompts/s':>10s} {'tok/s':>8s} {'vs 1':>6s} {'tokens':>7s} {'wall s':>7s}")
    for r in rows:
        print(f"{r['backend']:28s} {r['in_flight']:9d} {r['prompts_per_s']:10.2f} {r['tok_per_s']:8.1f} "
              f"{r['tok_per_s'] / base[r['backend']]:6.2f} {r['tokens']:7d} {r['seconds']:7.1f}")
    srv_rows = {r["in_flight"]: r for r in rows if r["backend"].startswith("llama")}
    loc_rows = {r["in_flight"]: r for r in rows if r["backend"].startswith("trans")}
    for n in levels:
        if n in srv_rows and n in loc_rows:
            print(f"llama.cpp / transformers at {n} in flight: {srv_rows[n]['tok_per_s'] / loc_rows[n]['tok_per_s']:.2f}x tok/s")


if __name__ == "__main__":
    main()
