"""Speed and memory of distillation on this machine: downsize online KD, downsize offline KD (top-k
cache) and TRL's GKDTrainer (off-policy, lmbda=0, forward KL) on the same teacher, student, windows,
batch shape, precision and thread count. Each trainer runs in its own process (peak RSS is per
process); tokens/s is measured over the steps after the first two.

Precision (``--precision``, default ``auto``) is the same for every trainer: bf16 (teacher weights in bf16,
student under bf16 autocast, TRL ``bf16=True``) where the CPU computes in bf16 natively, fp32 for all three
elsewhere (``downsize.hardware.resolve_precision``: on an AVX2-only CPU a bf16 matmul is ~100x slower).

    $ .venv/bin/python benchmarks/distill_speed.py --teacher zoo:coder-teacher --steps 12 --batch-size 8 --seq-len 128

Also reports achieved FLOP/s (6·N·tokens for the student's matmuls + 2·N·tokens for the teacher's
forward, N = linear-layer parameters incl. the LM head) against the measured matmul rate in that precision.
TRL is an optional benchmark dependency: `.venv/bin/pip install -c constraints.txt trl`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from downsize.eval.speed import peak_rss_mb

STUDENT = "teacher:num_hidden_layers=4,hidden_size=160,num_attention_heads=5,num_key_value_heads=1"
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(32 * 2**20), "MALLOC_TRIM_THRESHOLD_": str(2**30)}


def linear_params(model) -> int:
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))


def matmul_rate(threads: int, dtype: torch.dtype, n: int = 1024, reps: int = 20) -> float:
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(3):
        a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n ** 3 * reps / (time.perf_counter() - t)


def _dtype(precision: str) -> torch.dtype:
    return torch.bfloat16 if precision == "bf16" else torch.float32


def _student_and_data(args):
    from downsize.distill.student import StudentSpec, build_student
    from downsize.distill.train import WindowData, load_stream
    from downsize.models.refs import load_model

    teacher, tok = load_model(args.teacher)
    student, _, _ = build_student(StudentSpec.parse(STUDENT), teacher, tok)
    data = WindowData(load_stream(tok, args.data, "train"), args.seq_len, seed=0, windows=args.windows)
    return teacher, tok, student, data


class _Timer:
    """on_log callback of the loop: wall time of each logged step."""

    def __init__(self):
        self.t = []

    def __call__(self, rec):
        self.t.append((rec["step"], time.perf_counter(), time.process_time()))


def run_downsize(args, mode: str) -> dict:
    from downsize.distill.losses import LossSpec
    from downsize.distill.teacher import OnlineTeacher, TopKCacheDataset
    from downsize.distill.ahead import with_teacher_ahead
    from downsize.distill.train import DistillConfig, make_kd_loss
    from downsize.distill.vocab import VocabPlan
    from downsize.train.loop import TrainConfig, train

    teacher, tok, student, data = _student_and_data(args)
    n_t, n_s = linear_params(teacher), linear_params(student)
    cfg = DistillConfig(train=TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=1e-3, warmup_steps=2,
                                          progress=False, log_every=1, mixed_precision=args.precision),
                        loss=LossSpec("fkl", chunk_size=args.chunk_size), seq_len=args.seq_len,
                        teacher_ahead=args.teacher_ahead)
    plan = VocabPlan("same", None, "")
    if mode == "offline":
        del teacher
        data = TopKCacheDataset(args.cache, seed=0)
        online, teacher_flops = None, 0
    else:
        online, teacher_flops = OnlineTeacher(teacher.to(_dtype(args.precision))), 2 * n_t
    loss_fn = make_kd_loss(cfg, online, plan)
    timer = _Timer()
    with tempfile.TemporaryDirectory() as work, with_teacher_ahead(cfg, online, student, data, plan) as data:
        train(student, loss_fn, data, cfg.train, work, on_log=timer)
    return _summary(args, timer.t, n_s, teacher_flops)


def _summary(args, marks, n_s, teacher_flops_per_token) -> dict:
    """Wall-clock tokens/s, and tokens per CPU-second of the process (all its threads): the second is what
    a busy machine changes least, the first is what a user waits for."""
    (s0, t0, c0), (s1, t1, c1) = marks[1], marks[-1]
    tokens = (s1 - s0) * args.batch_size * args.seq_len
    tok_s = tokens / (t1 - t0)
    return {"tok_s": tok_s, "tok_per_cpu_s": tokens / max(c1 - c0, 1e-9), "peak_rss_mib": peak_rss_mb(),
            "sec_per_step": (t1 - t0) / (s1 - s0), "flops": tok_s * (6 * n_s + teacher_flops_per_token)}


def run_trl(args) -> dict:
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl.experimental.gkd import GKDConfig, GKDTrainer

    teacher, tok, student, data = _student_and_data(args)
    n_t, n_s = linear_params(teacher), linear_params(student)
    teacher = teacher.to(_dtype(args.precision))
    rows = [data.batch(i, 1)["input_ids"][0].tolist() for i in range(args.steps * args.batch_size)]
    ds = Dataset.from_dict({"input_ids": rows})

    def collate(examples):
        ids = torch.tensor([e["input_ids"] for e in examples])
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}

    marks = []

    class Timer(TrainerCallback):
        def on_step_end(self, a, state, control, **kw):
            marks.append((state.global_step, time.perf_counter(), time.process_time()))

    with tempfile.TemporaryDirectory() as work:
        cfg = GKDConfig(output_dir=work, per_device_train_batch_size=args.batch_size, max_steps=args.steps,
                        learning_rate=1e-3, lmbda=0.0, beta=0.0, seq_kd=False, bf16=args.precision == "bf16", use_cpu=True,
                        logging_steps=1, save_strategy="no", report_to=[], dataloader_num_workers=0,
                        max_length=args.seq_len, dataset_kwargs={"skip_prepare_dataset": True},
                        remove_unused_columns=False, warmup_steps=2, disable_tqdm=True)
        trainer = GKDTrainer(model=student, teacher_model=teacher, args=cfg, train_dataset=ds, processing_class=tok,
                             data_collator=collate, callbacks=[Timer()])
        trainer.train()
    return _summary(args, marks, n_s, 2 * n_t)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--teacher", default="zoo:coder-teacher")
    ap.add_argument("--data", default="zoo:stdlib")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--top-k", type=int, default=32)
    ap.add_argument("--mode", choices=["online", "offline", "trl"])
    ap.add_argument("--teacher-ahead", choices=["auto", "on", "off"], default="auto",
                    help="downsize online KD: the teacher's next forward overlapped with the student's step (auto: on "
                         "for a CPU teacher); the full run also measures off, as the row 'online (teacher in the step)'")
    ap.add_argument("--cache")
    ap.add_argument("--windows", type=int)
    ap.add_argument("--chunk-size", type=int, default=256, help="downsize's loss chunk (rows per LM-head chunk)")
    ap.add_argument("--rounds", type=int, default=2,
                    help="runs of every trainer, interleaved (online, offline, TRL, ... then again): each round's ratios "
                         "compare runs made minutes apart, which a shared machine's drift affects least")
    ap.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto",
                    help="auto: bf16 where this CPU computes in it natively, else fp32 (the same for every trainer)")
    args = ap.parse_args()
    from downsize.console import quiet_third_party

    quiet_third_party()
    from downsize.hardware import resolve_precision

    chosen = resolve_precision(args.precision)
    args.precision = chosen.name
    torch.set_num_threads(args.threads)
    if args.mode:
        res = {"online": lambda: run_downsize(args, "online"), "offline": lambda: run_downsize(args, "offline"),
               "trl": lambda: run_trl(args)}[args.mode]()
        print("RESULT " + json.dumps(res))
        return
    from downsize.distill.teacher import cache_teacher

    windows = args.steps * args.batch_size
    load_start = os.getloadavg()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        meta = cache_teacher(args.teacher, args.data, Path(tmp) / "cache", k=args.top_k, seq_len=args.seq_len,
                             windows=windows, batch_size=args.batch_size, split="train")
        cache_s = time.perf_counter() - t
        # "trl+malloc": TRL with the same glibc malloc thresholds downsize's loop sets for itself (see
        # downsize.train.loop.tune_cpu_allocator), given through the environment: how much is the allocator alone.
        for rnd in range(args.rounds):
            for label, mode, env, ahead in (("online", "online", {}, "auto"),
                                            ("online (teacher in the step)", "online", {}, "off"),
                                            ("offline", "offline", {}, "auto"), ("trl", "trl", {}, "auto"),
                                            ("trl+malloc", "trl", MALLOC_ENV, "auto")):
                cmd = [sys.executable, __file__, "--mode", mode, "--teacher-ahead", ahead, "--teacher", args.teacher, "--data", args.data,
                       "--steps", str(args.steps), "--batch-size", str(args.batch_size), "--seq-len", str(args.seq_len),
                       "--threads", str(args.threads), "--precision", args.precision, "--chunk-size", str(args.chunk_size),
                       "--cache", str(Path(tmp) / "cache"), "--windows", str(windows)]
                r = subprocess.run(cmd, capture_output=True, text=True,
                                   env={**os.environ, "TOKENIZERS_PARALLELISM": "false", **env})
                line = [x for x in r.stdout.splitlines() if x.startswith("RESULT ")]
                key = label if args.rounds == 1 else f"{label} (round {rnd + 1})"
                results[key] = {"error": r.stderr[-1500:]} if r.returncode or not line else json.loads(line[0][7:])
                results[key]["round"], results[key]["trainer"] = rnd, label
    peak = matmul_rate(args.threads, _dtype(args.precision))
    print(f"load average (1, 5, 15 min): {' '.join(f'{x:.2f}' for x in load_start)} at the start, "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} at the end")
    print(f"shapes: batch {args.batch_size} x seq {args.seq_len}, {args.steps} steps, {args.threads} threads, "
          f"{args.precision} ({chosen.reason}); student {STUDENT}")
    print(f"teacher cache: k={args.top_k}, {meta['bytes_per_token']} bytes/token "
          f"(dense bf16 logits: {meta['dense_bf16_bytes_per_token']}), written in {cache_s:.1f} s for {windows} windows")
    print(f"measured {args.precision} matmul rate (1024², {args.threads} threads): {peak / 1e9:.1f} GFLOP/s")
    print("| trainer | tokens/s | s/step | peak RSS MiB | GFLOP/s | % of matmul peak | tokens/s vs TRL | RSS vs TRL "
          "| tokens/CPU-s | tokens/CPU-s vs TRL |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for mode, r in results.items():
        trl = next((x for x in results.values() if x.get("trainer") == "trl" and x.get("round") == r.get("round")), {})
        if "error" in r:
            print(f"| {mode} | failed: {r['error'][-300:]!r} |")
            continue
        vs = f"{r['tok_s'] / trl['tok_s']:.2f}×" if "tok_s" in trl else "-"
        mem = f"{r['peak_rss_mib'] / trl['peak_rss_mib']:.2f}×" if "tok_s" in trl else "-"
        cpu = f"{r['tok_per_cpu_s'] / trl['tok_per_cpu_s']:.2f}×" if "tok_s" in trl else "-"
        print(f"| {mode} | {r['tok_s']:,.0f} | {r['sec_per_step']:.3f} | {r['peak_rss_mib']:,.0f} | {r['flops'] / 1e9:.1f} | "
              f"{100 * r['flops'] / peak:.0f}% | {vs} | {mem} | {r['tok_per_cpu_s']:,.0f} | {cpu} |")
    if args.rounds > 1:
        import statistics

        for label in ("online", "online (teacher in the step)", "offline", "trl+malloc"):
            ratios = [r["tok_s"] / t["tok_s"] for r in results.values() if r.get("trainer") == label and "tok_s" in r
                      for t in results.values() if t.get("trainer") == "trl" and t.get("round") == r["round"] and "tok_s" in t]
            if ratios:
                print(f"{label}: tokens/s vs TRL per round {' / '.join(f'{x:.2f}x' for x in ratios)}, "
                      f"median {statistics.median(ratios):.2f}x")
    print("JSON " + json.dumps({"results": results, "matmul_flops": peak, "precision": args.precision,
                                "cache": meta, "cache_s": cache_s}))


if __name__ == "__main__":
    main()
