"""Depth pruning: removing a layer equals skipping it; indices, config and reload stay consistent."""

from __future__ import annotations

import copy

import torch
from transformers import AutoModelForCausalLM

from downsize.models.adapters import adapter_for
from downsize.prune import PruneConfig, prune, save_pruned
from downsize.models.compat import CACHE_ARG, kv_cache


def fwd(model, ids, **kw):
    with torch.no_grad():
        return model(input_ids=ids, use_cache=False, **kw).logits


def _make_identity(model, i):
    """Zero the writes of layer i into the residual stream: the layer becomes the identity."""
    ad = adapter_for(model)
    layer = ad.layers(model)[i]
    with torch.no_grad():
        ad.attn_projs(layer)[3].weight.zero_()
        ad.mlp_projs(layer)[2].weight.zero_()


def test_identity_layer_scores_lowest_and_removal_is_exact(family_model, calib_ids, tmp_path, tiny_tokenizer):
    fam, model = family_model
    _make_identity(model, 1)
    ref = fwd(model, calib_ids[:2])
    for score in ("bi", "ppl"):
        m = prune(copy.deepcopy(model), tiny_tokenizer, PruneConfig("depth", targets={"remove": 1}, depth_score=score), calib_ids)
        rep = m.prune_report
        assert abs(rep["scores"][1]) < 1e-6  # no change to the stream, no change to perplexity
        assert rep["removed_layers"] == [min(range(2), key=lambda i: rep["scores"][i])]
        if score == "bi":  # (a random layer 0 can also *lower* perplexity when dropped, so ppl may pick it)
            assert rep["removed_layers"] == [1] and rep["scores"][0] > 0.01
            torch.testing.assert_close(fwd(m, calib_ids[:2]), ref, rtol=1e-5, atol=1e-5)
            bi_model = m
    m = bi_model
    assert m.config.num_hidden_layers == 1
    if fam == "qwen2":
        assert len(m.config.layer_types) == 1
    save_pruned(m, tiny_tokenizer, tmp_path / "d")
    re = AutoModelForCausalLM.from_pretrained(tmp_path / "d")
    assert re.config.num_hidden_layers == 1 and type(re) is type(model)
    torch.testing.assert_close(fwd(re, calib_ids[:2]), ref, rtol=1e-5, atol=1e-5)
    assert (tmp_path / "d" / "prune_report.json").exists()


def test_removal_equals_skipping(tiny_tokenizer, calib_ids):
    """A random 4-layer model: the pruned model equals the original with the removed layers skipped by a
    hook (independent reference), and incremental decoding through the KV cache matches a full forward,
    which fails if the kept layers' cache indices were not renumbered."""
    from transformers import AutoModelForCausalLM as A  # noqa: N814

    from downsize.models.arch import build_config
    from downsize.prune.importance import block_influence

    cfg = build_config("llama", vocab_size=len(tiny_tokenizer), tokenizer=tiny_tokenizer, hidden_size=64,
                       intermediate_size=128, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2)
    torch.manual_seed(3)
    model = A.from_config(cfg)
    ad = adapter_for(model)
    scores = block_influence(model, ad, calib_ids)
    drop = sorted(sorted(range(4), key=lambda i: float(scores[i]))[:2])
    handles = []
    for i in drop:  # reference: the original model with those layers replaced by the identity
        def skip(m, args, kwargs, out):
            h = args[0] if args else kwargs["hidden_states"]
            return (h,) + tuple(out[1:]) if isinstance(out, tuple) else h
        handles.append(ad.layers(model)[i].register_forward_hook(skip, with_kwargs=True))
    ref = fwd(model, calib_ids[:2])
    for h in handles:
        h.remove()
    m = prune(copy.deepcopy(model), tiny_tokenizer, PruneConfig("depth", targets={"layers": 2}), calib_ids)
    assert m.prune_report["removed_layers"] == drop
    torch.testing.assert_close(fwd(m, calib_ids[:2]), ref, rtol=1e-5, atol=1e-5)
    assert [ad.attn(l).layer_idx for l in ad.layers(m)] == [0, 1]
    # incremental decoding through the KV cache (uses layer_idx) matches the full forward
    ids = calib_ids[:1, :12]
    with torch.no_grad():
        full = m(input_ids=ids, use_cache=False).logits[:, -1]
        out = m(input_ids=ids[:, :-1], use_cache=True)
        step = m(input_ids=ids[:, -1:], **{CACHE_ARG: kv_cache(out)}, use_cache=True).logits[:, -1]
    torch.testing.assert_close(step, full, rtol=1e-4, atol=1e-4)
