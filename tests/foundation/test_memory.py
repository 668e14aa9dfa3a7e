"""Memory planning from configs alone: parameter counts against real models, a measured distill peak, and the
32B -> 3B recipe planned from a Hugging Face cache that holds nothing but the two real config.json files."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from downsize.errors import DownsizeError
from downsize.models.memory import GiB, RUNTIME_BYTES, Device, ModelShape, estimate_stage_memory, plan_memory
from hub_cache import add_hub_repo
from tiny_models import make_tiny_model, save_tiny

REPO = Path(__file__).resolve().parents[2]

# Public config.json values of the recipe's models (huggingface.co/Qwen/...-Instruct/blob/main/config.json).
QWEN25_32B = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 5120,
              "intermediate_size": 27648, "num_hidden_layers": 64, "num_attention_heads": 40, "num_key_value_heads": 8,
              "vocab_size": 152064, "tie_word_embeddings": False, "max_position_embeddings": 32768,
              "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "torch_dtype": "bfloat16"}
QWEN25_3B = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 2048,
             "intermediate_size": 11008, "num_hidden_layers": 36, "num_attention_heads": 16, "num_key_value_heads": 2,
             "vocab_size": 151936, "tie_word_embeddings": True, "max_position_embeddings": 32768,
             "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "torch_dtype": "bfloat16"}
LLAMA31_8B = {"model_type": "llama", "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
              "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256, "tie_word_embeddings": False}


@pytest.mark.parametrize("cfg,total,non_embedding", [
    (QWEN25_32B, 32.76e9, 31.21e9),  # the Hub lists 32.8B params (card: 32.5B, 31.0B non-embedding)
    (QWEN25_3B, 3.09e9, 2.77e9),     # card: 3.09B, 2.77B non-embedding
    (LLAMA31_8B, 8.03e9, None),      # card: 8.03B
])
def test_parameter_counts_of_real_configs(cfg, total, non_embedding):
    m = ModelShape.from_config(cfg)
    assert abs(m.params / total - 1) < 0.005
    if non_embedding:
        assert abs((m.params - m.embed_params) / non_embedding - 1) < 0.005


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_parameter_count_is_exact_for_built_models(family, tiny_tokenizer):
    model = make_tiny_model(family, tiny_tokenizer, vocab_size=len(tiny_tokenizer) + 7)
    assert ModelShape.from_config(model.config.to_dict()).params == sum(p.numel() for p in model.parameters())


def test_device_specs():
    assert Device.parse("cuda:80x8") == Device("cuda", 80.0, 8)
    assert Device.parse("cpu").memory_gb > 1
    with pytest.raises(DownsizeError, match="unknown device"):
        Device.parse("tpu:16")
    with pytest.raises(DownsizeError, match="cannot read the device"):
        Device.parse("cuda")


def test_32b_into_3b_distill_on_one_80g_gpu_suggests_the_ways_out():
    s, t = ModelShape.from_config(QWEN25_3B), ModelShape.from_config(QWEN25_32B)
    settings = {"batch_size": 2, "seq_len": 2048, "teacher_mode": "online"}
    est = estimate_stage_memory("distill", settings, s, t, "cuda:80")
    assert not est.fits and est.parts["teacher"] == pytest.approx(2 * t.params)  # bf16 teacher: 61 GiB
    assert est.parts["optimizer"] == pytest.approx(8 * s.params) and est.parts["kd_logits"] < 1 * GiB  # chunked
    assert any(x.startswith("teacher_mode: offline") and x.endswith(", fits") for x in est.suggestions)
    offline = estimate_stage_memory("distill", {**settings, "teacher_mode": "offline"}, s, t, "cuda:80")
    assert set(offline.phases) == {"write teacher cache", "train"} and "teacher" not in offline.parts
    eight = estimate_stage_memory("distill", settings, s, t, "cuda:80x8")
    assert any(x.startswith("FSDP across the 8 GPUs") and x.endswith(", fits") for x in eight.suggestions)
    qlora = estimate_stage_memory("sft", {"batch_size": 1, "seq_len": 1024, "lora": {"r": 16, "quantize_base": "nf4"}},
                                  t, None, "cuda:24")
    assert qlora.parts["weights"] < 0.7 * t.params and qlora.parts["optimizer"] == pytest.approx(8 * t.lora_params(16))  # NF4 layers, bf16 embeddings


def test_32b_to_3b_recipe_planned_from_configs_only(tmp_path, monkeypatch):
    """The shipped recipe, its Hub ids resolved offline through a cache holding only config.json files."""
    import huggingface_hub.constants

    from downsize.pipeline import plan_recipe
    from downsize.recipe import load_recipe

    home = tmp_path / "hf"
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    add_hub_repo(home / "hub", "Qwen/Qwen2.5-32B-Instruct", {"config.json": json.dumps(QWEN25_32B).encode()})
    add_hub_repo(home / "hub", "Qwen/Qwen2.5-3B-Instruct", {"config.json": json.dumps(QWEN25_3B).encode()})
    recipe = load_recipe(REPO / "recipes" / "qwen2.5-32b-to-3b-ollama.yaml", check_refs=False)
    plan = {e.stage: e for e in plan_memory(recipe, "cuda:80")}
    assert list(plan) == ["teacher-data", "text-kd", "logit-kd", "quantize", "export", "eval"]
    s, t = ModelShape.from_config(QWEN25_3B), ModelShape.from_config(QWEN25_32B)
    assert plan["text-kd"].parts["weights"] == pytest.approx(4 * s.params)  # the sft stage trains the 3B student
    kd = plan["logit-kd"]  # offline teacher: the cache pass holds the 32B teacher, training holds the 3B student
    assert kd.phases["write teacher cache"] > 2 * t.params and kd.phases["train"] < kd.phases["write teacher cache"] * 2
    assert plan["quantize"].phases["importance matrix"] > 4 * s.params
    assert all(e.peak > RUNTIME_BYTES for e in plan.values())
    line = plan_recipe(recipe, Device.parse("cuda:80"))[2]["memory"]
    assert line.startswith("peak") and "GiB" in line and "unknown" not in line


PROBE = r"""
import json, resource, sys
import torch
torch.set_num_threads(1)
from downsize.distill import DistillConfig, LossSpec, distill
from downsize.train.loop import TrainConfig
import transformers.models.llama.modeling_llama  # noqa: F401  the libraries' own footprint is RUNTIME_BYTES, not measured
def rss():
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmRSS")).split()[1]) * 1024
teacher, student, data, out = sys.argv[1:5]
base = rss()
cfg = DistillConfig(train=TrainConfig(steps=2, batch_size=4, lr=1e-3, warmup_steps=0, mixed_precision="no",
                                      checkpoint_every=0, progress=False),
                    loss=LossSpec("fkl"), seq_len=256, teacher_dtype="fp32", val_tokens=0)  # training only
