"""Where the teacher's distribution comes from: online forward, an offline top-k cache, or sampling.

    >>> from downsize.models.refs import load_model
    >>> model, tok = load_model("zoo:coder-teacher-qwen")
    >>> batch = torch.tensor([tok.encode("def add(a, b):")])
    >>> final_hidden(model, batch).shape                    # (B, T, H) final hidden states, one forward
    torch.Size([1, 6, 256])
    >>> m = cache_teacher("zoo:coder-teacher-qwen", "zoo:stdlib", "runs/cache", k=8, seq_len=32, windows=8)
    >>> m["k"], m["windows"], m["complete"]
    (8, 8, True)
    >>> ds = TopKCacheDataset("runs/cache", seed=0)           # batches carry the teacher's top-k
    >>> sorted(ds.batch(0, 2))
    [...'input_ids', 'labels'...]
    >>> g = torch.Generator().manual_seed(0)
    >>> sample(model, batch, new_tokens=4, generator=g).shape   # seeded continuation (B, P + 4)
    torch.Size([1, 10])

The cache is a directory of safetensors shards (``shard-00000.safetensors``, each written
atomically) and ``manifest.json`` naming the teacher, data, window length, k, temperature and the
measured bytes per token. Each position stores the teacher's top-k log-probabilities (fp16), their
ids (int16 when the vocabulary fits, else int32) and the log of the remaining mass (fp32), so the
losses see the whole distribution coarse-grained to k+1 outcomes. An interrupted ``cache_teacher``
continues at the first missing shard.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from downsize.distill.losses import Head, TopK, topk_from_logits
from downsize.errors import DownsizeError
from downsize.data.packing import WindowSchedule
from downsize.io import KIND_CACHE, atomic_path, check_output, mark_dir, write_json_atomic

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
CACHE_FORMAT = 1
# keys of the cached tensors, and of the batch fields a cached batch carries
K_INPUT_IDS, K_LOGP, K_IDS, K_TAIL = "input_ids", "teacher_logp", "teacher_ids", "teacher_tail"


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside DDP / accelerate wrappers (PEFT models are kept: they forward to the base)."""
    while hasattr(model, "module") and isinstance(model.module, torch.nn.Module):
        model = model.module
    return model


def lm_head(model: torch.nn.Module) -> Head:
    """The LM head of a causal LM as a ``Head`` template (hidden filled in later)."""
    raw = unwrap(model)
    head = raw.get_output_embeddings()
    softcap = getattr(raw.config, "final_logit_softcapping", None)
    return Head(torch.empty(0), head.weight, getattr(head, "bias", None), softcap)


