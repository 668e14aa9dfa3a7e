"""GGUF tokenizers: downsize's converter vs llama.cpp's convert_hf_to_gguf.py on llama.cpp's own tokenizer tests.

For every test vocabulary of the llama-cpp-python sdist (vendor/llama.cpp/models/ggml-vocab-*.gguf with .inp strings
and .out ids from the original Hugging Face tokenizers), tests/ggml_vocab.py rebuilds the HF folder (tokenizer.json
in the family's real pipeline, tokenizer.model for the SentencePiece families, a one-layer model of the family);
the script checks that transformers reproduces the .out ids, then converts the same folder with both converters
and tokenizes every .inp string with llama.cpp (llama_cpp.Llama(vocab_only=True)), counting exact matches.
llama.cpp's converter runs in a subprocess with the sdist's gguf-py on PYTHONPATH (as benchmarks/export_convert.py
does); it needs the sentencepiece package for tokenizer.model (the bench-export extra).

    .venv/bin/python benchmarks/export_tokenizers.py            # all vocabularies, prints the table
    .venv/bin/python benchmarks/export_tokenizers.py qwen2 phi-3

Rows marked "json only" convert the SentencePiece folders without tokenizer.model (scores from the merges for
downsize; llama.cpp's converter then writes the same -1000 score for every piece, or refuses for Phi-3).
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from ggml_vocab import FAMILIES, NOT_A_SUPPORTED_FAMILY, VOCABS, build_folder, load_cases, read_metadata  # noqa: E402
from sdist import llama_cpp_dir  # noqa: E402

HF_ARCH = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM",
           "phi3": "Phi3ForCausalLM", "gemma3": "Gemma3ForCausalLM"}


def _llama_cpp_convert(folder: Path, out: Path) -> tuple[bool, str]:
    cpp = llama_cpp_dir()
    env = {**os.environ, "PYTHONPATH": str(cpp / "gguf-py"), "NO_LOCAL_GGUF": ""}
    r = subprocess.run([sys.executable, str(cpp / "convert_hf_to_gguf.py"), str(folder), "--outfile", str(out),
                        "--outtype", "f16"], capture_output=True, text=True, env=env)
    tail = (r.stderr or r.stdout).strip().splitlines()
    return r.returncode == 0 and out.exists(), (tail[-1] if tail else "")[:160]


def _downsize_convert(folder: Path, out: Path) -> tuple[bool, str, dict]:
    from downsize.errors import DownsizeError
    from downsize.export.gguf import export_gguf

    try:
        res = export_gguf(folder, out, "F16")
        return True, "", res.tokenizer
    except DownsizeError as e:
        return False, f"{e} ({e.hint})"[:160], {}


_COUNT = """
import contextlib, json, os, sys
import llama_cpp
cases = json.load(open(sys.argv[2]))
with open(os.devnull, "w") as devnull, contextlib.redirect_stderr(devnull):
    llm = llama_cpp.Llama(sys.argv[1], vocab_only=True, verbose=False)
