"""The real-shape chain on the CPU (slow: about an hour on a quiet 2-core machine): a random-init model of
Qwen2.5-0.5B's exact config with the real Qwen2 vocabulary and Qwen2.5 chat template, width-pruned to half,
distilled online and from an offline cache, exported to F16 and Q4_K_M with an importance matrix, checked in
llama.cpp against transformers, given a Modelfile and evaluated against the teacher. Every stage runs in its
own process (benchmarks/real_shapes.py) and its peak RSS is checked against what the stage must be bounded by."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    pytest.importorskip("llama_cpp")
    from sdist import llama_cpp_dir

    llama_cpp_dir()  # the Qwen2 vocabulary comes from llama.cpp's test files (skips when unavailable)
    out = tmp_path_factory.mktemp("real_shapes")
    res = out / "rows.json"
    p = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "real_shapes.py"), "--shapes", "qwen2.5-0.5b",
                        "--out", str(out), "--steps", "2", "--kd-rows", "8192", "--json", str(res)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-4000:]
    return {r["stage"]: r for r in json.loads(res.read_text())}


def test_width_prune_sizes_fit_kquants(chain):
    s = chain["prune"]["sizes"]["after"]
    assert s["ffn"] % 256 == 0 and s["hidden"] % 256 == 0 and s["heads"] % s["kv_heads"] == 0
    assert chain["prune"]["alignment_notes"] == []
    assert set(chain["export_q4km"]["ffn_down_types"]) <= {"Q4_K", "Q6_K"}  # no Q5_0/Q8_0 fallback


def test_kd_loss_memory_bounded_by_chunks_at_152k_vocab(chain):
    """8,192 rows: full fp32 logits of student and teacher would be 9.5 GB; the chunked loss holds the LM head's
    gradient (and its per-chunk addend) plus a few (256, V) temporaries, whatever the number of rows."""
    m = chain["kd_memory"]
    assert m["vocab"] == 151936 and m["rows"] == 8192
    assert m["loss_peak_growth_mb"] < 2 * m["head_grad_mb"] + 10 * m["one_chunk_mb"] < m["full_logits_mb"] / 3


def test_distill_runs_end_and_clean_up(chain):
    for name in ("distill_online", "distill_offline"):
        r = chain[name]
        assert r["final_metrics"]["val_tokens"] > 0 and r["work_checkpoints_left"] is False
        assert len(r["step_s"]) == 2


def test_imatrix_bounded_by_a_layer(chain):
    """Streaming keeps the importance-matrix pass near the embedding + one layer, under the whole fp32 model."""
    whole_fp32_mb = chain["prune"]["params"]["after"] * 4 / 2**20
    assert chain["imatrix"]["peak_rss_mb"] < whole_fp32_mb + 1500


def test_llama_cpp_agrees_with_transformers(chain):
    v = chain["verify"]
    assert v["f16"]["tokens_equal"] and v["q4_k_m"]["tokens_equal"]
    assert v["f16"]["top1_agreement"] > 0.97 and v["f16"]["max_abs_logit_diff"] < 0.05
    # a random-init model's next-token distribution is nearly flat (perplexity ~ V), so Q4_K_M's top-1 among
    # near-equal logits is noise (0.48 measured); its KL to the float model is the meaningful figure
    assert v["q4_k_m"]["kl"] < 0.05


def test_modelfile_and_eval(chain):
    assert chain["modelfile"]["template_style"] and "<|im_end|>" in chain["modelfile"]["stops"]
    e = chain["eval"]
    assert e["perplexity"] > 1 and e["teacher_perplexity"] > 1
