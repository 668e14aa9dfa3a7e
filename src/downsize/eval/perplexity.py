"""Token-weighted perplexity over a token stream: exact, streamed, independent of the batch size.

    >>> from downsize.data.packing import tokenize_documents
    >>> from downsize.models.refs import load_model
    >>> model, tok = load_model("zoo:coder-teacher-qwen")
    >>> stream = tokenize_documents(tok, ["def add(a, b):", "    return a + b"] * 40)
    >>> r = perplexity(model, stream, seq_len=64, batch_size=2)
    >>> r8 = perplexity(model, stream, seq_len=64, batch_size=8)
    >>> r.tokens, round(r.perplexity, 3) == round(r8.perplexity, 3)     # batching does not change the result
    (511, True)
    >>> round(r.perplexity, 2)
    56.84

The stream is cut into non-overlapping windows of ``seq_len`` tokens; in each window every token
after the first is predicted from the tokens before it in that window. The summed negative
log-likelihood (float64) over all predicted tokens is divided by their count, so the result does
not depend on how windows are grouped into batches.

With ``chunk_rows`` the LM head runs on that many positions at a time from the final hidden states,
so a 152k-vocabulary model never holds the (B, T, V) logits of a batch (8 x 256 x 151,936 fp32 is
1.2 GB, its log-softmax as much again), only (chunk_rows, V):

    >>> r = perplexity(model, stream, seq_len=256, batch_size=8, chunk_rows=512)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class PerplexityResult:
    perplexity: float
    nll: float  # mean negative log-likelihood in nats per token
    tokens: int  # predicted tokens


def windows(stream: np.ndarray, seq_len: int) -> list[tuple[int, int]]:
    n = len(stream)
    return [(s, min(s + seq_len, n)) for s in range(0, n, seq_len) if min(s + seq_len, n) - s >= 2]


@torch.no_grad()
def perplexity(model, stream: np.ndarray, seq_len: int = 256, batch_size: int = 8,
               max_tokens: int | None = None, logits_fn=None, chunk_rows: int | None = None,
               desc: str = "perplexity") -> PerplexityResult:
    """Perplexity of ``model`` on ``stream``; ``logits_fn(ids) -> (B, T, V)`` overrides the forward call;
    ``chunk_rows``: apply the LM head to at most that many positions at a time (Hugging Face causal LMs);
    ``desc`` labels the progress bar (tokens scored, tok/s, ETA; downsize.console.progress)."""
    from downsize.console import progress

    if max_tokens is not None:
        stream = stream[:max_tokens]
    spans = windows(stream, seq_len)
    if not spans:
        raise ValueError(f"need at least 2 tokens to measure perplexity, got {len(stream)}")
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    device = next(model.parameters()).device if hasattr(model, "parameters") else torch.device("cpu")
    total_nll = 0.0
    total = 0
    bar = progress(total=sum(e - s - 1 for s, e in spans), desc=desc, unit="tok")
    for i in range(0, len(spans), batch_size):
        group = spans[i : i + batch_size]
        width = max(e - s for s, e in group)
        ids = torch.zeros(len(group), width, dtype=torch.long)
        mask = torch.zeros(len(group), width, dtype=torch.long)
        for r, (s, e) in enumerate(group):
            ids[r, : e - s] = torch.from_numpy(np.asarray(stream[s:e], dtype=np.int64))
            mask[r, : e - s] = 1
        ids, mask = ids.to(device), mask.to(device)
        if chunk_rows and logits_fn is None:
            total_nll += _chunked_nll(model, ids, mask, chunk_rows)
            total += int(mask[:, 1:].sum())
            bar.update(int(mask[:, 1:].sum()))
            continue
        logits = logits_fn(ids) if logits_fn else model(input_ids=ids, attention_mask=mask).logits  # (B, T, V)
        logp = F.log_softmax(logits[:, :-1].float(), dim=-1)
        tgt = ids[:, 1:]
        nll = -logp.gather(-1, tgt.unsqueeze(-1)).squeeze(-1)  # (B, T-1)
        m = mask[:, 1:].bool()
        total_nll += nll[m].double().sum().item()
        total += int(m.sum())
        bar.update(int(m.sum()))
    bar.close()
    if was_training:
        model.train()
    mean = total_nll / total
    return PerplexityResult(math.exp(mean), mean, total)


def _chunked_nll(model, ids: torch.Tensor, mask: torch.Tensor, chunk_rows: int) -> float:
    """Summed NLL of one batch with the LM head applied ``chunk_rows`` positions at a time."""
    from downsize.distill.losses import Head
    from downsize.distill.teacher import final_hidden, lm_head

    h = final_hidden(model, ids, mask)[:, :-1]  # (B, T-1, H)
    keep = mask[:, 1:].bool()
    rows, tgt = h[keep], ids[:, 1:][keep]  # (N, H), (N,): only the predicted positions
    head = lm_head(model)
    total = 0.0
    for a in range(0, rows.shape[0], chunk_rows):
        logits = Head.compute(rows[a : a + chunk_rows], head.weight, head.bias, head.softcap).float()  # (n, V)
        total += F.cross_entropy(logits, tgt[a : a + chunk_rows], reduction="sum").double().item()
    return total
