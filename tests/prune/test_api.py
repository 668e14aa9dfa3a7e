"""The public API and the CLI: registry, unsupported families, saving, the prune command end to end."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel
from typer.testing import CliRunner

from downsize.cli import app
from downsize.errors import DownsizeError
from downsize.models.adapters import ADAPTERS, register_adapter
from downsize.models.adapters.base import LlamaLikeAdapter
from downsize.prune import METHODS, PruneConfig, parse_targets, prune


def test_registries_and_config_errors():
    assert {"depth", "width", "magnitude", "wanda", "sparsegpt", "lowrank"} <= set(METHODS)
    with pytest.raises(DownsizeError, match="choose one of"):
        PruneConfig("prune-everything")
    with pytest.raises(DownsizeError, match="does not take"):
        PruneConfig("depth", targets={"ffn": 3})
    with pytest.raises(DownsizeError, match="needs a target"):
        PruneConfig("width")
    with pytest.raises(DownsizeError, match="in \\(0, 1\\)"):
        PruneConfig("width", targets="params=1.5")
    assert parse_targets("ffn=1024 heads=4 hidden=256") == {"ffn": 1024, "heads": 4, "hidden": 256}
    assert parse_targets({"params": "0.5"}) == {"params": 0.5}
    with pytest.raises(ValueError, match="registered twice"):
        register_adapter("LlamaForCausalLM")(LlamaLikeAdapter)
    assert {"LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM"} <= set(ADAPTERS)


def test_unsupported_family_fails_before_work(tiny_tokenizer):
    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=len(tiny_tokenizer)))
    with pytest.raises(DownsizeError, match="no adapter") as e:
        prune(gpt2, tiny_tokenizer, PruneConfig("wanda", sparsity=0.5), "zoo:stdlib")
    assert "LlamaForCausalLM" in e.value.hint


def test_depth_params_budget_too_small(tiny_models, tiny_tokenizer):
    with pytest.raises(DownsizeError, match="even one decoder layer"):
        prune(tiny_models["llama"], tiny_tokenizer, PruneConfig("depth", targets={"params": 0.1}), "zoo:stdlib")


def test_cli_prune_end_to_end(tiny_model_dir, tmp_path, stdlib_texts):
    calib = tmp_path / "calib.txt"
    calib.write_text("\n".join(stdlib_texts[:3]))
    out = tmp_path / "pruned"
    r = CliRunner().invoke(app, ["prune", str(tiny_model_dir), "--method", "width", "--targets", "ffn=64 hidden=32",
                                 "--calib", str(calib), "--calib-samples", "4", "--seq-len", "64", "--out", str(out)])
    assert r.exit_code == 0, r.output
    rep = json.loads((out / "prune_report.json").read_text())
    assert rep["sizes"]["after"]["ffn"] == 64 and rep["calibration"]["sequences"] == 4
    m = AutoModelForCausalLM.from_pretrained(out)
    assert m.config.hidden_size == 32 and m.config.intermediate_size == 64
    assert (out / "tokenizer.json").exists()
    assert torch.isfinite(m(input_ids=torch.tensor([[1, 2, 3]])).logits).all()
    r = CliRunner().invoke(app, ["prune", str(tiny_model_dir), "--method", "wanda", "--nm", "2:4", "--calib", str(calib),
                                 "--calib-samples", "4", "--seq-len", "64", "--out", str(tmp_path / "s")])
    assert r.exit_code == 0, r.output
    assert "do not shrink a GGUF" in r.output
    r = CliRunner().invoke(app, ["prune", str(tiny_model_dir), "--method", "width", "--targets", "heads=9",
                                 "--out", str(tmp_path / "bad")])
    assert r.exit_code != 0 and not (tmp_path / "bad").exists()
