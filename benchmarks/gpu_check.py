"""GPU check at real shapes (run by benchmarks/gpu_check.sh on a lent CUDA machine; one job, under 10 minutes).

    OUT=runs/gpu_check PYTHONPATH=src:tests python benchmarks/gpu_check.py            # every check
    OUT=runs/gpu_check PYTHONPATH=src:tests python benchmarks/gpu_check.py --only online,offline

Teacher: a random-init Qwen2.5-1.5B shape, student: a Qwen2.5-0.5B shape (both 151,936-row embeddings, tied,
saved in bf16 as real checkpoints are), with the zoo's Qwen2-style tokenizer (token ids use only its 4,096 rows,
which changes no FLOP). Each check runs downsize's own code path and records tokens/s (steps after the first
three), MFU = (6 N_student + 2 N_teacher online) x tokens/s over the bf16 matmul rate measured first (8192^3),
and the peak GPU memory (torch.cuda.max_memory_allocated):

- online / offline: bf16 autocast distillation, teacher placed on the GPU by models.placement (offline: the
  top-k cache written on the GPU first, its time recorded);
- lora / qlora: LoRA r=16 on the student, and on an NF4 base (bitsandbytes);
- fsdp: the online step under accelerate with FSDP (version 2) on one process (torchrun, head="logits");
- trl: TRL's GKDTrainer (off-policy, lmbda=0) on the same batch size and length, for the ratio to ``online``;
- pytest: tests/gpu (the CUDA assertions).

Everything lands in $OUT/gpu_check.json (and the log in $OUT/gpu_check.log by the shell script).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

WORK = Path(os.environ.get("GPU_CHECK_WORK", "/tmp/gpu_check"))
OUT = Path(os.environ.get("OUT", "runs/gpu_check"))
STEPS, BATCH, SEQ = 12, 8, 1024
SKIP_STEPS = 3  # compile/allocator warm-up
CHECKS = ("online", "offline", "lora", "qlora", "fsdp", "trl", "pytest")


def bf16_peak() -> float:
    import torch

    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(10):
        a @ b
    torch.cuda.synchronize()
    return 2 * 8192**3 * 10 / (time.perf_counter() - t0)


def models() -> tuple[Path, Path]:
    """Save the teacher (1.5B shape) and student (0.5B shape) once, in bf16, with the zoo Qwen2 tokenizer."""
    import torch
    from real_shapes import shape_config

    from downsize.models.refs import load_tokenizer

    tok = load_tokenizer("zoo:coder-teacher-qwen")
    out = []
    for role, shape in (("teacher", "qwen2.5-1.5b"), ("student", "qwen2.5-0.5b")):
        d = WORK / role
        if not (d / "config.json").exists():
            from transformers import AutoModelForCausalLM

            torch.manual_seed(0)
            with torch.device("cuda"):
                m = AutoModelForCausalLM.from_config(shape_config(shape), dtype=torch.bfloat16)
            m.save_pretrained(d, safe_serialization=True)
            tok.save_pretrained(d)
            del m
        out.append(d)
    return out[0], out[1]


def throughput(metrics_file: Path, flops_per_token: float, peak: float) -> dict:
    rows = [json.loads(x) for x in metrics_file.read_text().splitlines()]
    ends = [r["tokens"] / r["tok_s"] for r in rows]
    k = min(SKIP_STEPS, len(rows) - 1)
    dt, dtok = ends[-1] - ends[k - 1] if k else ends[-1], rows[-1]["tokens"] - (rows[k - 1]["tokens"] if k else 0)
    tok_s = dtok / dt
    return {"tokens_per_s": round(tok_s), "mfu": round(flops_per_token * tok_s / peak, 4),
            "step_s": round(dt / (len(rows) - k), 4), "final_loss": rows[-1]["loss"]}


def _distill(teacher, student, name, peak, cache=None, lora=None, head="chunked"):
    import torch
    from real_shapes import matmul_params

    from downsize.distill import DistillConfig, LossSpec, distill
    from downsize.train.loop import TrainConfig

    torch.cuda.reset_peak_memory_stats()
    cfg = DistillConfig(train=TrainConfig(steps=STEPS, batch_size=BATCH, lr=1e-4, warmup_steps=2, mixed_precision="bf16",
                                          progress=False, log_every=1), loss=LossSpec("fkl"), seq_len=SEQ,
                        windows=STEPS * BATCH, teacher_dtype="bf16", cache=cache, lora=lora, head=head, val_tokens=0)
    t0 = time.perf_counter()
    distill(None if cache else str(teacher), str(student), "zoo:stdlib", cfg, WORK / name)
    n_s, n_t = matmul_params(student), matmul_params(teacher)
    fpt = 6 * n_s + (0 if cache else 2 * n_t)
    if lora:  # frozen base: no weight gradients (≈ 4 N instead of 6 N for the student)
        fpt = 4 * n_s + (0 if cache else 2 * n_t)
    return {**throughput(WORK / f"{name}.work" / "metrics.jsonl", fpt, peak), "wall_s": round(time.perf_counter() - t0, 1),
            "peak_gpu_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2), "flops_per_token": fpt}


def check_online(t, s, peak):
    return _distill(t, s, "online", peak)


def check_offline(t, s, peak):
    import torch

    from downsize.distill import cache_teacher

    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    meta = cache_teacher(str(t), "zoo:stdlib", WORK / "cache", k=32, seq_len=SEQ, windows=STEPS * BATCH,
                         batch_size=BATCH, dtype="bf16", device="auto")
    cache = {"cache_s": round(time.perf_counter() - t0, 1), "cache_peak_gpu_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2),
             "bytes_per_token": meta["bytes_per_token"]}
    return {**_distill(t, s, "offline", peak, cache=str(WORK / "cache")), **cache}


def check_lora(t, s, peak):
    from downsize.train.loop import LoraSpec

    return _distill(t, s, "lora", peak, lora=LoraSpec(r=16))


def check_qlora(t, s, peak):
    from downsize.train.loop import LoraSpec

    return _distill(t, s, "qlora", peak, lora=LoraSpec(r=16, quantize_base="nf4"))


def check_fsdp(t, s, peak):
    """The online step with FSDP2 wrapping each decoder layer, one process launched by torchrun."""
    env = {**os.environ, "ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2", "FSDP_AUTO_WRAP_POLICY": "TRANSFORMER_BASED_WRAP",
           "FSDP_TRANSFORMER_CLS_TO_WRAP": "Qwen2DecoderLayer", "FSDP_STATE_DICT_TYPE": "FULL_STATE_DICT"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1", __file__,
           "--fsdp-child", str(peak)]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    got = [json.loads(line[7:]) for line in p.stdout.splitlines() if line.startswith("RESULT ")]
    if not got:
        raise RuntimeError(f"fsdp child rc {p.returncode}: {p.stderr[-1500:]}")
    return got[0]


def fsdp_child(peak: float) -> None:
    from real_shapes import matmul_params
    t, s = WORK / "teacher", WORK / "student"
    try:
        r = _distill(t, s, "fsdp", peak, head="logits")
    except Exception as e:  # the steps may have run and only the save failed: read what the loop logged
        import torch

        m = WORK / "fsdp.work" / "metrics.jsonl"
        if not m.exists():
            raise
        r = {**throughput(m, 6 * matmul_params(s) + 2 * matmul_params(t), peak), "save_error": repr(e)[-400:],
             "peak_gpu_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2)}
    print("RESULT " + json.dumps(r), flush=True)


def check_trl(t, s, peak):
    from real_shapes import matmul_params
    """TRL's GKD trainer (off-policy: lmbda=0, forward KL: beta=0) on batches of the same size and length."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        from trl import GKDConfig, GKDTrainer
    except ImportError:
        from trl.experimental.gkd import GKDConfig, GKDTrainer

    from downsize.distill.train import load_stream

    tok = AutoTokenizer.from_pretrained(s)
    stream = load_stream(tok, "zoo:stdlib", "train")
    half = SEQ // 2 - 8  # a user turn and an assistant turn of about SEQ tokens together, in the ChatML template
    rows = [{"messages": [{"role": "user", "content": tok.decode(stream[i * SEQ: i * SEQ + half])},
                          {"role": "assistant", "content": tok.decode(stream[i * SEQ + half: (i + 1) * SEQ - 16])}]}
            for i in range(STEPS * BATCH)]
    student = AutoModelForCausalLM.from_pretrained(s, dtype=torch.float32)
    teacher = AutoModelForCausalLM.from_pretrained(t, dtype=torch.bfloat16)
    args = GKDConfig(output_dir=str(WORK / "trl"), per_device_train_batch_size=BATCH, max_steps=STEPS, lmbda=0.0, beta=0.0,
                     learning_rate=1e-4, warmup_steps=2, bf16=True, logging_steps=1, save_strategy="no", report_to=[],
                     max_length=SEQ, dataloader_num_workers=0, seq_kd=False)
    torch.cuda.reset_peak_memory_stats()
    tr = GKDTrainer(model=student, teacher_model=teacher, args=args, train_dataset=Dataset.from_list(rows),
                    processing_class=tok)
    times = []

    from transformers import TrainerCallback

    class Clock(TrainerCallback):
        def on_step_end(self, *_a, **_k):
            torch.cuda.synchronize()
            times.append(time.perf_counter())

    tr.add_callback(Clock())
    t0 = time.perf_counter()
    tr.train()
    k = min(SKIP_STEPS, len(times) - 1)
    dt = (times[-1] - times[k - 1]) / (len(times) - k)
    fpt = 6 * matmul_params(s) + 2 * matmul_params(t)
    tok_s = BATCH * SEQ / dt  # upper bound: GKD pads each batch to its longest row, at most SEQ
    return {"tokens_per_s": round(tok_s), "mfu": round(fpt * tok_s / peak, 4), "step_s": round(dt, 4),
            "wall_s": round(time.perf_counter() - t0, 1), "peak_gpu_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2)}


def check_pytest(t, s, peak):
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", str(ROOT / "tests" / "gpu"), "-p", "no:cacheprovider"],
                       capture_output=True, text=True, timeout=300, cwd=ROOT)
    return {"rc": p.returncode, "tail": p.stdout[-1200:]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default=",".join(CHECKS))
    ap.add_argument("--fsdp-child", type=float, default=None)
    a = ap.parse_args(argv)
    if a.fsdp_child is not None:
        fsdp_child(a.fsdp_child)
        return 0
    import torch

    WORK.mkdir(parents=True, exist_ok=True)
    OUT.mkdir(parents=True, exist_ok=True)
    res = {"torch": torch.__version__, "cuda": torch.version.cuda, "gpu": torch.cuda.get_device_name(0),
           "shapes": {"teacher": "qwen2.5-1.5b", "student": "qwen2.5-0.5b"}, "steps": STEPS, "batch": BATCH, "seq_len": SEQ}
    peak = bf16_peak()
    res["bf16_matmul_tflops"] = round(peak / 1e12, 1)
    t0 = time.perf_counter()
    t, s = models()
    res["init_s"] = round(time.perf_counter() - t0, 1)
    for name in a.only.split(","):
        t0 = time.perf_counter()
        try:
            res[name] = globals()[f"check_{name}"](t, s, peak)
        except Exception as e:
            res[name] = {"error": repr(e)[-600:], "trace": traceback.format_exc()[-1500:]}
        res[name]["check_s"] = round(time.perf_counter() - t0, 1)
        print(name, json.dumps(res[name]), flush=True)
        (OUT / "gpu_check.json").write_text(json.dumps(res, indent=1))
    if "tokens_per_s" in res.get("trl", {}) and "tokens_per_s" in res.get("online", {}):
        res["online_vs_trl"] = round(res["online"]["tokens_per_s"] / res["trl"]["tokens_per_s"], 2)
    (OUT / "gpu_check.json").write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
