"""Side-by-side metrics of several models against a teacher, on the same token windows.

    >>> from downsize.export.gguf import export_gguf
    >>> _ = export_gguf("zoo:coder-teacher-qwen", "q8.gguf", quant="Q8_0")
    >>> rows = compare_models({"teacher": "zoo:coder-teacher-qwen", "q8": "q8.gguf"}, teacher="teacher",
    ...                       data="zoo:stdlib", seq_len=128, max_tokens=1024)   # the GGUF runs in llama.cpp
    >>> rows["teacher"]["kl_to_teacher"], rows["q8"]["top1_agreement"] > 0.95, rows["q8"]["kl_to_teacher"] < 0.01
    (0.0, True, True)

Every model sees the same windows of the same token stream (the teacher's tokenizer). KL is the
forward KL(teacher || model) per token in nats, and top-1 agreement the fraction of positions
where both argmaxes agree. GGUF files are run in llama.cpp itself (llama-cpp-python), not dequantised.

Vocabularies are matched token by token (``match_vocab``): a GGUF carries the embedding's padding rows as
``[PAD…]`` entries (Qwen2.5: 151,936 rows, 151,665 tokens) and two checkpoints of one family may differ in
embedding rows, so KL and top-1 are taken over the ids both vocabularies hold (renormalised there) when every
shared token has the same id in both, and the row's ``vocab`` says so. Different tokenizers are refused with
a DownsizeError: the models would not be reading the same token stream.

    >>> match_vocab({"a": 0, "b": 1, "[PAD2]": 2}, {"a": 0, "b": 1}).ids
    array([0, 1])
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from downsize.errors import DownsizeError
from downsize.eval.perplexity import windows
from downsize.models.placement import Placement, load_placed, to_model
from downsize.models.refs import load_tokenizer, resolve_model

LogitsFn = Callable[[list[int]], torch.Tensor]  # token ids of one window -> (T, V) fp32 logits


# The share of the smaller vocabulary that must be common to both before the rest is taken for padding.
MIN_SHARED = 0.99


@dataclass(frozen=True)
class VocabMatch:
    ids: np.ndarray | None  # sorted ids both vocabularies hold; None = identical vocabularies
    shared: int
    message: str


def match_vocab(model_vocab: dict[str, int], teacher_vocab: dict[str, int], model: str = "the model",
                teacher: str = "the teacher") -> VocabMatch:
    """How two token->id maps can be compared; DownsizeError when they are different tokenizers."""
    if not model_vocab or not teacher_vocab:
        raise DownsizeError(f"{model if not model_vocab else teacher} carries no vocabulary, so its logits cannot be "
                            f"matched to {teacher if not model_vocab else model}'s",
                            hint="evaluate it without --teacher (perplexity only), or re-export it with its tokenizer")
    if model_vocab == teacher_vocab:
        return VocabMatch(None, len(teacher_vocab), f"same vocabulary ({len(teacher_vocab):,} tokens)")
    shared = model_vocab.keys() & teacher_vocab.keys()
    bad = sorted((t for t in shared if model_vocab[t] != teacher_vocab[t]), key=lambda t: teacher_vocab[t])
    smaller = min(len(model_vocab), len(teacher_vocab))
    if bad or len(shared) < MIN_SHARED * smaller:
        detail = (f"{len(bad):,} of the {len(shared):,} tokens both hold have different ids (e.g. {bad[0]!r}: "
                  f"{model_vocab[bad[0]]} vs {teacher_vocab[bad[0]]})" if bad else
                  f"they share only {len(shared):,} of {smaller:,} tokens")
        raise DownsizeError(f"{model} and {teacher} use different tokenizers: {detail}, so their logits cannot be "
                            "compared id by id (nor the model run on the teacher's tokens)",
                            hint="compare models that share the teacher's tokenizer; evaluate this one alone "
                                 "(no --teacher) for its own perplexity")
    ids = np.array(sorted(teacher_vocab[t] for t in shared), dtype=np.int64)
    only_m, only_t = len(model_vocab) - len(shared), len(teacher_vocab) - len(shared)
    return VocabMatch(ids, len(shared), f"compared on the {len(shared):,} ids both vocabularies hold, all of which "
                                        f"agree ({only_m:,} more in {model}, {only_t:,} more in {teacher}: padding "
                                        "or added tokens, left out and the rest renormalised)")


def restrict(logits: torch.Tensor, ids: np.ndarray | None) -> torch.Tensor:
    """Log-probabilities over ``ids`` only (renormalised): (T, V) logits or log-probs -> (T, len(ids))."""
    x = logits if ids is None else logits[..., torch.from_numpy(ids)]
    return F.log_softmax(x.float(), -1)


def gguf_vocab(path: str | Path) -> dict[str, int]:
    """token string -> id from a GGUF's tokenizer.ggml.tokens ({} when it has none)."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    field = reader.fields.get("tokenizer.ggml.tokens")
    if field is None:
        return {}
    # GGUF token strings are byte-level encoded like the HF vocab, so the maps compare directly.
    return {bytes(field.parts[i]).decode("utf-8", errors="replace"): k for k, i in enumerate(field.data)}


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
    from downsize.models.llamacpp import gguf_logits, open_gguf

    from downsize.models.checks import read_gguf

    path = resolve_model(ref).path
    read_gguf(path)  # a damaged file gets a message, not llama.cpp's "failed to load"
    try:
        llm = open_gguf(path, n_ctx)  # the F16 KV cache users run with
    except ValueError as e:  # llama.cpp refused it: an architecture or tensor it does not know
        raise DownsizeError(f"llama.cpp could not load {path}: {e}",
                            hint="the GGUF is damaged or of an architecture this llama.cpp does not support") from None

    def logits(ids: list[int]) -> torch.Tensor:
        return torch.from_numpy(gguf_logits(llm, ids))

    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    params = int(sum(int(np.prod(t.shape)) for t in reader.tensors))
    del reader
    return Runner(name, ref, logits, gguf_vocab(path), params, size_on_disk_mb(path), "llama.cpp",
                  close=llm.close if hasattr(llm, "close") else (lambda: None))


