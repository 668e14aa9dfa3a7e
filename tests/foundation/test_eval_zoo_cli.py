"""Perplexity exactness, zoo load/forward against the model card, and the CLI contract."""

import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from downsize.eval.perplexity import perplexity
from downsize.zoo import ZOO, zoo_path


def naive_perplexity(model, stream, seq_len):
    nll, n = 0.0, 0
    for s in range(0, len(stream), seq_len):
        w = torch.tensor(np.asarray(stream[s:s + seq_len], dtype=np.int64))[None]
        if w.shape[1] < 2:
            continue
        logp = torch.log_softmax(model(w).logits[0, :-1].double(), -1)
        nll -= logp.gather(-1, w[0, 1:, None]).sum().item()
        n += w.shape[1] - 1
    return math.exp(nll / n), n


def test_perplexity_exact_and_batch_size_independent(tiny_model_dir, tiny_tokenizer, stdlib_texts):
    from downsize.data.packing import tokenize_documents
    from downsize.models.refs import load_model

    model, _ = load_model(str(tiny_model_dir))
    stream = tokenize_documents(tiny_tokenizer, stdlib_texts[:3])[:1000]  # last window is ragged
    ref, n = naive_perplexity(model, stream, 64)
    results = [perplexity(model, stream, seq_len=64, batch_size=b) for b in (1, 3, 8, 100)]
    for r in results:
        assert r.tokens == n
        assert r.perplexity == pytest.approx(ref, rel=1e-5)
    assert results[0].perplexity < len(tiny_tokenizer) * 1.5  # a random-init model sits near chance


@pytest.mark.parametrize("name", [n for n, s in ZOO.items() if s.shipped])
def test_zoo_model_loads_offline_and_matches_card(name, monkeypatch):
    path = zoo_path(name)
    if not (path / "config.json").exists():
        pytest.skip(f"zoo model {name} not installed")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from downsize.zoo.train import load_card, stdlib_stream

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(path)
    card = load_card(path)
    assert sum(p.numel() for p in model.parameters()) == card["parameters"]
    ids = tok("import os\n", return_tensors="pt").input_ids
    assert torch.isfinite(model(ids).logits).all()
    quick = card["eval"]["validation_quick"]
    r = perplexity(model, stdlib_stream(tok, "validation"), seq_len=quick["seq_len"], max_tokens=quick["max_tokens"])
    assert r.tokens == quick["tokens"]
    assert r.perplexity == pytest.approx(quick["perplexity"], rel=2e-3)
    # clearly better than chance
    assert card["eval"]["validation"]["perplexity"] < len(tok) / 20


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "downsize.cli", *args], capture_output=True, text=True, timeout=120)


def test_cli_help_lists_every_command():
    out = run_cli("--help")
    assert out.returncode == 0
    for cmd in ("zoo", "distill", "generate", "prune", "export", "eval", "plan", "validate", "run"):
        assert cmd in out.stdout


def test_cli_bad_reference_is_a_clear_error_not_a_traceback(tmp_path):
    out = run_cli("eval", str(tmp_path / "nope"))
    assert out.returncode == 2
    assert "does not exist" in out.stderr and "Traceback" not in out.stderr


def test_cli_eval_on_a_text_file(tiny_model_dir, tmp_path):
    data = tmp_path / "d.txt"
    data.write_text("def add(a, b):\n    return a + b\n" * 20)
    out = run_cli("eval", str(tiny_model_dir), "--data", str(data), "--no-sample", "--json")
    assert out.returncode == 0, out.stderr
    import json

    res = json.loads(out.stdout)
    assert res["tokens"] > 50 and res["perplexity"] > 1


@pytest.mark.slow  # over 15 s; eval with speed also runs in tests/e2e/test_report_render.py
def test_cli_eval_gguf_against_its_hf_teacher_with_speed(tiny_model_dir, tmp_path):
    """The F32 GGUF runs in llama.cpp: same perplexity as the HF model it came from, KL ~ 0, top-1 ~ 100 %,
    and --speed reports tokens/s and peak RSS of both from fresh processes."""
    import json

    from downsize.export.gguf import export_gguf

    gguf = tmp_path / "tiny-f32.gguf"
    export_gguf(str(tiny_model_dir), gguf, "F32")
    data = tmp_path / "d.txt"
    data.write_text("class Stack:\n    def push(self, x):\n        self.items.append(x)\n" * 30)
    out = run_cli("eval", str(gguf), "--teacher", str(tiny_model_dir), "--data", str(data), "--seq-len", "64",
                  "--speed", "--threads", "1", "--json")
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert r["backend"] == "llama.cpp" and r["tokens"] > 100
    assert abs(r["perplexity"] - r["teacher_perplexity"]) / r["teacher_perplexity"] < 1e-3
    assert 0 <= r["kl_to_teacher"] < 1e-4 and r["top1_agreement"] > 0.98
    assert r["size_mb"] > 0 and r["parameters"] > 0
    for s in (r["speed"], r["teacher_speed"]):
        assert s["prompt_tok_s"] > 0 and s["gen_tok_s"] > 0 and s["peak_rss_mb"] >= s["base_rss_mb"] > 0
        assert s["threads"] == 1
    assert r["speed"]["backend"] == "llama.cpp" and r["teacher_speed"]["backend"] == "transformers"
    # the peak is the child's own (VmHWM), not the parent's carried over by fork + exec: llama.cpp with a tiny
    # model stays far below the eval process, which holds torch, transformers and both models
    assert r["speed"]["peak_rss_mb"] < 200 < r["teacher_speed"]["peak_rss_mb"]
