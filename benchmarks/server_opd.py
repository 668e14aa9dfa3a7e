"""On-policy distillation with the teacher behind a llama.cpp server vs the same teacher in-process: seconds
per step and the student's validation perplexity after the same steps.

    $ .venv/bin/python benchmarks/server_opd.py --student runs/pruned --steps 6

The teacher (zoo:coder-teacher) is exported to GGUF F32 and served by llama-cpp-python's server on
127.0.0.1 (``--server-threads`` threads); both runs use fp32, λ = 1 (every batch sampled by the
student), the same seed, prompts and shapes. The local run scores with the dense teacher, the server
run with its top-k plus tail.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from downsize.distill import DistillConfig, LossSpec, OnPolicy, distill  # noqa: E402
from downsize.distill.onpolicy import ServerSpec  # noqa: E402
from downsize.train.loop import TrainConfig  # noqa: E402

TEACHER = "zoo:coder-teacher"


def run(teacher: str, student: str, out: Path, a, server: ServerSpec | None = None) -> dict:
    train = TrainConfig(steps=a.steps, batch_size=a.batch_size, lr=1e-3, warmup_steps=2, mixed_precision="fp32",
                        progress=False, log_every=1)
    cfg = DistillConfig(train=train, loss=LossSpec("fkl"), seq_len=a.prompt_len + a.new_tokens,
                        on_policy=OnPolicy(lmbda=1.0, prompt_len=a.prompt_len, new_tokens=a.new_tokens),
                        **({"server": server} if server else {}))
    t0 = time.perf_counter()
    path = distill(teacher, student, "zoo:stdlib", cfg, out, eval_tokens=a.eval_tokens)
    wall = time.perf_counter() - t0
    card = json.loads((path / "distill_card.json").read_text())
    rows = [json.loads(x) for x in (out.with_name(out.name + ".work") / "metrics.jsonl").read_text().splitlines()]
    return {"wall_s": round(wall, 1), "train_tokens_per_s": round(rows[-1]["tok_s"], 1),
            "s_per_step": round(rows[-1]["tokens"] / rows[-1]["tok_s"] / a.steps, 2),
            "val_perplexity": round(card["final_metrics"].get("val_perplexity", float("nan")), 2),
            "final_kd": round(card["final_metrics"]["kd"], 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--student", required=True, help="a model with the teacher's tokenizer, e.g. a pruned teacher")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--prompt-len", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--top-k", type=int, default=20)
    ap.add_argument("--in-flight", type=int, default=4)
    ap.add_argument("--server-threads", type=int, default=1)
    ap.add_argument("--eval-tokens", type=int, default=8192)
    a = ap.parse_args()
    from generate.llamacpp import LlamaServer

    from downsize.export.gguf import export_gguf

    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        export_gguf(TEACHER, d / "teacher.gguf", quant="F32")
        srv = LlamaServer(d / "teacher.gguf", n_ctx=512, threads=a.server_threads, log=d / "server.log").start()
        try:
            remote = run(srv.ref, a.student, d / "remote", a, ServerSpec(top_k=a.top_k, in_flight=a.in_flight))
        finally:
            srv.stop()
        local = run(TEACHER, a.student, d / "local", a)
    print(json.dumps({"server": remote, "local": local,
                      "server_over_local_step_time": round(remote["s_per_step"] / local["s_per_step"], 2)}, indent=1))


if __name__ == "__main__":
    main()
