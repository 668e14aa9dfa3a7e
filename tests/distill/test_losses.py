"""Loss properties: each divergence equals a naive float64 reference, is zero for identical inputs,
chunked equals unchunked (values and gradients), ignore index and top-k tail handling."""

import math

import pytest
import torch

from downsize.distill import losses
from downsize.distill.losses import (DIVERGENCE_GRADS, DIVERGENCES, IGNORE_INDEX, Head, Logits, LossSpec, TopK, divergence,
                                     kd_loss, topk_from_logits)
from downsize.errors import DownsizeError


def naive(name, s_logits, t_logits, T=1.0, beta=0.5, alpha=0.1):
    """Textbook formulas, float64, one token at a time over python floats."""
    out = []
    for srow, trow in zip(s_logits.double().tolist(), t_logits.double().tolist()):
        def softmax(row):
            m = max(row)
            e = [math.exp((x - m) / T) for x in row]
            z = sum(e)
            return [x / z for x in e]
        q, p = softmax(srow), softmax(trow)

        def kl(a, b):
            return sum(x * math.log(x / y) for x, y in zip(a, b) if x > 0)
        if name == "fkl":
            v = kl(p, q)
        elif name == "rkl":
            v = kl(q, p)
        elif name == "jsd":
            m = [beta * x + (1 - beta) * y for x, y in zip(p, q)]
            v = beta * kl(p, m) + (1 - beta) * kl(q, m)
        elif name == "skl":
            v = kl(p, [alpha * x + (1 - alpha) * y for x, y in zip(p, q)])
        elif name == "srkl":
            v = kl(q, [alpha * y + (1 - alpha) * x for x, y in zip(p, q)])
        elif name == "tvd":
            v = 0.5 * sum(abs(x - y) for x, y in zip(p, q))
        out.append(v)
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("name", sorted(DIVERGENCES))
def test_divergence_matches_float64_reference(name):
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(7, 50, generator=g) * 3, torch.randn(7, 50, generator=g) * 3
    got = divergence(name, s.log_softmax(-1), t.log_softmax(-1), beta=0.3, alpha=0.2)
    ref = naive(name, s, t, beta=0.3, alpha=0.2)
    assert got.dtype == torch.float32 and got.shape == (7,)
    torch.testing.assert_close(got.double(), ref, rtol=1e-4, atol=1e-5)
    assert (ref > 1e-3).all()  # the inputs really differ


@pytest.mark.parametrize("name", sorted(DIVERGENCES))
def test_zero_for_identical_and_bf16_inputs_computed_in_fp32(name):
    x = (torch.randn(5, 40) * 4).bfloat16()
    d = divergence(name, x.float().log_softmax(-1).bfloat16(), x.float().log_softmax(-1).bfloat16())
    assert d.dtype == torch.float32
    assert d.abs().max() < 1e-6


def _inputs(seed=0, N=37, H=16, V=64):
    g = torch.Generator().manual_seed(seed)
    h_s = torch.randn(N, H, generator=g, requires_grad=True)
    w_s = torch.randn(V, H, generator=g).mul_(0.5).requires_grad_()
    t = torch.randn(N, V, generator=g) * 2
    labels = torch.randint(0, V, (N,), generator=g)
    labels[::5] = IGNORE_INDEX
    return h_s, w_s, t, labels


def _ref_loss(name, h_s, w_s, t, labels, T, ratio):
    keep = labels != IGNORE_INDEX
    s = (h_s @ w_s.T)[keep]
    kd = naive(name, s.detach(), t[keep], T=T).mean() * T * T
    ce = torch.nn.functional.cross_entropy(s.double(), labels[keep]).item()
    return ratio * kd.item() + (1 - ratio) * ce