print(sum(llm.tokenize(t.encode("utf-8"), add_bos=False, special=False) == ids for t, ids in cases))
"""


def _count(path: Path, cases) -> int | str:
    """Strings llama.cpp tokenizes to the .out ids, in a subprocess: llama.cpp aborts the process (GGML_ASSERT) on
    some vocabularies, which is then reported with its assertion."""
    cases_file = path.with_suffix(".cases.json")
    cases_file.write_text(json.dumps(cases))
    r = subprocess.run([sys.executable, "-c", _COUNT, str(path), str(cases_file)], capture_output=True, text=True)
    if r.returncode == 0:
        return int(r.stdout.strip().splitlines()[-1])
    why = next((ln for ln in r.stderr.splitlines() if "GGML_ASSERT" in ln), f"exit status {r.returncode}")
    return f"llama.cpp aborts loading it: {why.split('/src/')[-1].strip()}"


def _hf_count(folder: Path, cases) -> int:
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(folder)
    return sum(hf.encode(t, add_special_tokens=False) == ids for t, ids in cases)


def run(name: str, work: Path, sentencepiece_model: bool) -> dict:
    cases = load_cases(name)
    folder = build_folder(name, work / name, sentencepiece_model=sentencepiece_model)
    cfg = json.loads((folder / "config.json").read_text())
    row = {"vocab": name + ("" if sentencepiece_model or not FAMILIES[name].spm else " (json only)"),
           "family": cfg["architectures"][0], "n": len(cases), "hf": _hf_count(folder, cases)}
    t0 = time.perf_counter()
    ok, why, info = _downsize_convert(folder, work / f"{name}.ours.gguf")
    row["ours_s"] = time.perf_counter() - t0
    row["ours"] = _count(work / f"{name}.ours.gguf", cases) if ok else None
    row["ours_pre"] = f"{info.get('model')}/{info.get('pre')}" if ok else why
    t0 = time.perf_counter()
    ok, why = _llama_cpp_convert(folder, work / f"{name}.theirs.gguf")
    row["theirs_s"] = time.perf_counter() - t0
    if ok:
        meta = read_metadata(work / f"{name}.theirs.gguf")
        row["theirs"] = _count(work / f"{name}.theirs.gguf", cases)
        row["theirs_pre"] = f"{meta.get('tokenizer.ggml.model')}/{meta.get('tokenizer.ggml.pre')}"
        if isinstance(row["ours"], int):
            ours = read_metadata(work / f"{name}.ours.gguf")
            row["same_types"] = ours["tokenizer.ggml.token_type"] == meta["tokenizer.ggml.token_type"]
            row["same_tokens"] = ours["tokenizer.ggml.tokens"] == meta["tokenizer.ggml.tokens"]
            row["token_diffs"] = [(i, a, b) for i, (a, b) in enumerate(zip(ours["tokenizer.ggml.tokens"],
                                  meta["tokenizer.ggml.tokens"])) if a != b][:3]
            row["same_bos_eos"] = all(ours.get(k) == meta.get(k) for k in ("tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id"))
    else:
        row["theirs"], row["theirs_pre"] = None, f"refused: {why}"
    shutil.rmtree(folder, ignore_errors=True)
    for f in work.glob(f"{name}.*.gguf"):
        f.unlink()
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("vocabs", nargs="*", default=VOCABS)
    ap.add_argument("--json", type=Path, default=None, help="also write the rows as JSON here")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="export_tokenizers_"))
    rows = []
    try:
        for name in args.vocabs:
            rows.append(run(name, work, sentencepiece_model=True))
            print(json.dumps(rows[-1]), flush=True)
            if FAMILIES[name].spm:
                rows.append(run(name, work, sentencepiece_model=False))
                print(json.dumps(rows[-1]), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))

    def cell(k, r):
        return "refused" if r[k] is None else r[k] if isinstance(r[k], str) else f"{r[k]}/{r['n']}"

    print("\n| vocabulary | family (HF arch) | HF rebuilt | downsize | downsize writes | llama.cpp converter | "
          "llama.cpp writes | same tokens / types / BOS+EOS |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        same = " / ".join("yes" if r.get(k) else "no" for k in ("same_tokens", "same_types", "same_bos_eos")) \
            if "same_types" in r else "–"
        print(f"| {r['vocab']} | {r['family']} | {r['hf']}/{r['n']} | {cell('ours', r)} | {r['ours_pre']} | "
              f"{cell('theirs', r)} | {r['theirs_pre']} | {same} |")
    tot = {k: sum(r[k] for r in rows if "json only" not in r["vocab"] and isinstance(r[k], int))
           for k in ("ours", "theirs", "hf")}
    n = sum(r["n"] for r in rows if "json only" not in r["vocab"])
    print(f"\nwith tokenizer.model where the family has one: HF rebuilt {tot['hf']}/{n}, downsize {tot['ours']}/{n}, "
          f"llama.cpp's converter {tot['theirs']}/{n}")
    for name, why in NOT_A_SUPPORTED_FAMILY.items():
        print(f"not run: {name} ({why})")


if __name__ == "__main__":
    main()
