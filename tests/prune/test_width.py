"""Width pruning: zero-importance channels go first and removing them leaves outputs unchanged;
masking references; GQA grouping; config consistency and reload; budgets and impossible targets."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import AutoModelForCausalLM

from downsize.errors import DownsizeError
from downsize.models.adapters import adapter_for
from downsize.prune import PruneConfig, prune, save_pruned
from downsize.prune.importance import width_stats
from downsize.prune.sizes import model_params
from downsize.prune.width import head_selection


def fwd(model, ids):
    with torch.no_grad():
        return model(input_ids=ids, use_cache=False).logits


def test_zero_neurons_heads_channels_are_removed_exactly(family_model, calib_ids, tiny_tokenizer, tmp_path):
    """Make half the MLP neurons, one KV group and 16 hidden channels dead; width pruning to exactly the
    live sizes must keep the logits (RMSNorm rescaled by norm_correction) and reload with no custom code."""
    fam, model = family_model
    ad = adapter_for(model)
    # 16 of 64 hidden channels (qwen2: 32, since llama.cpp needs hidden = heads x head_dim = 2 x 16 there)
    dead_ch = torch.arange(0, 64, 4) if fam == "llama" else torch.arange(0, 64, 2)
    hidden = 64 - len(dead_ch)
    # RMSNorm's eps (1e-6) is not negligible against the tiny init's mean square (~4e-4) and would break
    # exactness of the sqrt(d/d') rescaling, so the test model uses a negligible one.
    model.config.rms_norm_eps = 1e-12
    for mod in model.modules():
        if hasattr(mod, "variance_epsilon"):
            mod.variance_epsilon = 1e-12
    with torch.no_grad():
        ad.embed(model).weight[:, dead_ch] = 0
        for layer in ad.layers(model):
            q, k, v, o = ad.attn_projs(layer)
            gate, up, down = ad.mlp_projs(layer)
            up.weight[1::2] = 0  # neurons 1, 3, 5, ... output act(gate) * 0 = 0
            hd = 16
            v.weight[hd : 2 * hd] = 0  # KV group 1 (query heads 2, 3) outputs zeros
            if v.bias is not None:
                v.bias[hd : 2 * hd] = 0
            o.weight[dead_ch] = 0
            down.weight[dead_ch] = 0
    ref = fwd(model, calib_ids[:2])
    st = width_stats(model, ad, calib_ids)
    assert torch.all(st.neurons[0][1::2] == 0) and torch.all(st.neurons[0][0::2] > 0)
    assert torch.all(st.heads[0][2:] == 0) and torch.all(st.heads[0][:2] > 0)
    assert torch.all(st.hidden[dead_ch] == 0)
    m = prune(model, tiny_tokenizer, PruneConfig("width", targets=f"ffn=64 heads=2 kv_heads=1 hidden={hidden}"), calib_ids)
    c = m.config
    assert (c.intermediate_size, c.num_attention_heads, c.num_key_value_heads, c.hidden_size, c.head_dim) == (64, 2, 1, hidden, 16)
    assert m.prune_report["kept_heads"][0] == [0, 1]
    torch.testing.assert_close(fwd(m, calib_ids[:2]), ref, rtol=1e-4, atol=1e-4)
    save_pruned(m, tiny_tokenizer, tmp_path / "w")
    re = AutoModelForCausalLM.from_pretrained(tmp_path / "w")
    assert type(re) is type(m) and model_params(re) == model_params(m)
    torch.testing.assert_close(fwd(re, calib_ids[:2]), ref, rtol=1e-4, atol=1e-4)
    if fam == "qwen2":
        assert re.lm_head.weight.data_ptr() == re.model.embed_tokens.weight.data_ptr()


def test_mlp_and_heads_equal_masking_reference(family_model, calib_ids, tiny_tokenizer):
    """Random weights: the sliced model equals the original with the removed neurons and heads masked to zero
    by hooks (an independent reference of what slicing must do)."""
    fam, model = family_model
    ad = adapter_for(model)
    st = width_stats(model, ad, calib_ids)
    keep_n = [set(torch.topk(s, 48).indices.tolist()) for s in st.neurons]
    # one query head per KV group (llama only: qwen2 in llama.cpp needs heads x head_dim = hidden, so its heads stay)
    sel = [head_selection(s, 4, 2, 2, 2)[0].tolist() if fam == "llama" else [0, 1, 2, 3] for s in st.heads]
    for s, q in zip(st.heads, sel if fam == "llama" else []):  # the best head of each group
        assert q == [int(torch.argmax(s[:2])), 2 + int(torch.argmax(s[2:]))]
    handles = []
    for i, layer in enumerate(ad.layers(model)):
        nmask = torch.tensor([j in keep_n[i] for j in range(128)], dtype=torch.float32)
        hmask = torch.tensor([h in sel[i] for h in range(4)], dtype=torch.float32).repeat_interleave(16)
        handles.append(ad.mlp_projs(layer)[2].register_forward_pre_hook(lambda m, a, k=nmask: (a[0] * k,)))
        handles.append(ad.attn_projs(layer)[3].register_forward_pre_hook(lambda m, a, k=hmask: (a[0] * k,)))
    ref = fwd(model, calib_ids[:2])
    for h in handles:
        h.remove()
    m = prune(copy.deepcopy(model), tiny_tokenizer, PruneConfig("width", targets="ffn=48 heads=2 kv_heads=2" if fam == "llama" else "ffn=48"), calib_ids)
    torch.testing.assert_close(fwd(m, calib_ids[:2]), ref, rtol=1e-5, atol=1e-5)


def test_params_budget(family_model, calib_ids, tiny_tokenizer):
    fam, model = family_model
    before = model_params(model)
    m = prune(model, tiny_tokenizer, PruneConfig("width", targets={"params": 0.6}, round_to=8), calib_ids)
    after = model_params(m)
    assert after / before <= 0.6
    assert m.config.intermediate_size % 8 == 0 and m.config.hidden_size % 8 == 0
    if fam == "llama":
        assert after / before > 0.5 and m.config.hidden_size % m.config.num_attention_heads == 0
    else:  # hidden moves with the head count in steps of head_dim=16: 64 -> 32 (3 heads cannot be grouped 2 KV ways)
        assert m.config.hidden_size == m.config.num_attention_heads * m.config.head_dim == 32
    assert m.prune_report["params"]["after"] == after


@pytest.mark.parametrize("targets,msg", [
    ("heads=6", "larger than"),
    ("heads=3", "grouped-query"),
    ("heads=2 kv_heads=2 ffn=129", "larger than"),
    ("params=0.01", "smallest width"),
    ("hidden=50", "divisible|heads x head_dim"),
])
def test_impossible_targets_fail_before_work(family_model, tiny_tokenizer, targets, msg):
    fam, model = family_model
    w0 = model.lm_head.weight.clone()
    with pytest.raises(DownsizeError, match=msg):
        prune(model, tiny_tokenizer, PruneConfig("width", targets=targets), "/nonexistent/calibration")
    assert torch.equal(model.lm_head.weight, w0)


def _meta_model(config):
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)


QWEN25_15B = dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                  num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True)  # Qwen2.5-1.5B's public config
LLAMA31_8B_2L = dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=2, num_attention_heads=32,
                     num_key_value_heads=8, vocab_size=128256, head_dim=128)


@pytest.mark.parametrize("cls,fields", [("Qwen2", QWEN25_15B), ("Llama", LLAMA31_8B_2L)])
def test_budget_sizes_fit_kquant_super_blocks(cls, fields):
    """params=0.5 on real shapes: every row width is a multiple of 256 (K-quants) and heads group the KV heads;
    with the alignment off the old rounding to 32 picks widths llama.cpp can only quantize with its fallback."""
    import transformers

    from downsize.prune.width import resolve_sizes

    config = getattr(transformers, f"{cls}Config")(**fields)
    config.architectures = [f"{cls}ForCausalLM"]
    model = _meta_model(config)
    ad = adapter_for(model)
    s = resolve_sizes(model, ad, PruneConfig("width", targets={"params": 0.5}))
    hd = ad.head_dim(config)
    assert s["ffn"] % 256 == 0 and s["hidden"] % 256 == 0 and s["heads"] * hd % 256 == 0, s
    assert s["heads"] % s["kv_heads"] == 0 and config.num_key_value_heads % s["kv_heads"] == 0
    assert s["ffn"] < fields["intermediate_size"] and s["hidden"] < fields["hidden_size"]
    old = resolve_sizes(model, ad, PruneConfig("width", targets={"params": 0.5}, quant_align=0))
    if cls == "Qwen2":
        assert old["ffn"] == 6304  # what issue #19 saw: every ffn_down fell back to Q5_0/Q8_0 in Q4_K_M


def test_report_says_which_rows_kquants_cannot_pack(family_model, calib_ids, tiny_tokenizer, caplog):
    """The tiny models' widths (64, 48) are below one super-block: the report and the log say so."""
    fam, model = family_model
    with caplog.at_level("WARNING", logger="downsize.prune.width"):
        m = prune(model, tiny_tokenizer, PruneConfig("width", targets="ffn=48"), calib_ids)
    al = m.prune_report["alignment"]
    assert al["quant_align"] == 256 and al["rows"]["ffn"] == 48
    assert any("ffn=48 is not a multiple of 256" in n and "ffn_down" in n for n in al["notes"])
    assert "ffn=48 is not a multiple of 256" in caplog.text


def test_quant_align_validated():
    with pytest.raises(DownsizeError, match="quant_align"):
        PruneConfig("width", targets="ffn=48", quant_align=-1)