@pytest.mark.parametrize("name", sorted(DIVERGENCES))
def test_chunked_equals_unchunked_and_reference_with_gradients(name):
    h_s, w_s, t, labels = _inputs()
    results = []
    for chunk in (1000, 7):
        h, w = h_s.detach().clone().requires_grad_(), w_s.detach().clone().requires_grad_()
        spec = LossSpec(name, temperature=2.0, kd_ratio=0.7, chunk_size=chunk, beta=0.5, alpha=0.1)
        loss, parts = kd_loss(Head(h, w), Logits(t), labels, spec)
        loss.backward()
        results.append((loss.item(), h.grad, w.grad, parts))
    (l1, gh1, gw1, p1), (l2, gh2, gw2, _) = results
    assert l1 == pytest.approx(l2, rel=1e-5)
    torch.testing.assert_close(gh1, gh2, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(gw1, gw2, rtol=1e-4, atol=1e-6)
    assert l1 == pytest.approx(_ref_loss(name, h_s.detach(), w_s.detach(), t, labels, 2.0, 0.7), rel=1e-4)
    assert p1["tokens"] == int((labels != IGNORE_INDEX).sum())


def test_gradient_matches_autograd_of_plain_formula():
    h_s, w_s, t, labels = _inputs(seed=1)
    spec = LossSpec("fkl", temperature=1.5, kd_ratio=0.5, chunk_size=5)
    loss, _ = kd_loss(Head(h_s, w_s), Logits(t), labels, spec)
    (gh,) = torch.autograd.grad(loss, [h_s])
    h = h_s.detach().double().requires_grad_()
    keep = labels != IGNORE_INDEX
    s = (h @ w_s.detach().double().T)[keep]
    p = (t[keep].double() / 1.5).softmax(-1)
    kl = (p * (p.log() - (s / 1.5).log_softmax(-1))).sum(-1).mean() * 1.5 ** 2
    ce = torch.nn.functional.cross_entropy(s, labels[keep])
    (gref,) = torch.autograd.grad(0.5 * kl + 0.5 * ce, [h])
    torch.testing.assert_close(gh.double(), gref, rtol=1e-4, atol=1e-7)


def test_teacher_gets_no_gradient_and_ignore_index_masks():
    h_s, w_s, t, labels = _inputs()
    t = t.clone().requires_grad_()
    loss, _ = kd_loss(Head(h_s, w_s), Logits(t), labels, LossSpec("rkl", chunk_size=8))
    loss.backward()
    assert t.grad is None or t.grad.abs().sum() == 0
    masked_rows = labels == IGNORE_INDEX
    assert h_s.grad[masked_rows].abs().sum() == 0 and h_s.grad[~masked_rows].abs().sum() > 0
    all_ignored = torch.full_like(labels, IGNORE_INDEX)
    z, parts = kd_loss(Head(h_s, w_s), Logits(t), all_ignored, LossSpec("fkl"))
    assert z.item() == 0 and parts["tokens"] == 0


@pytest.mark.parametrize("name", ["fkl", "rkl", "jsd", "tvd"])
def test_topk_with_tail_is_exact_for_full_k_and_a_lower_bound_below(name):
    h_s, w_s, t, labels = _inputs(V=40)
    labels[:] = 0
    spec = LossSpec(name, kd_ratio=1.0, chunk_size=9)
    dense, _ = kd_loss(Head(h_s, w_s), Logits(t), labels, spec)
    full = topk_from_logits(t, k=40)
    sparse_full, _ = kd_loss(Head(h_s, w_s), full, labels, spec)
    assert sparse_full.item() == pytest.approx(dense.item(), rel=1e-4)
    k8 = topk_from_logits(t, k=8)
    assert (k8.tail_logp.exp() > 0.01).all()  # the tail is real mass, and it is kept
    sparse8, _ = kd_loss(Head(h_s, w_s), k8, labels, spec)
    assert 0 < sparse8.item() <= dense.item() + 1e-6
    # dropping the tail (renormalising top-k) gives a different, wrong answer
    no_tail = TopK(k8.logp - torch.logsumexp(k8.logp, -1, keepdim=True), k8.ids, torch.full_like(k8.tail_logp, -1e4))
    wrong, _ = kd_loss(Head(h_s, w_s), no_tail, labels, spec)
    assert abs(wrong.item() - sparse8.item()) > 1e-3


def test_vocab_alignment_compares_shared_ids_only():
    h_s, w_s, t, labels = _inputs(V=64)
    labels[:] = 3
    t_big = torch.cat([t, torch.full((t.shape[0], 8), -30.0)], dim=1)  # teacher has 8 padding rows
    a, _ = kd_loss(Head(h_s, w_s), Logits(t_big), labels, LossSpec("fkl"), vocab=64)
    b, _ = kd_loss(Head(h_s, w_s), Logits(t), labels, LossSpec("fkl"))
    assert a.item() == pytest.approx(b.item(), rel=1e-5)


def test_bad_specs_say_how_to_fix():
    with pytest.raises(DownsizeError, match="choose one of"):
        LossSpec("kl")
    with pytest.raises(DownsizeError, match="beta"):
        LossSpec("jsd", beta=1.0)
    with pytest.raises(DownsizeError, match="kd_ratio"):
        LossSpec("fkl", kd_ratio=1.5)


@pytest.mark.parametrize("name", sorted(DIVERGENCE_GRADS))
@pytest.mark.parametrize("T,ratio,vocab,softcap", [(1.0, 1.0, None, None), (2.0, 1.0, None, None), (2.0, 0.4, 48, None), (1.0, 0.0, None, 30.0),
                                                   (0.7, 0.8, None, 5.0)])
def test_closed_form_gradient_equals_autograd(monkeypatch, name, T, ratio, vocab, softcap):
    """The closed-form path (no autograd graph over the (N, V) temporaries) gives the loss and gradients of
    the generic autograd path, with temperature, CE mixing, vocabulary alignment and logit soft-capping."""
    h_s, w_s, t, labels = _inputs(seed=3)
    spec = LossSpec(name, temperature=T, kd_ratio=ratio, chunk_size=8)
    for autocast in (False, True):  # under bf16 autocast the logits are bf16; the loss must still be fp32
        results = []
        for grads in (dict(DIVERGENCE_GRADS), {}):
            monkeypatch.setattr(losses, "DIVERGENCE_GRADS", grads)
            h, w = h_s.detach().clone().requires_grad_(), w_s.detach().clone().requires_grad_()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                loss, parts = kd_loss(Head(h, w, None, softcap), Logits(t[:, :vocab] if vocab else t), labels, spec,
                                      vocab=vocab)
            loss.backward()
            results.append((loss.item(), parts, h.grad, w.grad))
        (l1, p1, gh1, gw1), (l2, p2, gh2, gw2) = results
        assert l1 == pytest.approx(l2, rel=1e-5) and p1["ce"] == pytest.approx(p2["ce"], rel=1e-5)
        assert p1["kd"] == pytest.approx(p2["kd"], rel=1e-5, abs=1e-7)
        tol = dict(rtol=2e-2, atol=1e-4) if autocast else dict(rtol=1e-4, atol=1e-6)  # bf16 backward matmuls
        torch.testing.assert_close(gh1, gh2, **tol)
        torch.testing.assert_close(gw1, gw2, **tol)



@pytest.mark.parametrize("name", sorted(DIVERGENCE_GRADS))
def test_closed_form_with_impossible_teacher_tokens_stays_finite(monkeypatch, name):
    """A teacher that gives some ids probability 0 (-inf logits: a masked or padded vocabulary): the closed
    form floors the log-probabilities as the autograd path does (0 · log 0 = 0), so loss and gradients are
    finite and equal; the forward KL also equals the float64 textbook value."""
    h_s, w_s, t, labels = _inputs(seed=5)
    t = t.clone()
    t[:, ::7] = float("-inf")
    spec = LossSpec(name, chunk_size=8)
    results = []
    for grads in (dict(DIVERGENCE_GRADS), {}):
        monkeypatch.setattr(losses, "DIVERGENCE_GRADS", grads)
        h, w = h_s.detach().clone().requires_grad_(), w_s.detach().clone().requires_grad_()
        loss, parts = kd_loss(Head(h, w), Logits(t), labels, spec)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(h.grad).all() and torch.isfinite(w.grad).all()
        results.append((loss.item(), h.grad, w.grad))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-5)
    tol = dict(rtol=1e-4, atol=1e-6) if name == "fkl" else dict(rtol=1e-4, atol=1e-4)  # rkl: q · (s + 1e4) terms
    torch.testing.assert_close(results[0][1], results[1][1], **tol)
    torch.testing.assert_close(results[0][2], results[1][2], **tol)
    if name == "fkl":
        assert results[0][0] == pytest.approx(_ref_loss("fkl", h_s, w_s, t, labels, 1.0, 1.0), rel=1e-4)


