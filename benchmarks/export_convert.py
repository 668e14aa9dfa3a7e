"""Conversion throughput and peak RSS: downsize's GGUF converter vs llama.cpp's convert_hf_to_gguf.py.

Both run as separate processes on the same checkpoint, to the same output type, one after the other; peak RSS
is the child's own VmHWM (sampled from /proc until it exits), throughput is the checkpoint's tensor bytes per wall
second. The page cache is warmed before each run so neither pays for the first disk read. --threads caps the
BLAS/OpenMP/torch threads of every child (llama.cpp's converter computes with torch; ours with numpy).

    .venv/bin/python benchmarks/export_convert.py --vocab 32000 --hidden 2048 --layers 6 --threads 1

--before-src DIR also runs an older downsize (a ``src`` folder, e.g. ``git archive <rev> src | tar -x -C /tmp/old``)
on the same checkpoint in the same run, and says whether its GGUF is byte-identical to the current one.

llama.cpp's converter is the one vendored in the llama-cpp-python sdist (not part of this repository); it reads
the synthetic checkpoint's tokenizer.model with the sentencepiece package, which this benchmark also uses to
train it (not a downsize dependency):
    .venv/bin/pip download --no-deps --no-binary :all: llama-cpp-python==0.3.36 -d /tmp/sdist && tar xzf ... -C /tmp/sdist
    .venv/bin/pip install -c constraints.txt sentencepiece

Checkpoints:
  * zoo:coder-teacher as shipped (byte-level BPE with a custom vocabulary): llama.cpp's converter identifies
    BPE pre-tokenizers by a hash of known vocabularies, so it refuses it; the refusal is reported.
  * a synthetic Llama (random weights, bf16, sharded like a Hub checkpoint) with both our BPE tokenizer.json
    and a SentencePiece tokenizer.model (which llama.cpp's converter accepts without a hash), so both convert
    the same weights. --vocab/--hidden/--layers/--inter set its size (--vocab 32000 --hidden 2048 gives
    TinyLlama's 32000 x 2048 embedding and LM head; both converters pad the 8192-token vocabularies to --vocab).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


def _hwm_kb(pid: int) -> int:
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")
THREADS: int | None = None  # set by --threads


def run_child(cmd: list[str], env: dict | None = None) -> dict:
    """Run ``cmd``; peak RSS is the child's own VmHWM (sampled until it exits). ru_maxrss from wait4 would also
    count the pre-exec copy of this (large, torch-importing) parent process."""
    t0 = time.perf_counter()
    log = tempfile.TemporaryFile()
    threads = {v: str(THREADS) for v in THREAD_VARS} if THREADS else {}
    load_before = os.getloadavg()[0]
    p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **threads, **(env or {})})
    hwm = 0
    while p.poll() is None:
        hwm = max(hwm, _hwm_kb(p.pid))
        time.sleep(0.02)
    seconds = time.perf_counter() - t0
    log.seek(0)
    out = log.read().decode(errors="replace")
    return {"rc": p.returncode, "seconds": seconds, "peak_rss_mb": hwm / 1024, "tail": out[-600:],
            "load1_before": load_before, "load1_after": os.getloadavg()[0]}


def make_synthetic(dest: Path, hidden: int, layers: int, inter: int, vocab_dir: Path, shard_mb: int = 500,
                   vocab: int | None = None) -> int:
    """A random-weight Llama checkpoint in bf16 shards (embedding rows: ``vocab``, default the tokenizer's size);
    returns the tensor bytes."""
    from transformers import AutoTokenizer

    from downsize.models.arch import build_config

    tok = AutoTokenizer.from_pretrained(vocab_dir)
    vocab = max(vocab or 0, len(tok))
    heads = hidden // 128
    cfg = build_config("llama", vocab_size=vocab, tokenizer=tok, hidden_size=hidden, intermediate_size=inter,
                       num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=max(1, heads // 4),
                       max_position_embeddings=2048, tie_word_embeddings=False)
    cfg.dtype = "bfloat16"
    dest.mkdir(parents=True)
    cfg.save_pretrained(dest)
    tok.save_pretrained(dest)
    kv = cfg.num_key_value_heads * 128
    shapes = {"model.embed_tokens.weight": (vocab, hidden), "model.norm.weight": (hidden,), "lm_head.weight": (vocab, hidden)}
    for i in range(layers):
        p = f"model.layers.{i}."
        shapes.update({p + "self_attn.q_proj.weight": (hidden, hidden), p + "self_attn.k_proj.weight": (kv, hidden),
                       p + "self_attn.v_proj.weight": (kv, hidden), p + "self_attn.o_proj.weight": (hidden, hidden),
                       p + "mlp.gate_proj.weight": (inter, hidden), p + "mlp.up_proj.weight": (inter, hidden),
                       p + "mlp.down_proj.weight": (hidden, inter), p + "input_layernorm.weight": (hidden,),
                       p + "post_attention_layernorm.weight": (hidden,)})
    g = torch.Generator().manual_seed(0)
    shards, cur, size, total = [], {}, 0, 0
    for name, shape in shapes.items():
        t = (torch.randn(shape, generator=g) * 0.02).to(torch.bfloat16) if len(shape) > 1 else torch.ones(shape, dtype=torch.bfloat16)
        cur[name] = t
        size += t.numel() * 2
        total += t.numel() * 2
        if size > shard_mb << 20:
            shards.append(cur)
            cur, size = {}, 0
    if cur:
        shards.append(cur)
    weight_map = {}
    for i, sh in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(sh, dest / fname, metadata={"format": "pt"})
        weight_map.update({n: fname for n in sh})
    (dest / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}))
    return total


def add_sentencepiece(dest: Path, vocab_size: int) -> None:
    """A SentencePiece tokenizer.model of the same vocabulary size (llama.cpp's converter reads it without a hash)."""
    import sentencepiece as spm

    from downsize.data.stdlib import StdlibCorpus

    text = dest / "spm_train.txt"
    with open(text, "w") as f:
        for _, t in list(StdlibCorpus.local().documents("train"))[:300]:
            f.write(t + "\n")
    spm.SentencePieceTrainer.train(input=str(text), model_prefix=str(dest / "tokenizer"), vocab_size=vocab_size,
                                   model_type="bpe", byte_fallback=True, minloglevel=2, train_extremely_large_corpus=False)
    text.unlink()
    (dest / "tokenizer.vocab").unlink(missing_ok=True)


def warm(path: Path) -> None:
    for f in sorted(path.glob("*.safetensors")):
        with open(f, "rb") as fh:
            while fh.read(1 << 24):
                pass


def tensor_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.glob("*.safetensors"))


def _sha256(path: Path) -> str | None:
    if not path.exists():
        return None
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            h.update(chunk)
    return h.hexdigest()


def _downsize_cmd(ckpt: Path, out: Path, outtype: str) -> list[str]:
    return [PY, "-c", "from downsize.cli import main; main()", "export", "gguf", str(ckpt), "--out", str(out),
            "--quant", outtype.upper(), "--json"]


def convert_both(ckpt: Path, work: Path, llama_cpp: Path, outtype: str, before_src: Path | None = None) -> dict:
    runs = {}
    warm(ckpt)
    runs["ours"] = run_child(_downsize_cmd(ckpt, work / "ours.gguf", outtype))
    warm(ckpt)
    runs["llama.cpp"] = run_child([PY, str(llama_cpp / "convert_hf_to_gguf.py"), str(ckpt), "--outfile", str(work / "theirs.gguf"),
                                   "--outtype", outtype.lower()], env={"PYTHONPATH": str(llama_cpp / "gguf-py"), "NO_LOCAL_GGUF": ""})
    if before_src is not None:
        warm(ckpt)
        runs["before"] = run_child(_downsize_cmd(ckpt, work / "before.gguf", outtype), env={"PYTHONPATH": str(before_src)})
    b = tensor_bytes(ckpt)
    for k, f in (("ours", "ours.gguf"), ("llama.cpp", "theirs.gguf"), ("before", "before.gguf")):
        if k in runs:
            r = runs[k]
            r["out_bytes"] = (work / f).stat().st_size if (work / f).exists() else None
            r["mb_per_s"] = b / 2**20 / r["seconds"] if r["rc"] == 0 else None
    if before_src is not None:
        runs["before"]["identical_to_ours"] = _sha256(work / "before.gguf") == _sha256(work / "ours.gguf")
    return {"checkpoint_mb": b / 2**20, **runs}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--llama-cpp", type=Path, default=Path("/tmp/sdist/llama_cpp_python-0.3.36/vendor/llama.cpp"))
    ap.add_argument("--hidden", type=int, default=2048)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--inter", type=int, default=5632)
    ap.add_argument("--outtype", default="f16")
    ap.add_argument("--vocab", type=int, default=None, help="embedding/LM-head rows (default: the tokenizer's size)")
    ap.add_argument("--zoo", default="zoo:coder-teacher")
    ap.add_argument("--threads", type=int, default=None, help="BLAS/OpenMP/torch threads per child (default: unset)")
    ap.add_argument("--before-src", type=Path, default=None, help="src folder of an older downsize to measure too")
    args = ap.parse_args()
    global THREADS
    THREADS = args.threads
    if not (args.llama_cpp / "convert_hf_to_gguf.py").exists():
        sys.exit(f"no convert_hf_to_gguf.py under {args.llama_cpp} (see the module docstring)")
    from downsize.models.refs import resolve_model

    work = Path(tempfile.mkdtemp(prefix="export_bench_"))
    results = {}
    try:
        try:
            zoo = resolve_model(args.zoo).path
            results["zoo"] = convert_both(zoo, work, args.llama_cpp, args.outtype, args.before_src)
            for f in ("ours.gguf", "theirs.gguf", "before.gguf"):
                (work / f).unlink(missing_ok=True)
        except Exception as e:  # noqa: BLE001 — the zoo model may not be trained yet
            results["zoo"] = {"error": str(e)}
        ck = work / "synthetic"
        vocab = resolve_model(args.zoo).path if "error" not in results["zoo"] else \
            Path.home() / ".cache/downsize/tokenizers/llama-bpe-8192-2-702c7ef4e93238ed"
        t0 = time.perf_counter()
        make_synthetic(ck, args.hidden, args.layers, args.inter, vocab, vocab=args.vocab)
        add_sentencepiece(ck, len(json.loads((ck / "tokenizer.json").read_text())["model"]["vocab"]))
        print(f"synthetic checkpoint built in {time.perf_counter() - t0:.0f} s", flush=True)
        results["synthetic"] = convert_both(ck, work, args.llama_cpp, args.outtype, args.before_src)
        cfg = json.loads((ck / "config.json").read_text())
        results["synthetic"]["shape"] = (f"llama vocab={cfg['vocab_size']} hidden={args.hidden} layers={args.layers} "
                                         f"ffn={args.inter} bf16")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(results, indent=2))
    for k, r in results.items():
        if "ours" not in r:
            print(f"{k}: {r}")
            continue
        o, t = r["ours"], r["llama.cpp"]
        print(f"\n{k} ({r.get('shape', '')} {r['checkpoint_mb']:.0f} MB of tensors, to {args.outtype}, threads={THREADS}):")

        def line(name, x):
            return (f"  {name:9}: rc={x['rc']} {x['seconds']:.1f} s, {x['mb_per_s'] or 0:.0f} MB/s, peak RSS "
                    f"{x['peak_rss_mb']:.0f} MB (load1 {x['load1_before']:.2f} -> {x['load1_after']:.2f})")

        print(line("downsize", o))
        if t["rc"] == 0:
            print(line("llama.cpp", t))
            print(f"  ratio    : speed x{t['seconds'] / o['seconds']:.2f}, peak RSS {o['peak_rss_mb'] / t['peak_rss_mb']:.2f} of llama.cpp's")
        else:
            print(f"  llama.cpp: refused (rc={t['rc']}): {t['tail'].strip().splitlines()[-1] if t['tail'].strip() else ''}")
        if "before" in r:
            b = r["before"]
            print(line("before", b) + f"; output byte-identical to downsize's: {b.get('identical_to_ours')}")
            if t["rc"] == 0 and b["rc"] == 0:
                print(f"  before   : speed x{t['seconds'] / b['seconds']:.2f}, peak RSS {b['peak_rss_mb'] / t['peak_rss_mb']:.2f} of llama.cpp's")


if __name__ == "__main__":
    main()
