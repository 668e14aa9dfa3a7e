"""Check a GGUF in a real llama.cpp runtime (llama-cpp-python) against the Hugging Face model it came from.

    >>> from downsize.export.gguf import export_gguf
    >>> from downsize.models.refs import resolve_model
    >>> _ = export_gguf("zoo:coder-teacher-qwen", "out.gguf", quant="F32")
    >>> r = compare_with_hf("out.gguf", resolve_model("zoo:coder-teacher-qwen").path, texts=[MIXED_TEXT])
    >>> r["tokens_equal"], r["max_abs_logit_diff"] < 1e-2, r["top1_agreement"]
    (True, True, 1.0)

Token ids must be identical (text is tokenized by llama.cpp's own tokenizer from the GGUF metadata); logits
are compared position by position; perplexity and KL(HF ‖ GGUF) summarise what quantization lost.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from downsize.models.llamacpp import gguf_logits, open_gguf
from downsize.models.llamacpp import tokenize as gguf_tokenize

# Code, unicode, emoji, whitespace runs, digits and the zoo's special tokens.
MIXED_TEXT = (
    "def parse(path: str) -> dict[str, int]:\n"
    "    \"\"\"Read key=value lines.\"\"\"\n\tif not path:\n\t\treturn {}   # empty\n\n\n"
    "    x = 1234567 + 3.14159e-10; y = 'it''s' + \"don't\"\n"
    "Ünïcödé: naïve café, 日本語のテキスト, Ελληνικά, emoji 😀🐍 — “quotes” …\n"
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n4<|im_end|>\n"
    "    trailing spaces    \r\n  CamelCaseName snake_case_name __dunder__ 0x1F 1_000_000"
)


def load_llama(path: str | os.PathLike, n_ctx: int = 512, threads: int | None = None, f32_kv: bool = True):
    """llama.cpp with all logits kept; ``f32_kv`` keeps the KV cache in F32 (conversion checks need it)."""
    return open_gguf(path, n_ctx, threads=threads or min(4, os.cpu_count() or 1), f32_kv=f32_kv, n_batch=n_ctx)


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def logit_stats(ref: np.ndarray, got: np.ndarray, ids: list[int]) -> dict:
    """Compare (T, V) logits: max abs diff, top-1 agreement, mean KL(ref ‖ got), NLL of the next token under each."""
    lr, lg = _log_softmax(ref), _log_softmax(got)
    kl = float((np.exp(lr) * (lr - lg)).sum(-1).mean())
    nxt = np.asarray(ids[1:])
    nll_ref = float(-lr[np.arange(len(nxt)), nxt].mean()) if len(nxt) else float("nan")
    nll_got = float(-lg[np.arange(len(nxt)), nxt].mean()) if len(nxt) else float("nan")
    return {"max_abs_logit_diff": float(np.abs(ref - got).max()),
            "top1_agreement": float((ref.argmax(-1) == got.argmax(-1)).mean()),
            "kl": kl, "nll_ref": nll_ref, "nll_gguf": nll_got}


def compare_with_hf(gguf_path: str | os.PathLike, model_dir: str | os.PathLike, texts: list[str] | None = None,
                    n_ctx: int = 512) -> dict:
    """Tokenize ``texts`` with llama.cpp and HF, run both models, and summarise agreement."""
    import torch

    from downsize.models.refs import load_model

    texts = texts or [MIXED_TEXT]
    model, tok = load_model(str(model_dir), dtype=torch.float32)
    model.eval()
    llm = load_llama(gguf_path, n_ctx=n_ctx)
    equal, refs, gots, all_ids = True, [], [], []
    for text in texts:
        ids_hf = tok.encode(text, add_special_tokens=False)[:n_ctx]
        ids_cpp = gguf_tokenize(llm, text)[:n_ctx]
        equal &= ids_hf == ids_cpp
        with torch.no_grad():
            refs.append(model(torch.tensor([ids_hf])).logits[0].float().numpy())
        gots.append(gguf_logits(llm, ids_hf))
        all_ids.append(ids_hf)
    stats = [logit_stats(r, g, i) for r, g, i in zip(refs, gots, all_ids)]
    n = [len(i) - 1 for i in all_ids]
    w = lambda k: float(np.average([s[k] for s in stats], weights=n))  # noqa: E731
    return {"tokens_equal": bool(equal), "n_tokens": int(sum(len(i) for i in all_ids)),
            "max_abs_logit_diff": max(s["max_abs_logit_diff"] for s in stats),
            "top1_agreement": w("top1_agreement"), "kl": w("kl"),
            "ppl_hf": float(np.exp(w("nll_ref"))), "ppl_gguf": float(np.exp(w("nll_gguf"))),
            "gguf": str(Path(gguf_path))}