# ---- reverse-KL estimators on the sampled token (server on-policy distillation) ----------------------

def test_kl_estimators_match_their_formulas_and_are_unbiased():
    """k1/k2/k3 against naive float64 formulas; k1 and k3 average to KL(Q || P) over many samples from Q."""
    from downsize.distill.losses import kl_estimator

    g = torch.Generator().manual_seed(0)
    q = torch.randn(50, generator=g).double().log_softmax(-1)
    p = torch.randn(50, generator=g).double().log_softmax(-1)
    x = torch.multinomial(q.exp(), 200_000, replacement=True, generator=g)
    lq, lp = q[x], p[x]
    r = (lp - lq).exp()
    assert torch.allclose(kl_estimator(lq, lp, "k1").double(), lq - lp, atol=1e-5)
    assert torch.allclose(kl_estimator(lq, lp, "k2").double(), 0.5 * (lp - lq) ** 2, atol=1e-5)
    assert torch.allclose(kl_estimator(lq, lp, "k3").double(), (r - 1) - (lp - lq), atol=1e-4)
    true = float((q.exp() * (q - p)).sum())
    for kind in ("k1", "k3"):
        assert abs(float(kl_estimator(lq, lp, kind).double().mean()) - true) < 0.03 * true + 0.01, kind
    assert float(kl_estimator(lq, lp, "k3").min()) >= -1e-6  # k3 is never negative
    with pytest.raises(DownsizeError, match="k3"):
        kl_estimator(lq, lp, "k4")


