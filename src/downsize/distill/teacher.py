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
import time
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


# per model class: does logits_to_keep take an empty index tensor


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


AHEAD_LOGP_BYTES = 256 * 2 ** 20  # at most this much of one batch's teacher log-probabilities is computed ahead


class TeacherAhead:
    """A batch source (``data.batch(step, ...)``) whose batches carry the teacher's output, computed for batch
    ``i + 1`` on a thread of its own while the student trains on batch ``i``.

    On a CPU the teacher's forward then runs on ``teacher_threads`` of the process's threads and the student's
    step on the rest, each at the efficiency that one large team of threads loses (benchmarks/RESULTS.md,
    "Online KD vs TRL"). The batches are the wrapped source's, unchanged; ``batch["teacher_ahead"]`` is a
    future of a ``losses.TeacherLogp``: the teacher's log-probabilities for the first ``ahead_rows``
    positions (whole loss chunks, at the loss's temperature and vocabulary), computed on the teacher's
    thread, and its final hidden states for all, from which the loss computes the others. ``ahead_rows``
    balances the two threads: after each step it moves by one chunk towards the side that waited (only
    where the two thread counts are equal, so that a chunk's numbers are the same whichever thread made
    them: a resumed run is exact). Use it as a context manager: the thread counts are split on the first
    batch (after the loop chose the process's threads), and restored, and the worker stopped, on exit.

        >>> from downsize.models.refs import load_model
        >>> from downsize.distill.train import WindowData, load_stream
        >>> from downsize.distill.losses import LossSpec
        >>> model, tok = load_model("zoo:coder-teacher-qwen")
        >>> data = WindowData(load_stream(tok, "zoo:stdlib", "train"), 32, seed=0, windows=8)
        >>> with TeacherAhead(data, OnlineTeacher(model), LossSpec("fkl", chunk_size=16), steps=2) as ahead:
        ...     rows = ahead.batch(0, 2)["teacher_ahead"].result()
        >>> len(rows), tuple(rows.logp.shape)      # 2 windows x 31 positions, all computed ahead here
        (62, (62, 4096))
    """

    def __init__(self, inner, teacher: OnlineTeacher, loss, vocab: int | None = None, steps: int | None = None,
                 share: float = 0.5, ahead: float = 1.0):
        self.inner, self.teacher, self.loss, self.vocab, self.steps = inner, teacher, loss, vocab, steps
        self.share, self.ahead = share, ahead  # threads' share; the starting share of rows done ahead
        self._pool = None
        self._pending: dict = {}
        self._threads: tuple[int, int] | None = None  # (the caller's threads before the split, the teacher's)
        self._chunks: int | None = None  # loss chunks of log-probabilities computed ahead (None: not known yet)
        self._adapt = False
        self.waits: list[tuple[float, float]] = []  # per batch: (the step's wait for the teacher, the teacher's busy time)

    def __getattr__(self, name):  # the wrapped source's other attributes (meta, ...)
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._pending.clear()
        if self._threads is not None:
            torch.set_num_threads(self._threads[0])
            self._threads = None
        return False

    @property
    def teacher_threads(self) -> int:
        return self._threads[1] if self._threads else 0

    @property
    def ahead_rows(self) -> int:
        return (self._chunks or 0) * self.loss.chunk_size

    def _start(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        from downsize.models.placement import device_of

        n = torch.get_num_threads()
        if n < 2:  # one thread (a busy machine): nothing to overlap with, the teacher runs in the step
            log.info("teacher ahead: off (one thread)")
            self._pool = _Inline()
            return
        k = max(1, min(n - 1, round(n * self.share)))
        torch.set_num_threads(n - k)
        self._threads = (n, k)
        self._adapt = 2 * k == n and device_of(self.teacher.model).type == "cpu"
        log.info("teacher ahead: the teacher's forward of the next batch on %d thread(s), the student's step on %d",
                 k, n - k)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="downsize-teacher",
                                        initializer=torch.set_num_threads, initargs=(k,))

    def _rows(self, ids: torch.Tensor, chunks: int, box: list):
        from downsize.distill.losses import TeacherLogp, dense_logp

        t0 = time.perf_counter()
        head = self.teacher.head(ids)
        h = head.hidden[:, :-1].reshape(-1, head.hidden.shape[-1])
        c = self.loss.chunk_size
        m = min(chunks * c, h.shape[0])
        with torch.no_grad():
            parts = [dense_logp(Head.compute(h[a:min(a + c, m)], head.weight, head.bias, head.softcap),
                                self.loss.temperature, self.vocab) for a in range(0, m, c)]
        logp = torch.cat(parts) if len(parts) > 1 else parts[0] if parts else h.new_zeros((0, 0), dtype=torch.float32)
        box.append(time.perf_counter() - t0)
        return TeacherLogp(logp, Head(h, head.weight, head.bias, head.softcap), self.loss.temperature, self.vocab)

    def _submit(self, batch: dict):
        ids = batch["input_ids"]
        if self._chunks is None:  # the starting point: ``ahead`` of the rows, within the memory bound
            rows = ids.shape[0] * (ids.shape[1] - 1)
            v = self.vocab or lm_head(self.teacher.model).weight.shape[0]
            most = max(0, min(-(-rows // self.loss.chunk_size), AHEAD_LOGP_BYTES // (4 * v * self.loss.chunk_size)))
            self._most = most
            self._chunks = min(most, round(self.ahead * rows / self.loss.chunk_size))
        box: list = []
        return _Timed(self._pool.submit(self._rows, ids, self._chunks, box), box, self)

    def _waited(self, wait_s: float, busy_s: float | None) -> None:
        """After each step's wait for the teacher: over the last four steps, one chunk more ahead when the
        step did not wait (the teacher's thread had time to spare), one fewer when it waited more than 2 %
        of the teacher's time (a shared machine's noise is larger than one step's signal)."""
        if busy_s is None:
            return
        self.waits.append((wait_s, busy_s))
        recent = self.waits[1:][-4:]  # the first batch is computed while the step waits
        if not self._adapt or len(recent) < 4 or len(self.waits) % 4:
            return
        wait, busy = (sum(x) / len(recent) for x in zip(*recent))
        if wait < 1e-3 and self._chunks < self._most:
            self._chunks += 1
        elif wait > 0.02 * busy and self._chunks > 0:
            self._chunks -= 1

    def batch(self, step, batch_size, rank=0, world=1):
        if self._pool is None:
            self._start()
        b = self.inner.batch(step, batch_size, rank, world)
        fut = self._pending.pop((step, batch_size, rank, world), None)
        fut = self._submit(b) if fut is None else fut
        self._pending.clear()  # a batch asked for out of order: what was computed ahead is dropped
        if not isinstance(self._pool, _Inline) and (self.steps is None or step + 1 < self.steps):
            self._pending[(step + 1, batch_size, rank, world)] = self._submit(self.inner.batch(step + 1, batch_size, rank, world))
        b["teacher_ahead"] = fut
        return b


class _Timed:
    """A future whose ``result()`` tells its TeacherAhead how long the step waited for it."""

    def __init__(self, fut, box: list, owner: TeacherAhead):
        self.fut, self.box, self.owner, self._value = fut, box, owner, None

    def result(self):
        if self._value is None:
            t0 = time.perf_counter()
            self._value = self.fut.result()
            self.owner._waited(time.perf_counter() - t0, self.box[0] if self.box else None)
        return self._value


class _Deferred:
    """A call made when its result is asked for: TeacherAhead's "future" on one thread."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def result(self):
        return self.fn(*self.args)


class _Inline:
    """An executor of ``_Deferred`` calls (TeacherAhead on one thread)."""

    submit = _Deferred

    def shutdown(self, **_):
        pass


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
