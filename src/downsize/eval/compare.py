"""Side-by-side metrics of several models against a teacher, on the same token windows.

    >>> rows = compare_models({"teacher": "zoo:coder-teacher", "student": "runs/q/01-distill/output",
    ...                        "q4": "runs/q/03-quantize/model.gguf"}, teacher="teacher", data="zoo:stdlib")
    >>> rows["student"]["perplexity"], rows["student"]["kl_to_teacher"], rows["student"]["top1_agreement"]

Every model sees the same windows of the same token stream (the teacher's tokenizer). KL is the
forward KL(teacher || model) per token in nats, and top-1 agreement the fraction of positions
where both argmaxes agree; both need the model to share the teacher's tokenizer, and are left out
(None) where it does not. GGUF files are run in llama.cpp itself (llama-cpp-python), not dequantised.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from downsize.eval.perplexity import windows
from downsize.models.placement import Placement, load_placed, to_model
from downsize.models.refs import load_tokenizer, resolve_model

LogitsFn = Callable[[list[int]], torch.Tensor]  # token ids of one window -> (T, V) fp32 logits


@dataclass
class Runner:
    name: str
    ref: str
    logits: LogitsFn
    vocab: dict
    params: int | None
    size_mb: float
    backend: str
    close: Callable[[], None] = lambda: None


def size_on_disk_mb(path: Path) -> float:
    if path.is_file():
        return path.stat().st_size / 2**20
    return sum(p.stat().st_size for p in path.iterdir() if p.suffix in (".safetensors", ".bin", ".gguf")) / 2**20


def _hf_runner(name: str, ref: str) -> Runner:
    model, tok = load_placed(ref, Placement("auto", "fp32"))
    model.eval()

    @torch.no_grad()
    def logits(ids: list[int]) -> torch.Tensor:
        return model(to_model(torch.tensor([ids]), model)).logits[0].float().cpu()

    return Runner(name, ref, logits, tok.get_vocab(), sum(p.numel() for p in model.parameters()),
                  size_on_disk_mb(resolve_model(ref).path), "transformers")


def _gguf_runner(name: str, ref: str, n_ctx: int) -> Runner:
    from llama_cpp import Llama

    path = resolve_model(ref).path
    llm = Llama(model_path=str(path), n_ctx=n_ctx, logits_all=True, verbose=False)

    def logits(ids: list[int]) -> torch.Tensor:
        llm.reset()
        llm.eval(ids)
        return torch.from_numpy(np.array(llm.scores[: len(ids)], dtype=np.float32))

    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    params = int(sum(int(np.prod(t.shape)) for t in reader.tensors))
    tokens_field = reader.fields.get("tokenizer.ggml.tokens")
    gguf_vocab = None
    if tokens_field is not None:
        gguf_vocab = {bytes(tokens_field.parts[i]).decode("utf-8", errors="replace"): k
                      for k, i in enumerate(tokens_field.data)}
    del reader
    return Runner(name, ref, logits, gguf_vocab or {}, params, size_on_disk_mb(path), "llama.cpp",
                  close=llm.close if hasattr(llm, "close") else (lambda: None))


def ids_agree(a: dict[str, int], b: dict[str, int]) -> bool:
    """Whether two token maps give every shared token the same id and one holds all of the other's tokens: a
    GGUF carries one entry per embedding row (Qwen2.5: 151,936, padding included) where the Hugging Face
    tokenizer has 151,665, yet every id they share means the same token."""
    small, big = (a, b) if len(a) <= len(b) else (b, a)
    return all(big.get(tok) == i for tok, i in small.items())


def make_runner(name: str, ref: str, n_ctx: int) -> Runner:
    return _gguf_runner(name, ref, n_ctx) if resolve_model(ref).is_gguf else _hf_runner(name, ref)


def compare_models(models: dict[str, str], teacher: str, data: str = "zoo:stdlib", split: str | None = None,
                   seq_len: int = 256, max_tokens: int = 32768) -> dict[str, dict]:
    """Perplexity of each model, and KL / top-1 agreement of each against ``models[teacher]``."""
    from downsize.eval.run import token_stream

    teacher_tok = load_tokenizer(models[teacher])
    stream = np.asarray(token_stream(teacher_tok, data, split)[:max_tokens])
    spans = windows(stream, seq_len)
    runners = {n: make_runner(n, r, seq_len) for n, r in models.items()}
    t = runners[teacher]
    # GGUF token strings are byte-level encoded like the HF vocab, so the maps compare directly.
    same_vocab = {n: bool(r.vocab) and ids_agree(r.vocab, t.vocab) for n, r in runners.items()}
    acc = {n: {"nll": 0.0, "kl": 0.0, "agree": 0, "n": 0} for n in runners}
    for s, e in spans:
        ids = stream[s:e].tolist()
        tgt = torch.tensor(ids[1:])
        t_logp = F.log_softmax(t.logits(ids)[:-1], -1)
        for n, r in runners.items():
            logp = t_logp if n == teacher else F.log_softmax(r.logits(ids)[:-1], -1)
            a = acc[n]
            a["nll"] -= logp.gather(-1, tgt[:, None]).double().sum().item()
            a["n"] += len(tgt)
            if same_vocab[n]:
                tl, sl = t_logp, logp
                if sl.shape[-1] != tl.shape[-1]:  # padding rows of one embedding: compare on the shared ids
                    v = min(sl.shape[-1], tl.shape[-1])
                    tl, sl = F.log_softmax(tl[:, :v], -1), F.log_softmax(sl[:, :v], -1)
                a["kl"] += (tl.exp() * (tl - sl)).sum(-1).double().sum().item()
                a["agree"] += int((sl.argmax(-1) == tl.argmax(-1)).sum())
    out = {}
    for n, r in runners.items():
        a = acc[n]
        comparable = same_vocab[n]
        out[n] = {"ref": r.ref, "backend": r.backend, "params": r.params, "size_mb": round(r.size_mb, 2),
                  "perplexity": math.exp(a["nll"] / a["n"]), "tokens": a["n"],
                  "kl_to_teacher": a["kl"] / a["n"] if comparable else None,
                  "top1_agreement": a["agree"] / a["n"] if comparable else None}
        r.close()
    return out