def test_sampled_kl_reward_gradient_is_reverse_kl_gradient_in_expectation():
    """REINFORCE with reward log p - log q (as_reward=True) and the k2 loss both have E[grad] = ∇ KL(Q || P);
    the k3 loss has E[grad] = ∇ KL(P || Q). Checked against autograd of the exact KLs over a small vocabulary."""
    from downsize.distill.losses import sampled_kl_loss

    g = torch.Generator().manual_seed(1)
    u = torch.randn(8, generator=g, dtype=torch.float64)
    p = torch.randn(8, generator=g, dtype=torch.float64).log_softmax(-1)
    n = 400_000
    x = torch.multinomial(u.softmax(-1), n, replacement=True, generator=g)

    def grad(fn):
        w = u.clone().requires_grad_()
        fn(w).backward()
        return w.grad

    mask = torch.ones(n, dtype=torch.bool)
    rkl = grad(lambda w: (w.softmax(-1) * (w.log_softmax(-1) - p)).sum())
    fkl = grad(lambda w: (p.exp() * (p - w.log_softmax(-1))).sum())
    reward = grad(lambda w: sampled_kl_loss(w.log_softmax(-1)[x], p[x], mask, "k1", as_reward=True)[0])
    k2 = grad(lambda w: sampled_kl_loss(w.log_softmax(-1)[x], p[x], mask, "k2")[0])
    k3 = grad(lambda w: sampled_kl_loss(w.log_softmax(-1)[x], p[x], mask, "k3")[0])
    assert torch.allclose(reward, rkl, atol=0.02), (reward, rkl)
    assert torch.allclose(k2, rkl, atol=0.02), (k2, rkl)
    assert torch.allclose(k3, fkl, atol=0.02), (k3, fkl)
    masked, parts = sampled_kl_loss(u[:3], p[:3], torch.zeros(3, dtype=torch.bool))
    assert float(masked) == 0.0 and parts["estimate"] == 0.0


def test_token_logprobs_chunked_head_matches_dense_log_softmax():
    from downsize.distill.losses import token_logprobs

    g = torch.Generator().manual_seed(2)
    h, w = torch.randn(37, 16, generator=g, requires_grad=True), torch.randn(50, 16, generator=g)
    labels = torch.randint(0, 50, (37,), generator=g)
    labels[5] = IGNORE_INDEX
    got = token_logprobs(Head(h, w), labels, chunk_size=8)
    ref = (h @ w.T).log_softmax(-1).gather(1, labels.clamp_min(0)[:, None]).squeeze(1)
    ref = torch.where(labels != IGNORE_INDEX, ref, 0.0)
    assert torch.allclose(got, ref, atol=1e-5)
    (g1,) = torch.autograd.grad(got.sum(), h)
    (g2,) = torch.autograd.grad(ref.sum(), h)
    assert torch.allclose(g1, g2, atol=1e-5)