def final_hidden(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Final (post-norm) hidden states (B, T, H) from one forward through ``model``.

    ``model`` is called as a whole (so DDP/FSDP hooks run) with ``logits_to_keep`` an empty index, so the
    LM head runs on no position at all (``logits_to_keep=1`` for a model that takes only a count); the
    distillation loss applies the head chunk by chunk itself. One position was not free: Hugging Face
    applies the head to it as a batched product with the weight broadcast, which reads the whole (V, H)
    matrix once per sequence (7.5 ms of a 15.7M teacher's 440 ms forward of 8 x 128 tokens at V = 8,192;
    at V = 151,936 and H = 896, 545 MB read per sequence in fp32).
    """
    raw = unwrap(model)
    decoder = raw.get_decoder()
    got: dict[str, torch.Tensor] = {}

    def hook(_mod, _args, out):
        got["h"] = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]

    handle = decoder.register_forward_hook(hook)
    base = raw.get_base_model() if hasattr(raw, "get_base_model") else raw  # PEFT passes the argument through
    keep = torch.empty(0, dtype=torch.long, device=input_ids.device) if _keeps_index(type(base)) else 1
    try:
        model(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=keep, use_cache=False)
    finally:
        handle.remove()
    return got["h"]


@functools.cache
def _keeps_index(kind: type) -> bool:
    """Does ``kind.forward`` take ``logits_to_keep`` as a tensor of positions (Hugging Face's ``int | Tensor``)?"""
    import inspect

    p = inspect.signature(kind.forward).parameters.get("logits_to_keep")
    return p is not None and "Tensor" in str(p.annotation)


def teacher_precision(dtype: str = "auto", train_precision: str = "auto") -> str:
    """"bf16" or "fp32" teacher weights: ``auto`` follows the training precision (itself ``auto``: bf16 only
    where the hardware computes in it; a bf16 teacher on a CPU without native bf16 is ~10x slower)."""
    from downsize.hardware import normalise, resolve_precision

    name = normalise(dtype)
    if name == "auto":
        p = resolve_precision(train_precision)
        log.info("teacher weights: %s (%s)", p.name, p.reason)
        return p.name
    return name


@dataclass
class OnlineTeacher:
    """The teacher model, run inside the loop without gradients (bf16 weights when ``dtype`` says so)."""

    model: torch.nn.Module

    def __post_init__(self):
        self.model.eval().requires_grad_(False)

    @torch.no_grad()
    def head(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> Head:
        """The teacher's rows on its own device (the loss moves each chunk's log-probs to the student's)."""
        from downsize.models.placement import to_model

        mask = None if attention_mask is None else to_model(attention_mask, self.model)
        h = final_hidden(self.model, to_model(input_ids, self.model), mask)  # (B, T, H)
        tmpl = lm_head(self.model)
        return Head(h, tmpl.weight, tmpl.bias, tmpl.softcap)

    def rows(self, input_ids: torch.Tensor) -> Head:
        """The teacher's rows for positions 0..T-2 (each predicts the next token), flattened to (B·(T-1), H)."""
        head = self.head(input_ids)
        h = head.hidden[:, :-1]
        return Head(h.reshape(-1, h.shape[-1]), head.weight, head.bias, head.softcap)


@torch.no_grad()
def sample(model: torch.nn.Module, prompt: torch.Tensor, new_tokens: int, generator: torch.Generator,
           temperature: float = 1.0, top_k: int = 0) -> torch.Tensor:
    """Continue ``prompt`` (B, P) by ``new_tokens`` sampled tokens with a KV cache; deterministic for a seeded generator."""
    from downsize.models.compat import CACHE_ARG, kv_cache  # imports transformers: only when sampling
    from downsize.models.placement import device_of

    raw = unwrap(model)
    was_training = raw.training
    raw.eval()
    home = prompt.device
    prompt = prompt.to(device_of(raw))  # the student's batch may be sampled by a teacher on another device
    out = prompt
    past = None
    nxt = prompt
    try:
        for _ in range(new_tokens):
            res = raw(input_ids=nxt, **{CACHE_ARG: past}, use_cache=True, logits_to_keep=1)
            past = kv_cache(res)
            logits = res.logits[:, -1].float()  # (B, V)
            if temperature <= 0:
                tok = logits.argmax(-1, keepdim=True)
            else:
                logits = logits / temperature
                if top_k:
                    kth = logits.topk(top_k, dim=-1).values[:, -1:]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                probs = logits.softmax(-1)
                tok = torch.multinomial(probs.cpu(), 1, generator=generator).to(prompt.device)
            out = torch.cat([out, tok], dim=1)
            nxt = tok
    finally:
        raw.train(was_training)
    return out.to(home)


# ---- offline top-k cache ----------------------------------------------------------------------

@torch.no_grad()
def _topk_rows(model, x: torch.Tensor, k: int, temperature: float) -> TopK:
    """Top-k of the teacher at positions 0..T-2 of ``x`` (b, T), one window's rows of logits at a time, on the CPU."""
    from downsize.models.placement import to_model

    h = final_hidden(model, to_model(x, model))[:, :-1]  # (b, T-1, H)
    head = lm_head(model)
    parts = [topk_from_logits(Head.compute(h[i], head.weight, head.bias, head.softcap), k, temperature)
             for i in range(h.shape[0])]  # (T-1, V) logits per window
    return TopK(*(torch.cat([getattr(p, f) for p in parts]).cpu() for f in ("logp", "ids", "tail_logp")))


def _id_dtype(vocab: int) -> torch.dtype:
    return torch.int16 if vocab <= 32767 else torch.int32


def cache_teacher(teacher, data, out_dir: str | os.PathLike, k: int = 32, seq_len: int = 256, windows: int | None = None,
                  batch_size: int = 8, temperature: float = 1.0, shard_windows: int = 256, split: str | None = None,
                  dtype: str = "auto", device: str = "auto", overwrite: bool = False) -> dict:
    """Run the teacher once over the first ``windows`` packed windows of ``data``; write the top-k cache.

    ``teacher`` is a model reference (or a ``(model, tokenizer)`` pair); ``data`` a data reference.
    Returns the manifest (with ``bytes_per_token`` measured from the shard files). ``device``: where the
    teacher runs (``models.placement``). The LM head runs ``seq_len - 1`` positions at a time, so at a
    152k vocabulary no (batch, T, V) logits are ever held.
    """
    from downsize.distill.train import load_stream

    out = Path(out_dir)
    if not (out / MANIFEST).exists():  # a cache folder resumes; anything else must be new, empty or --overwrite
        check_output(out, KIND_CACHE, overwrite)
    from downsize.models.placement import Placement, load_placed, place

    where = Placement(device, teacher_precision(dtype))
    if isinstance(teacher, tuple):
        model, tok = teacher
        model = place(model, where)
        teacher_name = getattr(model.config, "_name_or_path", "model")
    else:
        from downsize.data.refs import resolve_data

        if isinstance(data, str):
            resolve_data(data)  # fail on bad data before the teacher loads
        model, tok = load_placed(teacher, where)  # straight in the dtype it runs in
        teacher_name = str(teacher)
    model.eval().requires_grad_(False)
    stream = load_stream(tok, data, split)
    n_all = (len(stream) - 1) // seq_len
    n = min(n_all, windows) if windows else n_all
    if n < 1:
        raise DownsizeError(f"{data} has {len(stream)} tokens, fewer than one window of {seq_len + 1}",
                            hint="lower --seq-len or give more data")
    vocab = model.get_output_embeddings().weight.shape[0]
    if k > vocab:
        raise DownsizeError(f"top-k {k} exceeds the teacher vocabulary {vocab}", hint="use k of 16-64")
    from downsize.data.packing import tokenizer_fingerprint

    meta = {"format": CACHE_FORMAT, "teacher": teacher_name, "data": str(data), "split": split, "seq_len": seq_len,
            "k": k, "temperature": temperature, "vocab_size": vocab, "windows": n, "shard_windows": shard_windows,
            "tokenizer": tokenizer_fingerprint(tok), "id_dtype": str(_id_dtype(vocab)).replace("torch.", "")}
    manifest_path = out / MANIFEST
    done: list[str] = []

    if manifest_path.exists():
        old = json.loads(manifest_path.read_text())
        same = {key: old.get(key) for key in meta} == meta
        if not same:
            raise DownsizeError(f"{out} holds a cache made with other settings ({old.get('teacher')}, k={old.get('k')}, "
                                f"seq_len={old.get('seq_len')}, windows={old.get('windows')})",
                                hint="choose another --cache directory or delete this one")
        done = list(old.get("shards", []))
    out.mkdir(parents=True, exist_ok=True)
    mark_dir(out, KIND_CACHE)
    id_dtype = _id_dtype(vocab)
    n_shards = (n + shard_windows - 1) // shard_windows
    from downsize.console import progress, progress_logging

    first = min(n, len(done) * shard_windows)
    bar = progress(total=(n - first) * seq_len, desc=f"teacher top-{k} cache", unit="tok")
    with progress_logging():
        for si in range(len(done), n_shards):
            a, b = si * shard_windows, min(n, (si + 1) * shard_windows)
            ids = torch.from_numpy(np.asarray(stream[a * seq_len: b * seq_len], dtype=np.int64)).view(b - a, seq_len)
            parts: dict[str, list[torch.Tensor]] = {K_LOGP: [], K_IDS: [], K_TAIL: []}
            for r in range(0, b - a, batch_size):
                x = ids[r: r + batch_size]
                top = _topk_rows(model, x, k, temperature)
                bar.update(x.numel())
                shp = (x.shape[0], seq_len - 1)
                parts[K_LOGP].append(top.logp.view(*shp, k).half())
                parts[K_IDS].append(top.ids.view(*shp, k).to(id_dtype))
                parts[K_TAIL].append(top.tail_logp.view(shp).float())
            tensors = {K_INPUT_IDS: ids.to(torch.int32), **{key: torch.cat(v) for key, v in parts.items()}}
            name = f"shard-{si:05d}.safetensors"
            with atomic_path(out / name) as tmp:
                save_file(tensors, str(tmp))
            done.append(name)
            write_json_atomic(manifest_path, {**meta, "shards": done, "complete": len(done) == n_shards})
            log.info("cached shard %d/%d (%d windows)", si + 1, n_shards, b - a)
    bar.close()
    shard_bytes = sum((out / s).stat().st_size for s in done)
    # teacher-side bytes only: the input ids are stored too, but training reads those from any cache
    ids_bytes = n * seq_len * 4
    per_token = (shard_bytes - ids_bytes) / (n * (seq_len - 1))
    meta = {**meta, "shards": done, "complete": True, "bytes": shard_bytes, "bytes_per_token": round(per_token, 2),
            "dense_bf16_bytes_per_token": vocab * 2}
    write_json_atomic(manifest_path, meta)
    return meta


class TopKCacheDataset:
    """Batches from a teacher cache: ``input_ids``, ``labels`` and the teacher's top-k per position.

    The window order is the same seeded permutation as ``PackedDataset`` over the cached windows, so
    an online run over the same windows (``DistillConfig.windows``) sees the same batches.
    """

    def __init__(self, cache_dir: str | os.PathLike, seed: int = 0):
        self.dir = Path(cache_dir)
        mp = self.dir / MANIFEST
        if not mp.exists():
            raise DownsizeError(f"no teacher cache at {self.dir} (no {MANIFEST})",
                                hint="write one with `downsize distill --teacher T --data D --write-cache DIR`")
        self.meta = json.loads(mp.read_text())
        if not self.meta.get("complete"):
            raise DownsizeError(f"the teacher cache at {self.dir} is incomplete ({len(self.meta.get('shards', []))} shards)",
                                hint="run the same `downsize distill cache-teacher` command again; it continues where it stopped")
        self.seed = seed
        self.seq_len = self.meta["seq_len"]
        self.n_windows = self.meta["windows"]
        self.shard_windows = self.meta["shard_windows"]
        self._open: dict[int, object] = {}
        self.schedule = WindowSchedule(self.n_windows, seed)

    def _shard(self, i: int):
        if i not in self._open:
            self._open[i] = safe_open(str(self.dir / self.meta["shards"][i]), framework="pt")
        return self._open[i]

    def window(self, w: int) -> dict[str, torch.Tensor]:
        f = self._shard(w // self.shard_windows)
        r = w % self.shard_windows
        return {key: f.get_slice(key)[r: r + 1] for key in (K_INPUT_IDS, K_LOGP, K_IDS, K_TAIL)}

    def batch(self, step: int, batch_size: int, rank: int = 0, world: int = 1) -> dict[str, torch.Tensor]:
        rows = [self.window(w) for w in self.schedule.windows(step, batch_size, rank, world)]
        out = {key: torch.cat([r[key] for r in rows]) for key in rows[0]}
        out[K_INPUT_IDS] = out[K_INPUT_IDS].long()
        out["labels"] = out[K_INPUT_IDS].clone()
        return out


def cached_topk(batch: dict) -> TopK:
    """The teacher's top-k of a cached batch, flattened to rows (B·(T-1), k)."""
    logp, ids, tail = batch[K_LOGP], batch[K_IDS], batch[K_TAIL]
    k = logp.shape[-1]
    return TopK(logp.reshape(-1, k), ids.reshape(-1, k), tail.reshape(-1))