distill(teacher, student, data, cfg, out)
print(json.dumps({"base": base, "peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


@pytest.mark.slow  # over 10 s: the default suite must stay under 10 minutes
def test_estimate_is_within_1_5x_of_a_measured_distill_step(tmp_path, tiny_tokenizer, stdlib_texts):
    """Peak RSS of a real downsize distill run (fp32, batch 4 x 256, 16M-param student and teacher) in a fresh
    process, minus the process's RSS before it started (torch and transformers' model code already imported:
    that is the estimate's runtime allowance), against the estimate without its runtime allowance."""
    shape = dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=4, num_attention_heads=8,
                 num_key_value_heads=4)
    t = save_tiny(make_tiny_model("llama", tiny_tokenizer, seed=0, **shape), tiny_tokenizer, tmp_path / "t")
    s = save_tiny(make_tiny_model("llama", tiny_tokenizer, seed=1, **shape), tiny_tokenizer, tmp_path / "s")
    data = tmp_path / "d.txt"
    data.write_text("\n\n".join(stdlib_texts[:20]))
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, "-c", PROBE, str(t), str(s), str(data), str(tmp_path / "out")],
                       capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    m = json.loads(p.stdout.strip().splitlines()[-1])
    measured = m["peak"] - m["base"]
    cfg = json.loads((s / "config.json").read_text())
    est = estimate_stage_memory("distill", {"batch_size": 4, "seq_len": 256, "mixed_precision": "no",
                                            "teacher_dtype": "fp32"}, cfg, cfg, "cpu")
    predicted = est.peak - RUNTIME_BYTES
    print(f"measured {measured / 2**20:.0f} MiB, estimated {predicted / 2**20:.0f} MiB "
          f"({ {k: round(v / 2**20) for k, v in est.parts.items()} })")
    assert 1 / 1.5 < measured / predicted < 1.5


def test_docstring_examples_run():
    import doctest

    import downsize.models.hub
    import downsize.models.memory

    for mod in (downsize.models.memory, downsize.models.hub):
        r = doctest.testmod(mod)
        assert r.failed == 0 and r.attempted > 0, mod.__name__


def test_cli_plan_prints_memory_for_32b_to_3b_without_weights(tmp_path):
    home = tmp_path / "hf"
    add_hub_repo(home / "hub", "Qwen/Qwen2.5-32B-Instruct", {"config.json": json.dumps(QWEN25_32B).encode()})
    add_hub_repo(home / "hub", "Qwen/Qwen2.5-3B-Instruct", {"config.json": json.dumps(QWEN25_3B).encode()})
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "HF_HOME": str(home), "HF_HUB_OFFLINE": "1", "COLUMNS": "400"}
    env.pop("HF_HUB_CACHE", None)
    p = subprocess.run([sys.executable, "-m", "downsize.cli", "plan", str(REPO / "recipes" / "qwen2.5-32b-to-3b-ollama.yaml")],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert p.returncode == 0, p.stderr
    assert p.stdout.count("│ peak ") == 6 and "unknown" not in p.stdout and "memory plan unavailable" not in p.stderr
