"""Conversion throughput and peak RSS: downsize's GGUF converter vs llama.cpp's convert_hf_to_gguf.py.

Both run as separate processes on the same checkpoint, to the same output type; peak RSS is the child's
ru_maxrss (os.wait4), throughput is the checkpoint's tensor bytes per wall second. The page cache is warmed
first so neither pays for the first disk read.

    .venv/bin/python benchmarks/export_convert.py --llama-cpp /tmp/sdist/llama_cpp_python-0.3.36/vendor/llama.cpp

llama.cpp's converter is the one vendored in the llama-cpp-python sdist (not part of this repository):
    .venv/bin/pip download --no-deps --no-binary :all: llama-cpp-python==0.3.36 -d /tmp/sdist && tar xzf ... -C /tmp/sdist

Checkpoints:
  * zoo:coder-teacher as shipped (byte-level BPE with a custom vocabulary): llama.cpp's converter identifies
    BPE pre-tokenizers by a hash of known vocabularies, so it refuses it; the refusal is reported.
  * a synthetic Llama (random weights, bf16, sharded like a Hub checkpoint) with both our BPE tokenizer.json
    and a SentencePiece tokenizer.model (which llama.cpp's converter accepts without a hash), so both convert
    the same weights. --hidden/--layers set its size.
"""

from __future__ import annotations

import argparse
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


def run_child(cmd: list[str], env: dict | None = None) -> dict:
    """Run ``cmd``; peak RSS is the child's own VmHWM (sampled until it exits). ru_maxrss from wait4 would also
    count the pre-exec copy of this (large, torch-importing) parent process."""
    t0 = time.perf_counter()
    log = tempfile.TemporaryFile()
    p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    hwm = 0
    while p.poll() is None:
        hwm = max(hwm, _hwm_kb(p.pid))
        time.sleep(0.02)
    seconds = time.perf_counter() - t0
    log.seek(0)
    out = log.read().decode(errors="replace")
    return {"rc": p.returncode, "seconds": seconds, "peak_rss_mb": hwm / 1024, "tail": out[-600:]}


def make_synthetic(dest: Path, hidden: int, layers: int, inter: int, vocab_dir: Path, shard_mb: int = 500) -> int:
    """A random-weight Llama checkpoint in bf16 shards; returns the tensor bytes."""
    from transformers import AutoTokenizer

    from downsize.models.arch import build_config

    tok = AutoTokenizer.from_pretrained(vocab_dir)
    heads = hidden // 128
    cfg = build_config("llama", vocab_size=len(tok), tokenizer=tok, hidden_size=hidden, intermediate_size=inter,
                       num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=max(1, heads // 4),
                       max_position_embeddings=2048, tie_word_embeddings=False)
    cfg.dtype = "bfloat16"
    dest.mkdir(parents=True)
    cfg.save_pretrained(dest)
    tok.save_pretrained(dest)
    kv = cfg.num_key_value_heads * 128
    shapes = {"model.embed_tokens.weight": (len(tok), hidden), "model.norm.weight": (hidden,), "lm_head.weight": (len(tok), hidden)}
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


def convert_both(ckpt: Path, work: Path, llama_cpp: Path, outtype: str) -> dict:
    warm(ckpt)
    ours = run_child([str(Path(PY).parent / "downsize"), "export", "gguf", str(ckpt), "--out", str(work / "ours.gguf"),
                      "--quant", outtype.upper(), "--json"])
    warm(ckpt)
    theirs = run_child([PY, str(llama_cpp / "convert_hf_to_gguf.py"), str(ckpt), "--outfile", str(work / "theirs.gguf"),
                        "--outtype", outtype.lower()], env={"PYTHONPATH": str(llama_cpp / "gguf-py"), "NO_LOCAL_GGUF": ""})
    b = tensor_bytes(ckpt)
    for r, f in ((ours, "ours.gguf"), (theirs, "theirs.gguf")):
        r["out_bytes"] = (work / f).stat().st_size if (work / f).exists() else None
        r["mb_per_s"] = b / 2**20 / r["seconds"] if r["rc"] == 0 else None
    return {"checkpoint_mb": b / 2**20, "ours": ours, "llama.cpp": theirs}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--llama-cpp", type=Path, default=Path("/tmp/sdist/llama_cpp_python-0.3.36/vendor/llama.cpp"))
    ap.add_argument("--hidden", type=int, default=2048)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--inter", type=int, default=5632)
    ap.add_argument("--outtype", default="f16")
    ap.add_argument("--zoo", default="zoo:coder-teacher")
    args = ap.parse_args()
    if not (args.llama_cpp / "convert_hf_to_gguf.py").exists():
        sys.exit(f"no convert_hf_to_gguf.py under {args.llama_cpp} (see the module docstring)")
    from downsize.models.refs import resolve_model

    work = Path(tempfile.mkdtemp(prefix="export_bench_"))
    results = {}
    try:
        try:
            zoo = resolve_model(args.zoo).path
            results["zoo"] = convert_both(zoo, work, args.llama_cpp, args.outtype)
            for f in ("ours.gguf", "theirs.gguf"):
                (work / f).unlink(missing_ok=True)
        except Exception as e:  # noqa: BLE001 — the zoo model may not be trained yet
            results["zoo"] = {"error": str(e)}
        ck = work / "synthetic"
        vocab = resolve_model(args.zoo).path if "error" not in results["zoo"] else \
            Path.home() / ".cache/downsize/tokenizers/llama-bpe-8192-2-702c7ef4e93238ed"
        t0 = time.perf_counter()
        make_synthetic(ck, args.hidden, args.layers, args.inter, vocab)
        add_sentencepiece(ck, json.loads((ck / "config.json").read_text())["vocab_size"])
        print(f"synthetic checkpoint built in {time.perf_counter() - t0:.0f} s", flush=True)
        results["synthetic"] = convert_both(ck, work, args.llama_cpp, args.outtype)
        results["synthetic"]["shape"] = f"llama hidden={args.hidden} layers={args.layers} ffn={args.inter} bf16"
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(results, indent=2))
    for k, r in results.items():
        if "ours" not in r:
            print(f"{k}: {r}")
            continue
        o, t = r["ours"], r["llama.cpp"]
        print(f"\n{k} ({r['checkpoint_mb']:.0f} MB of tensors, to {args.outtype}):")
        print(f"  downsize : rc={o['rc']} {o['seconds']:.1f} s, {o['mb_per_s'] or 0:.0f} MB/s, peak RSS {o['peak_rss_mb']:.0f} MB")
        if t["rc"] == 0:
            print(f"  llama.cpp: rc=0 {t['seconds']:.1f} s, {t['mb_per_s']:.0f} MB/s, peak RSS {t['peak_rss_mb']:.0f} MB")
            print(f"  ratio    : speed x{t['seconds'] / o['seconds']:.2f}, peak RSS {o['peak_rss_mb'] / t['peak_rss_mb']:.2f} of llama.cpp's")
        else:
            print(f"  llama.cpp: refused (rc={t['rc']}): {t['tail'].strip().splitlines()[-1] if t['tail'].strip() else ''}")


if __name__ == "__main__":
    main()
