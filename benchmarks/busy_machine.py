"""Training throughput on a quiet and on a busy machine, with torch's default threads ("before") and
downsize's choice (``downsize.hardware.set_threads``, "after").

    $ .venv/bin/python benchmarks/busy_machine.py --steps 6 --busy 2

Each measurement is a child process that trains the zoo teacher (fp32, AdamW) for ``--steps`` steps
after one warm-up step and reports tokens, wall seconds and the CPU seconds it used. "Busy" starts
``--busy`` processes of its own that spin on a core each; they stop by themselves at a deadline
(``--max-seconds``) and are terminated as soon as the measurement ends. The figures are tokens per
wall second and tokens per core-second (CPU seconds the trainer used: OpenMP threads that spin-wait
for a descheduled sibling burn core-seconds without doing work, which is how a busy machine collapses
a multi-threaded run). OMP_NUM_THREADS is removed from the children's environment, as for a user who
never set it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

WORKER = r"""
import json, os, resource, sys, time
import torch
mode, steps, batch, seq = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
if mode == "after":
    from downsize.hardware import set_threads
    set_threads()
from downsize.models.refs import load_model
model, _ = load_model("zoo:coder-teacher", with_tokenizer=False)
model.train()
opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
g = torch.Generator().manual_seed(0)
vocab = model.config.vocab_size
def step():
    ids = torch.randint(0, vocab, (batch, seq), generator=g)
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
step()
r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
for _ in range(steps):
    step()
r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
print(json.dumps({"threads": torch.get_num_threads(), "tokens": steps * batch * seq, "wall_s": t1 - t0, "cpu_s": cpu}))
"""

SPIN = "import time, sys\nend = float(sys.argv[1])\nwhile time.time() < end:\n    pass\n"


def measure(mode: str, busy: int, steps: int, batch: int, seq: int, max_seconds: float) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    spinners = []
    try:
        deadline = time.time() + max_seconds
        spinners = [subprocess.Popen([sys.executable, "-c", SPIN, str(deadline)]) for _ in range(busy)]
        time.sleep(2.0 if busy else 0.0)  # let the load show in /proc/loadavg's runnable count
        try:
            out = subprocess.run([sys.executable, "-c", WORKER, mode, str(steps), str(batch), str(seq)], env=env,
                                 capture_output=True, text=True, timeout=max_seconds)
        except subprocess.TimeoutExpired:  # collapsed: report the bound the deadline gives
            tokens = steps * batch * seq
            return {"mode": mode, "busy": busy, "threads": None, "tokens": tokens, "wall_s": max_seconds,
                    "cpu_s": float("nan"), "tok_s": tokens / max_seconds, "tok_per_core_s": float("nan"), "timed_out": True}
    finally:
        for p in spinners:
            p.terminate()
        for p in spinners:
            p.wait(10)
    if out.returncode:
        raise SystemExit(out.stderr[-2000:])
    r = json.loads(out.stdout.strip().splitlines()[-1])
    r.update(mode=mode, busy=busy, tok_s=r["tokens"] / r["wall_s"], tok_per_core_s=r["tokens"] / max(r["cpu_s"], 1e-9))
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--busy", type=int, default=len(os.sched_getaffinity(0)), help="spinning processes for the busy phase")
    ap.add_argument("--max-seconds", type=float, default=300.0, help="the spinners' deadline and each child's timeout")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    rows = []
    for mode in ("before", "after"):
        for busy in (0, a.busy):
            rows.append(measure(mode, busy, a.steps, a.batch_size, a.seq_len, a.max_seconds))
            r = rows[-1]
            bound = "< " if r.get("timed_out") else ""
            print(f"{mode:6s} busy={busy} threads={r['threads']} tok/s={bound}{r['tok_s']:.1f} tok/core-s={r['tok_per_core_s']:.1f} "
                  f"(wall {bound.replace('<', '>')}{r['wall_s']:.1f} s, cpu {r['cpu_s']:.1f} s)", flush=True)
    for mode in ("before", "after"):
        q, b = [r for r in rows if r["mode"] == mode]
        print(f"{mode}: busy/quiet tok/s {b['tok_s'] / q['tok_s']:.2f}, tok per core-second {b['tok_per_core_s'] / q['tok_per_core_s']:.2f}")
    if a.json:
        print(json.dumps(rows))


if __name__ == "__main__":
    main()
