"""LoRA adapter → GGUF adapter: llama.cpp with the adapter applied matches the PEFT model in transformers."""

from __future__ import annotations

import contextlib
import os

import numpy as np
import pytest
import torch

from downsize.export.gguf import export_gguf
from downsize.export.lora import export_lora_gguf
from downsize.export.verify import MIXED_TEXT, gguf_logits


def test_lora_adapter_matches_peft_in_llama_cpp(tiny_model_dir, tmp_path):
    import llama_cpp
    from peft import LoraConfig, get_peft_model

    from downsize.models.refs import load_model

    model, tok = load_model(tiny_model_dir)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "down_proj"]))
    torch.manual_seed(1)
    with torch.no_grad():
        for n, p in peft_model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.2)  # B starts at zero; make the adapter change the output
    peft_model.save_pretrained(tmp_path / "adapter")
    base = tmp_path / "base.gguf"
    export_gguf(tiny_model_dir, base, "F32")
    info = export_lora_gguf(tmp_path / "adapter", tiny_model_dir, tmp_path / "adapter.gguf")
    assert info["pairs"] == 2 * 4 + 2 and info["alpha"] == 8.0

    ids = tok.encode(MIXED_TEXT, add_special_tokens=False)
    peft_model.eval()
    with torch.no_grad():
        ref = peft_model(torch.tensor([ids])).logits[0].numpy()
    with open(os.devnull, "w") as dn, contextlib.redirect_stderr(dn):
        llm = llama_cpp.Llama(str(base), lora_path=str(tmp_path / "adapter.gguf"), n_ctx=512, logits_all=True, verbose=False)
    got = gguf_logits(llm, ids)
    assert np.abs(got - ref).max() < 2e-3, np.abs(got - ref).max()
    with peft_model.disable_adapter(), torch.no_grad():
        plain = peft_model(torch.tensor([ids])).logits[0].numpy()
    assert np.abs(plain - ref).max() > 0.05, "the adapter should change the logits (else the test proves nothing)"


def test_lora_errors(tiny_model_dir, tmp_path):
    from downsize.errors import DownsizeError

    with pytest.raises(DownsizeError, match="not a PEFT adapter"):
        export_lora_gguf(tmp_path, tiny_model_dir, tmp_path / "a.gguf")
    assert not (tmp_path / "a.gguf").exists()
