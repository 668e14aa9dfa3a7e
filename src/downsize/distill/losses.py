"""Distillation losses: pure functions over student and teacher distributions, fp32, masked, chunked.

    >>> _ = torch.manual_seed(0)
    >>> s, t = torch.randn(6, 100), torch.randn(6, 100)            # (N, V) logits, N tokens
    >>> divergence("jsd", s.log_softmax(-1), t.log_softmax(-1), beta=0.5).shape   # (N,) per token
    torch.Size([6])
    >>> float(divergence("fkl", t.log_softmax(-1), t.log_softmax(-1)).abs().max())   # zero where they agree
    0.0
    >>> labels = torch.randint(0, 100, (6,))                       # next-token ids, IGNORE_INDEX where masked
    >>> spec = LossSpec("fkl", temperature=2.0, kd_ratio=0.5)
    >>> loss, parts = kd_loss(Logits(s), Logits(t), labels, spec)       # scalar, {"kd": .., "ce": .., "tokens": N}
    >>> loss.shape, sorted(parts)
    (torch.Size([]), ['ce', 'kd', 'tokens'])
    >>> h, lm_head = torch.randn(6, 16, requires_grad=True), torch.nn.Linear(16, 100, bias=False)
    >>> top = topk_from_logits(t, k=8)                              # a sparse teacher: 8 ids + the tail mass
    >>> loss, parts = kd_loss(Head(h, lm_head.weight), top, labels, spec)   # logits from hidden states, chunked
    >>> loss.backward(); h.grad.shape
    torch.Size([6, 16])

Divergences (P = teacher, Q = student; each returns one value per token):

- ``fkl``   forward KL(P || Q) — Hinton et al. 2015, mode covering.
- ``rkl``   reverse KL(Q || P) — MiniLLM (Gu et al. 2024), mode seeking.
- ``jsd``   generalised JSD_β = β KL(P || M) + (1-β) KL(Q || M), M = βP + (1-β)Q — GKD (Agarwal et al. 2024).
- ``skl``   skew KL(P || αP + (1-α)Q) — DistiLLM (Ko et al. 2024).
- ``srkl``  skew reverse KL(Q || αQ + (1-α)P) — DistiLLM.
- ``tvd``   total variation ½ Σ |P - Q|.

All inputs are log-probabilities over the same K buckets. For a dense teacher the buckets are the
vocabulary; for a top-k teacher (offline cache) they are the k cached ids plus one *tail* bucket
holding the remaining probability (the teacher's tail mass is stored, the student's is
1 - its mass on the k ids), so no probability is dropped: the loss is the divergence between the
two distributions coarse-grained to k+1 outcomes, a lower bound of the dense one that becomes exact
as k grows.

``kd_loss`` never builds the (N, V) fp32 log-probabilities of both models for all tokens at once:
it walks the valid tokens in chunks, computes logits from hidden states through the LM head chunk
by chunk when given ``Head`` inputs, and takes each chunk's gradient as soon as its loss is known
(then frees it), so memory is O(chunk × V) whatever N is and no logits are recomputed.

Why this module is long: the divergences, their closed-form gradients, the loss spec whose fields are the
stage's loss settings, and the chunked loss that uses all three are one unit; a new loss (function, gradient,
hyperparameter) is added here and nowhere else.
"""

from __future__ import annotations

import inspect
import math
import dataclasses
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from downsize.errors import DownsizeError
from downsize.registry import Registry

IGNORE_INDEX = -100
LOG_FLOOR = -1e4  # log-probabilities are clamped here so that 0 · log 0 is 0, never nan; exp(-1e4) == 0 in fp32
# 1 - Σ_k p is fp32 rounding noise (~1e-7) when the top k hold almost everything; both tails are floored
# at the same small mass so that noise cannot weigh as log(1e-7 / 0) in the loss.
TAIL_FLOOR = math.log(1e-6)

