"""The teacher a batch ahead: its forward of batch i + 1 on threads of its own while the student trains on batch i.

``with_teacher_ahead(cfg, teacher, student, data, plan)`` is what ``distill.train.distill`` (and
benchmarks/distill_speed.py) wrap the batch source in; ``TeacherAhead`` is the wrapper. The loss reads
``batch["teacher_ahead"].result()``, a ``losses.TeacherLogp``.
"""

from __future__ import annotations

import logging
import time

import torch

from downsize.distill.losses import TeacherLogp, dense_logp
from downsize.distill.teacher import OnlineTeacher, lm_head

log = logging.getLogger(__name__)

AHEAD_LOGP_BYTES = 256 * 2 ** 20  # at most this much of one batch's teacher log-probabilities is computed ahead


class TeacherAhead:
    """A batch source (``data.batch(step, ...)``) whose batches carry the teacher's output, computed for batch
    ``i + 1`` on a thread of its own while the student trains on batch ``i``.

    On a CPU the teacher's forward then runs on ``teacher_threads`` of the process's threads and the student's
    step on the rest, each at the efficiency that one large team of threads loses (benchmarks/RESULTS.md,
    "Online KD vs TRL"). The batches are the wrapped source's, unchanged; ``batch["teacher_ahead"]`` is a
    future of a ``losses.TeacherLogp``: the teacher's log-probabilities for the first positions (whole
    loss chunks, at the loss's temperature and vocabulary), computed on the teacher's thread, and its final
    hidden states for all, from which the loss computes the others. How many chunks go ahead
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
        self._most = 0  # at most this many (the memory bound), known with the first batch
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

    def _rows(self, ids: torch.Tensor, chunks: int, box: list) -> TeacherLogp:
        t0 = time.perf_counter()
        rows = self.teacher.rows(ids)
        c, T = self.loss.chunk_size, self.loss.temperature
        m = min(chunks * c, len(rows))
        with torch.no_grad():  # chunk by chunk as the loss would: the same numbers
            parts = [dense_logp(rows, a, min(a + c, m), T, self.vocab) for a in range(0, m, c)]
        logp = torch.cat(parts) if len(parts) > 1 else parts[0] if parts else rows.hidden.new_zeros((0, 0), dtype=torch.float32)
        box.append(time.perf_counter() - t0)
        return TeacherLogp(logp, rows, T, self.vocab)

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
        ready = self._pending.pop((step, batch_size, rank, world), None)  # (the batch, its teacher) made ahead
        self._pending.clear()  # a batch asked for out of order: what was computed ahead is dropped
        if ready is None:
            b = self.inner.batch(step, batch_size, rank, world)
            ready = b, self._submit(b)
        if not isinstance(self._pool, _Inline) and (self.steps is None or step + 1 < self.steps):
            nxt = self.inner.batch(step + 1, batch_size, rank, world)
            self._pending[(step + 1, batch_size, rank, world)] = nxt, self._submit(nxt)
        b, fut = ready
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


def with_teacher_ahead(cfg, teacher: OnlineTeacher | None, student: torch.nn.Module, data, plan):
    """``data`` wrapped in a ``TeacherAhead`` when ``cfg.teacher_ahead`` (``cfg``: a ``distill.train.DistillConfig``)
    says so, else ``data`` as it is: a context manager either way. ``auto`` turns it on for an online teacher
    on the CPU, same-tokenizer KD on batches from the data (no on-policy sampling); ``on`` also for a teacher
    on a GPU. With one thread (a busy machine) the teacher runs in the step as before. The teacher's share of
    the threads is its share of the step's matrix products: 2 FLOPs per parameter and token for its forward
    against 6 for the student's forward and backward."""
    from contextlib import nullcontext

    from downsize.models.placement import device_of

    eligible = teacher is not None and cfg.on_policy is None and plan.mode != "uld" and cfg.head == "chunked"
    if cfg.teacher_ahead == "off" or not eligible:
        return nullcontext(data)
    if cfg.teacher_ahead == "auto" and device_of(teacher.model).type != "cpu":
        return nullcontext(data)
    n_t, n_s = (sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
                for model in (teacher.model, student))
    head = lm_head(teacher.model).weight.numel()
    # where the teacher's thread starts: the share of its LM head (and log-softmax) rows that balances the
    # two threads' matrix products; TeacherAhead moves it from there by what it measures
    ahead = min(1.0, max(0.0, (6 * n_s + 2 * head - 2 * (n_t - head)) / (4 * head)))
    return TeacherAhead(data, teacher, cfg.loss, plan.shared, steps=cfg.train.steps * cfg.train.grad_accum,
                        share=2 * n_t / (2 * n_t + 6 * n_s), ahead=ahead)
