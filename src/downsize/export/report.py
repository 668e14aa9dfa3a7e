"""Per-export report: size, bits per weight, perplexity delta and KL against the unquantized HF model,
measured with the GGUF running in llama.cpp on the same token windows as the HF model.

    >>> from downsize.export.gguf import export_gguf
    >>> for q in ("F32", "Q4_K_M"):
    ...     _ = export_gguf("zoo:coder-teacher-qwen", f"m-{q.lower()}.gguf", quant=q)
    >>> rows = quant_report(["m-f32.gguf", "m-q4_k_m.gguf"], "zoo:coder-teacher-qwen", ReportConfig(max_tokens=1024))
    >>> sorted(rows[1])
    ['bits_per_weight', 'file_bytes', 'file_type', 'gguf', 'kl', 'params', 'ppl', 'ppl_delta_pct', 'ppl_ref',
     'tensor_bytes', 'tokens', 'top1_agreement', 'vocab']
    >>> rows[1]["ppl_delta_pct"] > rows[0]["ppl_delta_pct"], 4 < rows[1]["bits_per_weight"] < 7
    (True, True)

Windows are non-overlapping ``seq_len`` slices of the validation stream (downsize.eval.perplexity.windows), so
``ppl_ref`` equals ``downsize eval``'s perplexity on the same tokens. KL and top-1 are taken over the ids the
GGUF's and the tokenizer's vocabularies share (``downsize.eval.compare.match_vocab``: a GGUF lists the
embedding's padding rows as tokens), renormalised there; ``vocab`` in each row says which.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np
import torch

from downsize.export.verify import _log_softmax, gguf_logits, load_llama


@dataclass(frozen=True)
class ReportConfig:
    data: str = "zoo:stdlib"
    split: str | None = None  # default: the evaluation split (validation of zoo:stdlib, all of other data)
    seq_len: int = 256
    max_tokens: int = 16384
    per_window: bool = False  # add each window's summed NLL ("window_nll") to the rows, for paired comparisons


def gguf_size(path: str | os.PathLike) -> dict:
    """File bytes, weight bytes and parameters of a GGUF; bits/weight over all tensors (as llama.cpp reports BPW)."""
    r = gguf.GGUFReader(path)
    n = sum(int(np.prod(t.shape)) for t in r.tensors)
    nbytes = sum(int(t.n_bytes) for t in r.tensors)
    ft = r.fields.get("general.file_type")
    return {"file_bytes": Path(path).stat().st_size, "tensor_bytes": nbytes, "params": n,
            "bits_per_weight": 8 * nbytes / max(n, 1),
            "file_type": gguf.LlamaFileType(ft.contents()).name if ft is not None else "?"}


def _stream(tok, cfg: ReportConfig) -> np.ndarray:
    from downsize.data.stream import token_stream

    return np.asarray(token_stream(tok, cfg.data, "eval", cfg.split)[: cfg.max_tokens], dtype=np.int64)


def quant_report(gguf_paths: list[str | os.PathLike], model_ref, cfg: ReportConfig = ReportConfig()) -> list[dict]:
    """One row per GGUF: size, BPW, perplexity vs the HF model, delta, KL(HF ‖ GGUF), top-1 agreement."""
    from downsize.eval.perplexity import windows
    from downsize.models.refs import load_model

    model, tok = load_model(model_ref, dtype=torch.float32)
    model.eval()
    stream = _stream(tok, cfg)
    spans = windows(stream, cfg.seq_len)
    ref_lp = []
    from downsize.console import progress

    with torch.no_grad():
        for s, e in progress(spans, desc="quant report: float model", unit="window"):
            ref_lp.append(_log_softmax(model(torch.from_numpy(stream[s:e])[None]).logits[0].float().numpy()))
    ref_nll = sum(-lp[np.arange(e - s - 1), stream[s + 1:e]].sum() for lp, (s, e) in zip(ref_lp, spans))
    n_pred = sum(e - s - 1 for s, e in spans)
    ppl_ref = float(np.exp(ref_nll / n_pred))
    from downsize.eval.compare import gguf_vocab, match_vocab

    rows = []
    for path in gguf_paths:
        match = match_vocab(gguf_vocab(path), tok.get_vocab(), f"the GGUF {path}", f"the tokenizer of {model_ref}")
        sel = match.ids
        llm = load_llama(path, n_ctx=cfg.seq_len, f32_kv=False)  # as users run it
        kl = agree = 0.0
        window_nll = []
        for lp, (s, e) in progress(list(zip(ref_lp, spans)), desc=f"quant report: {Path(path).name}", unit="window"):
            ids = stream[s:e].tolist()
            raw = gguf_logits(llm, ids)
            gl = _log_softmax(raw)
            window_nll.append(float(-gl[np.arange(e - s - 1), stream[s + 1:e]].sum()))
            rp, gp = (lp, gl) if sel is None else (_log_softmax(lp[:, sel]), _log_softmax(raw[:, sel]))
            kl += float((np.exp(rp) * (rp - gp)).sum(-1).sum())
            agree += float((rp.argmax(-1) == gp.argmax(-1)).sum())
        n_pos = sum(e - s for s, e in spans)
        ppl = float(np.exp(sum(window_nll) / n_pred))
        del llm
        rows.append({"gguf": str(path), **gguf_size(path), "tokens": n_pred, "ppl_ref": ppl_ref, "ppl": ppl,
                     "ppl_delta_pct": 100 * (ppl / ppl_ref - 1), "kl": kl / n_pos, "top1_agreement": agree / n_pos,
                     "vocab": match.message,
                     **({"window_nll": window_nll} if cfg.per_window else {})})
    return rows


def paired_nll_delta(a: dict, b: dict, *, rng: np.random.Generator | None = None,
                     n_boot: int = 2000) -> tuple[float, float, float]:
    """NLL per token of row ``b`` minus row ``a`` over the same windows (rows from ``quant_report`` with
    ``per_window=True``), with a 95 % bootstrap interval that resamples windows: (delta, low, high)."""
    d = np.asarray(b["window_nll"]) - np.asarray(a["window_nll"])
    n_pred = a["tokens"]
    rng = np.random.default_rng(0) if rng is None else rng
    boot = [d[rng.integers(0, len(d), len(d))].sum() / n_pred for _ in range(n_boot)]
    return float(d.sum() / n_pred), float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))
