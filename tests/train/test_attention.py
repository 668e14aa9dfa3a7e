"""fp32_attention_backward: the student's attention under CPU bf16 autocast computed from fp32 inputs."""

from __future__ import annotations

import contextlib
import threading

import torch
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from downsize.models.attention import fp32_attention_backward


def _fwd_bwd(model, ids, wrap: bool):
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16), (fp32_attention_backward() if wrap else contextlib.nullcontext()):
        used = ALL_ATTENTION_FUNCTIONS["sdpa"]
        out = model(input_ids=ids).logits
    out.float().logsumexp(-1).mean().backward()
    return out.detach().float(), {n: p.grad.clone() for n, p in model.named_parameters()}, used


def test_same_values_and_gradients_as_bf16_sdpa_and_restored():
    torch.manual_seed(0)
    from transformers import AutoModelForCausalLM, LlamaConfig

    cfg = LlamaConfig(vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=64)
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa")
    assert model.config._attn_implementation == "sdpa"
    ids = torch.randint(0, model.config.vocab_size, (2, 24))
    plain = ALL_ATTENTION_FUNCTIONS["sdpa"]
    a, ga, f_plain = _fwd_bwd(model, ids, wrap=False)
    b, gb, f_wrapped = _fwd_bwd(model, ids, wrap=True)
    assert f_plain is plain and f_wrapped is not plain and f_wrapped.__wrapped__ is plain
    assert ALL_ATTENTION_FUNCTIONS["sdpa"] is plain  # given back on exit
    assert a.dtype == b.dtype
    # the same function, with bf16 rounding of attention's inputs and output left out: close, not equal
    assert (a - b).abs().max() < 0.1 and not torch.equal(a, b)
    for n in ga:
        rel = (ga[n] - gb[n]).norm() / ga[n].norm().clamp_min(1e-12)
        assert rel < 0.05, (n, float(rel))


def test_calls_without_gradient_or_fp32_are_passed_through():
    q = torch.randn(1, 2, 8, 4, dtype=torch.bfloat16)
    calls = []

    def fake(module, query, key, value, mask, *args, **kwargs):
        calls.append(query.dtype)
        return query.transpose(1, 2), None

    saved = ALL_ATTENTION_FUNCTIONS._local_mapping.copy()
    ALL_ATTENTION_FUNCTIONS["sdpa"] = fake
    try:
        with fp32_attention_backward():
            f = ALL_ATTENTION_FUNCTIONS["sdpa"]
            f(None, q, q, q, None)  # no gradient (a teacher's forward): unchanged
            f(None, q.float().requires_grad_(), q, q, None)  # fp32 without autocast: unchanged
            out, _ = f(None, q.clone().requires_grad_(), q, q, None)  # bf16 that trains: fp32 inside
            with torch.autocast("cpu", dtype=torch.bfloat16):
                f(None, q.float().requires_grad_(), q, q, None)  # fp32 after RoPE under autocast: fp32 inside
        assert calls == [torch.bfloat16, torch.float32, torch.float32, torch.float32]
        assert out.dtype == torch.bfloat16
        assert ALL_ATTENTION_FUNCTIONS["sdpa"] is fake
    finally:
        ALL_ATTENTION_FUNCTIONS._local_mapping.clear()
        ALL_ATTENTION_FUNCTIONS._local_mapping.update(saved)


def test_reentrant_across_threads():
    plain = ALL_ATTENTION_FUNCTIONS["sdpa"]
    inside = threading.Event()
    leave = threading.Event()

    def other():
        with fp32_attention_backward():
            inside.set()
            leave.wait(5)

    t = threading.Thread(target=other)
    t.start()
    inside.wait(5)
    with fp32_attention_backward():
        assert ALL_ATTENTION_FUNCTIONS["sdpa"] is not plain
    assert ALL_ATTENTION_FUNCTIONS["sdpa"] is not plain  # the other thread is still inside
    leave.set()
    t.join()
    assert ALL_ATTENTION_FUNCTIONS["sdpa"] is plain
