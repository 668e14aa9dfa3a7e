"""CUDA assertions of the placement policy and the GPU training paths (skipped without CUDA; run by
benchmarks/gpu_check.sh on a lent device)."""

from __future__ import annotations

import json

import pytest
import torch

from downsize.distill import DistillConfig, LossSpec, StudentSpec, TopKCacheDataset, cache_teacher, distill
from downsize.models.placement import Placement, device_of, load_placed
from downsize.train.loop import LoraSpec, TrainConfig

TC = dict(batch_size=2, warmup_steps=1, progress=False, log_every=1)


def test_auto_is_the_first_gpu_and_loads_there_in_bf16(tiny_model_dir):
    assert Placement("auto").resolve() == "cuda:0"
    model, _ = load_placed(str(tiny_model_dir), Placement("auto", "bf16"))
    assert device_of(model).type == "cuda" and all(p.dtype == torch.bfloat16 for p in model.parameters())


@pytest.mark.parametrize("mp", ["bf16", "no"])
def test_online_distill_with_teacher_and_student_on_the_gpu(tiny_model_dir, tmp_path, mp):
    cfg = DistillConfig(train=TrainConfig(steps=3, mixed_precision=mp, **TC), loss=LossSpec("fkl"), seq_len=32,
                        windows=8, val_tokens=512)
    out = distill(str(tiny_model_dir), StudentSpec.derived(num_hidden_layers=1), "zoo:stdlib", cfg, tmp_path / "s")
    fm = json.loads((out / "distill_card.json").read_text())["final_metrics"]
    assert torch.isfinite(torch.tensor(fm["train_loss"])) and fm["val_perplexity"] > 1


def test_cache_written_on_the_gpu_matches_the_cpu(tiny_model_dir, tmp_path):
    kw = dict(k=8, seq_len=32, windows=4, dtype="fp32")
    cache_teacher(str(tiny_model_dir), "zoo:stdlib", tmp_path / "gpu", device="auto", **kw)
    cache_teacher(str(tiny_model_dir), "zoo:stdlib", tmp_path / "cpu", device="cpu", **kw)
    a, b = TopKCacheDataset(tmp_path / "gpu").batch(0, 4), TopKCacheDataset(tmp_path / "cpu").batch(0, 4)
    torch.testing.assert_close(a["teacher_logp"].float(), b["teacher_logp"].float(), atol=2e-3, rtol=0)


def test_qlora_step(tiny_model_dir, tmp_path):
    pytest.importorskip("bitsandbytes")
    cfg = DistillConfig(train=TrainConfig(steps=2, **TC), loss=LossSpec("fkl"), seq_len=32, windows=8, val_tokens=0,
                        lora=LoraSpec(r=4, quantize_base="nf4"))
    out = distill(str(tiny_model_dir), str(tiny_model_dir), "zoo:stdlib", cfg, tmp_path / "q")
    assert (out / "model.safetensors").exists()