def make_runner(name: str, ref: str, n_ctx: int) -> Runner:
    return _gguf_runner(name, ref, n_ctx) if resolve_model(ref).is_gguf else _hf_runner(name, ref)


def compare_models(models: dict[str, str], teacher: str, data: str = "zoo:stdlib", split: str | None = None,
                   seq_len: int = 256, max_tokens: int = 32768) -> dict[str, dict]:
    """Perplexity of each model, and KL / top-1 agreement of each against ``models[teacher]``."""
    from downsize.console import progress
    from downsize.eval.run import token_stream

    teacher_tok = load_tokenizer(models[teacher])
    stream = np.asarray(token_stream(teacher_tok, data, split)[:max_tokens])
    spans = windows(stream, seq_len)
    runners = {}
    try:
        for n, r in models.items():
            runners[n] = make_runner(n, r, seq_len)
        t = runners[teacher]
        match = {n: match_vocab(r.vocab, t.vocab, f"{n} ({r.ref})", f"{teacher} ({t.ref})")
                 for n, r in runners.items() if n != teacher}
    except BaseException:
        for r in runners.values():
            r.close()
        raise
    acc = {n: {"nll": 0.0, "kl": 0.0, "agree": 0, "n": 0} for n in runners}
    sel_ids = {n: m.ids for n, m in match.items()}
    notes = {n: m.message for n, m in match.items()}
    bar = progress(total=sum(e - s - 1 for s, e in spans), unit="tok",
                   desc=f"perplexity, KL, top-1 of {len(runners)} model{'s' if len(runners) != 1 else ''}")
    for s, e in spans:
        ids = stream[s:e].tolist()
        tgt = torch.tensor(ids[1:])
        t_logits = t.logits(ids)[:-1]
        t_logp = F.log_softmax(t_logits, -1)
        for n, r in runners.items():
            a = acc[n]
            a["n"] += len(tgt)
            if n == teacher:
                a["nll"] -= t_logp.gather(-1, tgt[:, None]).double().sum().item()
                continue
            logits = r.logits(ids)[:-1]
            a["nll"] -= F.log_softmax(logits, -1).gather(-1, tgt[:, None]).double().sum().item()
            if sel_ids[n] is None and logits.shape[-1] != t_logits.shape[-1]:  # one tokenizer, other embedding rows
                sel_ids[n] = np.array(sorted(v for v in t.vocab.values()
                                             if v < min(logits.shape[-1], t_logits.shape[-1])), dtype=np.int64)
                notes[n] += (f"; embedding rows {logits.shape[-1]:,} vs the teacher's {t_logits.shape[-1]:,}, "
                             f"compared on the {len(sel_ids[n]):,} token ids")
            sel = sel_ids[n]  # KL and top-1 over the ids both vocabularies hold
            tp, mp = (t_logp, F.log_softmax(logits, -1)) if sel is None else (restrict(t_logits, sel), restrict(logits, sel))
            # KL >= 0 per position; fp32 rounding of two equal distributions can give -1e-9, which is noise
            a["kl"] += (tp.exp() * (tp - mp)).double().sum(-1).clamp_min(0).sum().item()
            a["agree"] += int((mp.argmax(-1) == tp.argmax(-1)).sum())
        bar.update(len(tgt))
    bar.close()
    out = {}
    for n, r in runners.items():
        a = acc[n]
        out[n] = {"ref": r.ref, "backend": r.backend, "params": r.params, "size_mb": round(r.size_mb, 2),
                  "perplexity": math.exp(a["nll"] / a["n"]), "tokens": a["n"],
                  "kl_to_teacher": a["kl"] / a["n"] if n != teacher else 0.0,
                  "top1_agreement": a["agree"] / a["n"] if n != teacher else 1.0,
                  "vocab": notes[n] if n != teacher else None}
        r.close()
    return out