Divergence = Callable[..., torch.Tensor]
DIVERGENCES: Registry[Divergence] = Registry("distillation loss")


def register_divergence(name: str):
    return DIVERGENCES.register(name)


def _kl(logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    """KL(p || q) per row from log-probabilities (N, K) -> (N,)."""
    logp, logq = logp.clamp_min(LOG_FLOOR), logq.clamp_min(LOG_FLOOR)
    return (logp.exp() * (logp - logq)).sum(-1)


def _log_mix(logp: torch.Tensor, logq: torch.Tensor, w: float) -> torch.Tensor:
    """log(w p + (1 - w) q), stably."""
    return torch.logaddexp(logp + math.log(w), logq + math.log1p(-w))


@register_divergence("fkl")
def forward_kl(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return _kl(t, s)


@register_divergence("rkl")
def reverse_kl(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return _kl(s, t)


@register_divergence("jsd")
def generalized_jsd(s: torch.Tensor, t: torch.Tensor, beta: float = 0.5) -> torch.Tensor:
    if not 0.0 < beta < 1.0:
        raise DownsizeError(f"jsd needs 0 < beta < 1, got {beta}", hint="beta -> 0 and -> 1 make JSD vanish; use fkl or rkl for the limits")
    m = _log_mix(t, s, beta)
    return beta * _kl(t, m) + (1 - beta) * _kl(s, m)


@register_divergence("skl")
def skew_forward_kl(s: torch.Tensor, t: torch.Tensor, alpha: float = 0.1) -> torch.Tensor:
    if not 0.0 <= alpha < 1.0:
        raise DownsizeError(f"skew KL needs 0 <= alpha < 1, got {alpha}", hint="DistiLLM uses alpha=0.1; alpha=0 is plain forward KL")
    return _kl(t, _log_mix(t, s, alpha) if alpha > 0 else s)


@register_divergence("srkl")
def skew_reverse_kl(s: torch.Tensor, t: torch.Tensor, alpha: float = 0.1) -> torch.Tensor:
    if not 0.0 <= alpha < 1.0:
        raise DownsizeError(f"skew reverse KL needs 0 <= alpha < 1, got {alpha}", hint="DistiLLM uses alpha=0.1; alpha=0 is plain reverse KL")
    return _kl(s, _log_mix(s, t, alpha) if alpha > 0 else t)


@register_divergence("tvd")
def total_variation(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return 0.5 * (s.exp() - t.exp()).abs().sum(-1)


def divergence(name: str, student_logp: torch.Tensor, teacher_logp: torch.Tensor, **hyper: float) -> torch.Tensor:
    """Per-token divergence (N,) between log-probabilities (N, K) of student and teacher, in fp32.

    ``hyper`` may hold every loss's hyperparameters (``LossSpec.hyper()``); each divergence takes its own."""
    if name not in DIVERGENCES:
        raise DownsizeError(f"unknown distillation loss {name!r}", hint=f"choose one of {', '.join(DIVERGENCES)}")
    s, t = student_logp.float(), teacher_logp.float()
    fn = DIVERGENCES[name]
    kw = {k: v for k, v in hyper.items() if k in inspect.signature(fn).parameters}
    return fn(s, t, **kw)


# Closed-form gradients: fn(s, t) -> (value (N,), d value / d u) where s = log_softmax(u) is the student's
# tempered log-probabilities and t the teacher's, both (N, K). With one of these the loss needs no autograd
# graph over the (N, V) temporaries: a few passes over the chunk instead of a dozen (the fused-kernel idea).
DIVERGENCE_GRADS: Registry[Callable] = Registry("divergence gradient")


def register_divergence_grad(name: str):
    def deco(fn: Callable) -> Callable:
        if name not in DIVERGENCES:
            raise ValueError(f"no divergence {name!r} to give a gradient to")
        return DIVERGENCE_GRADS.add(name, fn)

    return deco


def _floored(x: torch.Tensor) -> torch.Tensor:
    """``x.clamp_min(LOG_FLOOR)``; on a CPU the copy is made only when some value is below the floor (a
    read-only pass over the chunk instead of a read and a write: memory traffic is what these passes cost)."""
    if x.device.type == "cpu" and x.numel() and bool(x.amin() >= LOG_FLOOR):
        return x
    return x.clamp_min(LOG_FLOOR)


@register_divergence_grad("fkl")
def forward_kl_grad(s: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # KL(P || Q) = Σ p (log p - log q);  d/du = q - p
    s, t = _floored(s), _floored(t)
    p = t.exp()
    value = torch.linalg.vecdot(p, t) - torch.linalg.vecdot(p, s)
    return value, s.exp().sub_(p)


@register_divergence_grad("rkl")
def reverse_kl_grad(s: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # KL(Q || P) = Σ q (log q - log p);  d/du = q ⊙ (log q - log p - KL)
    s, t = _floored(s), _floored(t)
    q = s.exp()
    diff = s - t
    value = torch.linalg.vecdot(q, diff)
    return value, diff.sub_(value[:, None]).mul_(q)


@dataclass(frozen=True)
class LossSpec:
    """How to compare student and teacher: ``kd_ratio`` · KD + (1 - ``kd_ratio``) · CE(labels)."""

    # Each field's ``help`` is its documentation everywhere: the distill stage's config (recipe field, CLI option)
    # is generated from the fields here, so a new loss hyperparameter is added in this file only.
    name: str = "fkl"
    temperature: float = field(default=1.0, metadata={"help": "softmax temperature of both models in the KD term"})
    kd_ratio: float = field(default=1.0, metadata={"help": "weight of KD vs cross entropy on the labels (1 = KD only, 0 = CE only)"})
    beta: float = field(default=0.5, metadata={"help": "jsd: β of the generalised JSD (0 < β < 1)"})
    alpha: float = field(default=0.1, metadata={"help": "skl/srkl: skew α (0 <= α < 1)"})
    chunk_size: int = field(default=256, metadata={"help": "tokens per loss chunk: bounds the (chunk, vocab) fp32 temporaries"})
    ignore_index: int = IGNORE_INDEX

    @classmethod
    def hyperparameters(cls) -> dict[str, "dataclasses.Field"]:
        """The tunable fields (all but the loss name and the ignore index), for configs built from this one."""
        return {f.name: f for f in dataclasses.fields(cls) if "help" in f.metadata}

    def __post_init__(self):
        if self.name not in DIVERGENCES:
            raise DownsizeError(f"unknown distillation loss {self.name!r}", hint=f"choose one of {', '.join(DIVERGENCES)}")
        if self.temperature <= 0:
            raise DownsizeError(f"temperature must be > 0, got {self.temperature}", hint="1.0 is the model's own distribution; 2.0 softens it")
        if not 0.0 <= self.kd_ratio <= 1.0:
            raise DownsizeError(f"kd_ratio must be in [0, 1], got {self.kd_ratio}", hint="1.0 = distillation only, 0.0 = cross entropy only")
        if self.chunk_size < 1:
            raise DownsizeError(f"chunk_size must be >= 1, got {self.chunk_size}")
        divergence(self.name, torch.zeros(1, 2), torch.zeros(1, 2), **self.hyper())  # the divergence checks its own

    def hyper(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in self.hyperparameters()}


# ---- where the logits come from -----------------------------------------------------------------

@dataclass(frozen=True)
class Logits:
    """Dense logits (N, V), already materialised."""

    logits: torch.Tensor

    def __len__(self) -> int:
        return self.logits.shape[0]

    def select(self, idx: torch.Tensor) -> "Logits":
        return Logits(self.logits[idx])

    def tensors(self, a: int, b: int) -> tuple:
        return (self.logits[a:b],)

    @staticmethod
    def compute(x: torch.Tensor) -> torch.Tensor:
        return x


@dataclass(frozen=True)
class Head:
    """Logits computed chunk by chunk from final hidden states (N, H) and the LM head weight (V, H)."""

    hidden: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor | None = None
    softcap: float | None = None  # Gemma-2 style final logit soft-capping

    def __len__(self) -> int:
        return self.hidden.shape[0]

    def select(self, idx: torch.Tensor) -> "Head":
        return Head(self.hidden[idx], self.weight, self.bias, self.softcap)

    def tensors(self, a: int, b: int) -> tuple:
        return (self.hidden[a:b], self.weight, self.bias, self.softcap)

    @staticmethod
    def compute(h, w, bias, softcap) -> torch.Tensor:
        logits = F.linear(h, w, bias)  # (n, V)
        if softcap:
            logits = torch.tanh(logits.float() / softcap) * softcap
        return logits


@dataclass(frozen=True)
class TopK:
    """A sparse teacher: log-probabilities (N, k) of ids (N, k) and log of the tail mass (N,)."""

    logp: torch.Tensor
    ids: torch.Tensor
    tail_logp: torch.Tensor

    def __len__(self) -> int:
        return self.logp.shape[0]

    def select(self, idx: torch.Tensor) -> "TopK":
        return TopK(self.logp[idx], self.ids[idx], self.tail_logp[idx])

    def tensors(self, a: int, b: int) -> tuple:
        return (self.logp[a:b], self.ids[a:b], self.tail_logp[a:b])


Source = Logits | Head


@dataclass(frozen=True)
class TeacherLogp:
    """A dense teacher whose first rows arrive as log-probabilities computed elsewhere (``dense_logp`` at
    ``temperature`` over the first ``vocab`` ids: the loss's own settings) and whose other rows the loss
    computes from ``rest`` (all N rows: a Head or Logits). TeacherAhead hands these over: it computes
    the first rows on the teacher's thread while the student's step runs, the loss the others."""

    logp: torch.Tensor  # (m, V) log-probabilities of rows 0..m-1
    rest: Logits | Head
    temperature: float = 1.0
    vocab: int | None = None

    def __len__(self) -> int:
        return len(self.rest)

    def select(self, idx: torch.Tensor) -> "TeacherLogp":  # idx ascending (as kd_loss's valid rows are)
        m = self.logp.shape[0]
        return TeacherLogp(self.logp[idx[idx < m]], self.rest.select(idx), self.temperature, self.vocab)

    def logp_rows(self, spec: "LossSpec", vocab: int | None, a: int, b: int) -> torch.Tensor:
        if spec.temperature != self.temperature or vocab != self.vocab:
            raise ValueError(f"teacher log-probabilities at temperature {self.temperature} over {self.vocab} ids, "
                             f"the loss asks for {spec.temperature} over {vocab}")
        m = self.logp.shape[0]
        if b <= m:
            return self.logp[a:b]
        later = dense_logp(self.rest, max(a, m), b, spec.temperature, vocab)
        return later if a >= m else torch.cat([self.logp[a:m], later])


def dense_logp(src: Logits | Head, a: int, b: int, temperature: float = 1.0, vocab: int | None = None) -> torch.Tensor:
    """A dense teacher's log-probabilities of rows a..b-1 (n, V) at ``temperature`` over its first ``vocab`` ids,
    in fp32: what the loss computes for a chunk, and TeacherAhead for the chunks it computes ahead."""
    t = (Head.compute(*src.tensors(a, b)) if isinstance(src, Head) else src.logits[a:b]).float()
    t = t[:, :vocab] if vocab else t
    return F.log_softmax(t / temperature if temperature != 1 else t, dim=-1)


def topk_with_tail(student_logp: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Student log-probs (n, V) -> (n, k+1): its mass on the teacher's k ids, then log(1 - that mass)."""
    on_k = student_logp.gather(-1, ids.long())  # (n, k)
    return torch.cat([on_k, tail_logp(on_k).unsqueeze(-1)], dim=-1)


def tail_logp(logp_k: torch.Tensor) -> torch.Tensor:
    """log(1 - Σ_k p) of k log-probabilities (..., k) -> (...), floored at TAIL_FLOOR."""
    inside = torch.logsumexp(logp_k, dim=-1).clamp(max=0.0)  # log Σ_k p
    return torch.log((-torch.expm1(inside)).clamp_min(0)).clamp_min(TAIL_FLOOR)


def topk_from_logits(logits: torch.Tensor, k: int, temperature: float = 1.0) -> TopK:
    """The top-k form of a dense teacher (what the offline cache stores)."""
    logp = F.log_softmax(logits.float() / temperature, dim=-1)
    vals, ids = logp.topk(k, dim=-1)
    return TopK(vals, ids, tail_logp(vals))


def _teacher_logp(spec: LossSpec, vocab: int | None, teacher, a: int, b: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Teacher log-probabilities of rows a..b-1, no gradient: (n, V) dense, or (n, k+1) and the ids for TopK."""
    with torch.no_grad():
        if isinstance(teacher, TopK):
            logp_k, ids, tail = teacher.tensors(a, b)
            return torch.cat([logp_k.float(), tail.float().unsqueeze(-1)], dim=-1), ids  # (n, k+1)
        if isinstance(teacher, TeacherLogp):
            return teacher.logp_rows(spec, vocab, a, b), None
        return dense_logp(teacher, a, b, spec.temperature, vocab), None


def _student_chunk(spec: LossSpec, vocab: int | None, s_logits: torch.Tensor, t_logp: torch.Tensor | None,
                   ids: torch.Tensor | None, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sums over one chunk: (kd_sum, ce_sum), differentiable in the student's logits (n, V_s)."""
    s_logits = s_logits.float()
    ce_sum = F.cross_entropy(s_logits, labels, reduction="sum")  # also a metric when kd_ratio == 1
    if t_logp is None:
        return s_logits.new_zeros(()), ce_sum
    T = spec.temperature
    s_kd = s_logits[:, :vocab] if vocab else s_logits
    s_logp = F.log_softmax(s_kd / T, dim=-1)
    if ids is not None:
        s_logp = topk_with_tail(s_logp, ids)
    kd = divergence(spec.name, s_logp, t_logp, **spec.hyper())
    return kd.sum() * (T * T), ce_sum


def _analytic_chunk(spec: LossSpec, vocab: int | None, z: torch.Tensor, t_logp: torch.Tensor | None,
                    labels: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(kd_sum, ce_sum, d loss / d z) of one chunk from the student's logits ``z`` (n, V_s) by closed form;
    the loss is ``scale`` · (kd_ratio · kd_sum + (1 - kd_ratio) · ce_sum)."""
    T, ratio = spec.temperature, spec.kd_ratio
    s = z.float()
    ls1 = F.log_softmax(s, dim=-1)  # (n, V_s)
    ce_sum = -ls1.gather(1, labels[:, None]).sum()
    if ratio == 1 and t_logp is not None and not vocab:
        # KD only (the default): the CE is a metric, its gradient is not needed; fewer passes over (n, V)
        ls = ls1 if T == 1 else F.log_softmax(s / T, dim=-1)
        value, g_u = DIVERGENCE_GRADS[spec.name](ls, t_logp)
        return value.sum() * (T * T), ce_sum, g_u.mul_(T * scale)  # g_u is the closed form's own tensor
    g = ls1.exp().mul_(1 - ratio)  # d CE / d z = softmax - one-hot
    g[torch.arange(len(labels)), labels] -= 1 - ratio
    kd_sum = s.new_zeros(())
    if t_logp is not None:
        s_kd = s[:, :vocab] if vocab else s
        ls = ls1 if T == 1 and s_kd is s else F.log_softmax(s_kd / T, dim=-1)
        value, g_u = DIVERGENCE_GRADS[spec.name](ls, t_logp)
        kd_sum = value.sum() * (T * T)
        (g[:, :vocab] if vocab else g).add_(g_u, alpha=ratio * T)  # T² · (d/du) · (du/dz = 1/T)
    return kd_sum, ce_sum, g.mul_(scale)


class _WithGrads(torch.autograd.Function):
    """A scalar whose gradients with respect to ``inputs`` were already computed in the forward pass;
    the backward pass only scales them by the incoming gradient."""

    @staticmethod
    def forward(ctx, value: torch.Tensor, n_inputs: int, *tensors: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(*tensors[n_inputs:])
        return value.detach().clone()

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        grads = ctx.saved_tensors
        return (None, None, *(g.to(x.dtype) * x for x in grads), *(None for _ in grads))


def kd_loss(student: Source, teacher: Source | TopK | TeacherLogp, labels: torch.Tensor, spec: LossSpec,
            vocab: int | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """Mean over valid tokens of ``kd_ratio``·T²·D(teacher, student) + (1-``kd_ratio``)·CE.

    Shapes: ``student`` and ``teacher`` hold N rows (tokens), ``labels`` is (N,) with
    ``spec.ignore_index`` for tokens that do not count (already shifted: row i predicts labels[i]).
    ``vocab``: compare only the first ``vocab`` ids (same tokenizer, different embedding sizes);
    the cross entropy always uses the student's full vocabulary. Teacher tensors get no gradient.

    When gradients are on, each chunk's gradient with respect to the student's rows (hidden states or
    logits) and the LM head is taken right after its forward and the chunk's graph is freed (as fused
    linear-cross-entropy kernels do): memory stays O(chunk × V) and nothing is recomputed, so each LM
    head, the student's and the teacher's, is applied once per token in the forward pass.
    """
    if len(student) != len(teacher) or len(student) != labels.shape[0]:
        raise ValueError(f"row counts differ: student {len(student)}, teacher {len(teacher)}, labels {labels.shape[0]}")
    valid = (labels != spec.ignore_index).nonzero(as_tuple=True)[0]
    n = int(valid.numel())
    if n == 0:
        zero = (student.hidden if isinstance(student, Head) else student.logits).sum() * 0.0
        return zero, {"kd": 0.0, "ce": 0.0, "tokens": 0}
    if n < labels.shape[0]:  # gather only the tokens that count (no copy when all do)
        student, teacher, labels = student.select(valid), teacher.select(valid), labels[valid]
    compute = Head.compute if isinstance(student, Head) else Logits.compute
    rows, *whole = student.tensors(0, n)  # rows are chunked, the LM head (weight, bias, softcap) is whole
    grad = torch.is_grad_enabled()
    # Inputs that get a gradient: detached leaves for the chunk graphs, gradients gathered here.
    leaves = [x.detach().requires_grad_() if grad and torch.is_tensor(x) and x.requires_grad else x for x in whole]
    g_rows = torch.empty_like(rows) if grad and rows.requires_grad else None
    g_whole = [torch.zeros_like(x) if torch.is_tensor(x) and x.requires_grad else None for x in leaves]
    # A dense teacher and a divergence with a closed-form gradient: the loss itself needs no autograd graph.
    analytic = grad and not isinstance(teacher, TopK) and (spec.kd_ratio == 0 or spec.name in DIVERGENCE_GRADS)
    kd_sum = ce_sum = rows.new_zeros((), dtype=torch.float32)
    for a in range(0, n, spec.chunk_size):
        b = min(n, a + spec.chunk_size)
        t_logp, ids = _teacher_logp(spec, vocab, teacher, a, b) if spec.kd_ratio > 0 else (None, None)
        if t_logp is not None and t_logp.device != rows.device:  # a teacher placed on another device
            t_logp, ids = t_logp.to(rows.device), None if ids is None else ids.to(rows.device)
        r = rows[a:b].detach().requires_grad_(g_rows is not None)
        wrt = ([r] if g_rows is not None else []) + [x for x, g in zip(leaves, g_whole) if g is not None]
        with torch.enable_grad() if grad else torch.no_grad():
            z = compute(r, *leaves)  # (n, V_s) student logits of the chunk
            if analytic:
                with torch.autocast(z.device.type, enabled=False):  # fp32 reductions (vecdot is autocast to bf16)
                    kd_c, ce_c, g_z = _analytic_chunk(spec, vocab, z.detach(), t_logp, labels[a:b], 1.0 / n)
                total, outs = z, g_z.to(z.dtype)
            else:
                kd_c, ce_c = _student_chunk(spec, vocab, z, t_logp, ids, labels[a:b])
                total, outs = (spec.kd_ratio * kd_c + (1 - spec.kd_ratio) * ce_c) / n, None
        if grad and wrt:
            with torch.autocast(r.device.type, enabled=False):
                gs = list(torch.autograd.grad(total, wrt, grad_outputs=outs))
            if g_rows is not None:
                g_rows[a:b] = gs.pop(0)
            for g, d in zip((g for g in g_whole if g is not None), gs):
                g += d
        kd_sum, ce_sum = kd_sum + kd_c.detach(), ce_sum + ce_c.detach()
    kd_mean, ce_mean = kd_sum / n, ce_sum / n
    loss = spec.kd_ratio * kd_mean + (1 - spec.kd_ratio) * ce_mean
    inputs = ([rows] if g_rows is not None else []) + [x for x, g in zip(whole, g_whole) if g is not None]
    if inputs:
        grads = ([g_rows] if g_rows is not None else []) + [g for g in g_whole if g is not None]
        loss = _WithGrads.apply(loss, len(inputs), *inputs, *grads)
    return loss, {"kd": float(kd_mean), "ce": float(ce_mean), "tokens": n}


# ---- the sampled token: reverse-KL estimators (on-policy) ----------------------------------------------

def kl_estimator(student_logp: torch.Tensor, teacher_logp: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-token estimates of KL(Q || P) from one token x ~ Q: log-probs (N,), (N,) -> (N,).

    Schulman, "Approximating KL divergence" (2020), as used by verl: with log r = log p(x) - log q(x),
    k1 = -log r (unbiased, high variance), k2 = ½ (log r)² (biased, low variance), k3 = (r - 1) - log r
    (unbiased, low variance, >= 0).
    """
    log_r = teacher_logp.float() - student_logp.float()
    if kind == "k1":
        return -log_r
    if kind == "k2":
        return 0.5 * log_r.square()
    if kind == "k3":
        return torch.expm1(log_r.clamp(max=20.0)) - log_r  # r - 1 - log r; clamped: exp overflows in fp32 past ~88
    raise DownsizeError(f"unknown KL estimator {kind!r}", hint="choose k1, k2 or k3")


def sampled_kl_loss(student_logp: torch.Tensor, teacher_logp: torch.Tensor, mask: torch.Tensor, kind: str = "k3",
                    as_reward: bool = False) -> tuple[torch.Tensor, dict[str, float]]:
    """Mean over ``mask`` (N,) of a reverse-KL estimator on sampled tokens; ``student_logp`` (N,) carries the gradient.

    As a loss (``as_reward=False``) the estimator itself is minimised; the gradient of k3 is (1 - r) ∇log q
    and that of k2 is -log r ∇log q, both equal in expectation to a KL gradient (k3: forward KL's, k2:
    reverse KL's); k1's gradient ∇log q has expectation 0, so k1 is only useful as a reward. As a reward
    (REINFORCE, the on-policy distillation of Thinking Machines / verl), the advantage log r = log p - log q
    (detached) weights ∇log q: the expectation is ∇ KL(Q || P). Teacher log-probs get no gradient.
    """
    n = int(mask.sum())
    if n == 0:
        return student_logp.sum() * 0.0, {"estimate": 0.0, "k1": 0.0}
    s, t = student_logp[mask].float(), teacher_logp[mask].float().detach()
    if as_reward:
        advantage = (t - s).detach()  # log r; reward for the sampled token
        loss = -(advantage * s).mean()
        est = kl_estimator(s.detach(), t, kind).mean()
    else:
        loss = kl_estimator(s, t, kind).mean()
        est = loss.detach()
    return loss, {"estimate": float(est), "k1": float((s.detach() - t).mean())}


def _token_logp_chunk(h, w, bias, softcap, labels):
    z = Head.compute(h, w, bias, softcap).float()
    return F.log_softmax(z, dim=-1).gather(1, labels[:, None]).squeeze(1)


def token_logprobs(student: Source, labels: torch.Tensor, chunk_size: int = 256) -> torch.Tensor:
    """log q(labels[i] | row i) for every row (N,), 0 where ``labels`` is ignored; differentiable, chunked with
    recomputation so memory stays O(chunk × V)."""
    out = []
    n = len(student)
    safe = labels.clamp_min(0)
    for a in range(0, n, chunk_size):
        b = min(n, a + chunk_size)
        if isinstance(student, Head):
            args = (*student.tensors(a, b), safe[a:b])
            lp = checkpoint(_token_logp_chunk, *args, use_reentrant=False) if torch.is_grad_enabled() else _token_logp_chunk(*args)
        else:
            lp = F.log_softmax(student.logits[a:b].float(), -1).gather(1, safe[a:b, None]).squeeze(1)
        out.append(lp)
    lp = torch.cat(out) if out else labels.new_zeros(0, dtype=torch.float32)
    return torch.where(labels != IGNORE_INDEX, lp, torch.zeros_like(lp))


# ---- cross-tokenizer: Universal Logit Distillation ------------------------------------------------

def uld_distance(student_logp: torch.Tensor, teacher_logp: torch.Tensor) -> torch.Tensor:
    """ULD (Boizard et al. 2024): L1 between the sorted probability vectors, (n, V_s), (n, V_t) -> (n,).

    Sorting makes the loss independent of which id means what, so the vocabularies may differ;
    the shorter vector is padded with zeros. It is the Wasserstein-1 distance under a uniform cost.
    """
    ps = student_logp.float().exp().sort(dim=-1, descending=True).values
    pt = teacher_logp.float().exp().sort(dim=-1, descending=True).values
    v = max(ps.shape[-1], pt.shape[-1])
    ps = F.pad(ps, (0, v - ps.shape[-1]))
    pt = F.pad(pt, (0, v - pt.shape[-1]))
    return (ps - pt).abs().sum(-1)


def _uld_chunk(T: float, s_h, s_w, s_b, s_cap, t_h, t_w, t_b, t_cap):
    s = Head.compute(s_h, s_w, s_b, s_cap).float()
    t = Head.compute(t_h, t_w, t_b, t_cap).float()
    return uld_distance(F.log_softmax(s / T, -1), F.log_softmax(t / T, -1).detach()).sum()


def uld_loss(student: Head, teacher: Head, temperature: float = 1.0, chunk_size: int = 1024) -> torch.Tensor:
    """Mean ULD distance over aligned rows (student row i and teacher row i predict the same text), chunked."""
    n = len(student)
    if n == 0:
        return student.hidden.sum() * 0.0
    total = None
    for a in range(0, n, chunk_size):
        b = min(n, a + chunk_size)
        args = (*student.tensors(a, b), *teacher.tensors(a, b))
        c = checkpoint(_uld_chunk, temperature, *args, use_reentrant=False) if torch.is_grad_enabled() else _uld_chunk(temperature, *args)
        total = c if total is None else total + c
    return total / n
