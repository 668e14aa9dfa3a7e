"""The converter without torch/transformers, streaming row blocks: byte-identical whatever the block size, reads
bounded by the block size, tensor data equal to a torch reference of the old conversion (bf16 source)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap

import gguf
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from downsize.export.gguf.convert import DIRECT_TYPES, convert_checkpoint
from downsize.export.gguf.source import Checkpoint

from tiny_models import make_tiny_model, save_tiny


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def bf16_llama_dir(tmp_path_factory, tiny_tokenizer):
    """A tiny GQA Llama saved in bfloat16 (the usual Hub dtype), 4/2 heads so q and k permute differently."""
    model = make_tiny_model("llama", tiny_tokenizer, tie_word_embeddings=False).to(torch.bfloat16)
    return save_tiny(model, tiny_tokenizer, tmp_path_factory.mktemp("export_bf16_llama"))


def test_conversion_imports_neither_torch_nor_transformers(bf16_llama_dir, tmp_path):
    code = textwrap.dedent(f"""
        import json, sys
        from downsize.export.gguf import export_gguf
        infos = [export_gguf({str(bf16_llama_dir)!r}, {str(tmp_path)!r} + f"/m-{{q}}.gguf", q).tokenizer for q in ("F16", "Q8_0")]
        print(json.dumps({{"torch": "torch" in sys.modules, "transformers": "transformers" in sys.modules,
                          "loaded_with": infos[0]["loaded_with"]}}))
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got == {"torch": False, "transformers": False, "loaded_with": "tokenizer.json"}, got
    assert (tmp_path / "m-F16.gguf").stat().st_size > 0 and (tmp_path / "m-Q8_0.gguf").stat().st_size > 0


@pytest.mark.parametrize("quant", sorted(DIRECT_TYPES))
def test_row_blocked_conversion_is_byte_identical(export_family_dir, tmp_path, quant):
    """block_bytes=1 forces one row (or one head, for Llama's q/k) per block; 4096 bytes cuts mid-tensor elsewhere."""
    whole = tmp_path / "whole.gguf"
    convert_checkpoint(export_family_dir, whole, quant, block_bytes=1 << 40)
    for block in (1, 4096):
        blocked = tmp_path / f"blocked-{block}.gguf"
        convert_checkpoint(export_family_dir, blocked, quant, block_bytes=block)
        assert _sha(blocked) == _sha(whole), (export_family_dir.name, quant, block)


def test_bf16_source_is_byte_identical_blocked_and_whole(bf16_llama_dir, tmp_path):
    for quant in DIRECT_TYPES:
        a, b = tmp_path / f"a-{quant}.gguf", tmp_path / f"b-{quant}.gguf"
        convert_checkpoint(bf16_llama_dir, a, quant, block_bytes=1 << 40)
        convert_checkpoint(bf16_llama_dir, b, quant, block_bytes=1)
        assert _sha(a) == _sha(b), quant


def test_reads_stay_within_the_block(bf16_llama_dir, tmp_path, monkeypatch):
    """No read of more rows than one block of float32: the embedding (512 x 64, 128 KiB in float32) comes in pieces."""
    block = 16 << 10
    seen: dict[str, int] = {}
    real = Checkpoint.read_rows

    def spy(self, name, r0, r1):
        meta = self.tensors[name]
        f32_bytes = 4 * (r1 - r0) * int(np.prod(meta.shape[1:]))
        if len(meta.shape) > 1:
            seen[name] = max(seen.get(name, 0), f32_bytes)
        return real(self, name, r0, r1)

    monkeypatch.setattr(Checkpoint, "read_rows", spy)
    convert_checkpoint(bf16_llama_dir, tmp_path / "m.gguf", "F16", block_bytes=block)
    assert seen["model.embed_tokens.weight"] <= block
    assert max(seen.values()) <= block, {k: v for k, v in seen.items() if v > block}


def test_bf16_tensors_match_a_torch_reference(bf16_llama_dir, tmp_path):
    """Independent reference: torch's bf16 -> f16/f32 casts and the q/k permutation as the torch converter did it."""
    out = tmp_path / "m.gguf"
    convert_checkpoint(bf16_llama_dir, out, "F16", block_bytes=1)
    cfg = json.loads((bf16_llama_dir / "config.json").read_text())
    sd = load_file(bf16_llama_dir / "model.safetensors")
    data = {t.name: t for t in gguf.GGUFReader(out).tensors}

    def permute(w, n_head):
        return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)

    q = permute(sd["model.layers.0.self_attn.q_proj.weight"], cfg["num_attention_heads"]).to(torch.float16).numpy()
    k = permute(sd["model.layers.1.self_attn.k_proj.weight"], cfg["num_key_value_heads"]).to(torch.float16).numpy()
    emb = sd["model.embed_tokens.weight"].to(torch.float16).numpy()
    norm = sd["model.norm.weight"].to(torch.float32).numpy()
    np.testing.assert_array_equal(np.asarray(data["blk.0.attn_q.weight"].data).reshape(q.shape).view(np.uint16), q.view(np.uint16))
    np.testing.assert_array_equal(np.asarray(data["blk.1.attn_k.weight"].data).reshape(k.shape).view(np.uint16), k.view(np.uint16))
    np.testing.assert_array_equal(np.asarray(data["token_embd.weight"].data).reshape(emb.shape).view(np.uint16), emb.view(np.uint16))
    np.testing.assert_array_equal(np.asarray(data["output_norm.weight"].data), norm)
