"""Bad inputs to the exporter: each a clear DownsizeError with a hint, and no partial output file left behind."""

from __future__ import annotations

import json
import shutil

import pytest
from safetensors.torch import load_file, save_file

from downsize.errors import DownsizeError
from downsize.export.gguf import export_gguf


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def _assert_clean(out):
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")], list(out.parent.iterdir())


def _expect(model_dir, tmp_path, match, quant="F16"):
    out = tmp_path / "out" / "m.gguf"
    out.parent.mkdir()
    with pytest.raises(DownsizeError, match=match) as e:
        export_gguf(model_dir, out, quant)
    assert e.value.hint
    _assert_clean(out)


def test_unsupported_architecture(tiny_model_dir, tmp_path):
    d = _copy(tiny_model_dir, tmp_path / "m")
    cfg = json.loads((d / "config.json").read_text())
    cfg["architectures"] = ["GPTNeoXForCausalLM"]
    cfg["model_type"] = "gpt_neox"
    (d / "config.json").write_text(json.dumps(cfg))
    _expect(d, tmp_path, "not supported by the GGUF exporter")


def test_missing_tokenizer(tiny_model_dir, tmp_path):
    d = _copy(tiny_model_dir, tmp_path / "m")
    for f in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        (d / f).unlink(missing_ok=True)
    _expect(d, tmp_path, "no tokenizer")


def test_sharded_checkpoint_with_a_missing_shard(tiny_model_dir, tmp_path):
    d = _copy(tiny_model_dir, tmp_path / "m")
    tensors = load_file(d / "model.safetensors")
    names = sorted(tensors)
    half = len(names) // 2
    shards = {"model-00001-of-00002.safetensors": names[:half], "model-00002-of-00002.safetensors": names[half:]}
    for f, ns in shards.items():
        save_file({n: tensors[n] for n in ns}, d / f, metadata={"format": "pt"})
    (d / "model.safetensors").unlink()
    (d / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": {n: f for f, ns in shards.items() for n in ns}}))
    # Complete, the sharded checkpoint exports; with a shard gone it is refused before anything is written.
    out = tmp_path / "ok.gguf"
    export_gguf(d, out, "F16")
    assert out.stat().st_size > 0
    (d / "model-00002-of-00002.safetensors").unlink()
    _expect(d, tmp_path, "1 is missing: model-00002-of-00002")


def test_corrupt_safetensors_header(tiny_model_dir, tmp_path):
    d = _copy(tiny_model_dir, tmp_path / "m")
    raw = bytearray((d / "model.safetensors").read_bytes())
    raw[8:40] = b"{ this is not json at all !!!!!"  # header length stays, the JSON header is garbage
    (d / "model.safetensors").write_bytes(bytes(raw))
    _expect(d, tmp_path, "is a damaged safetensors file")


def test_truncated_safetensors_leaves_no_partial_file(tiny_model_dir, tmp_path):
    d = _copy(tiny_model_dir, tmp_path / "m")
    raw = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(raw[: len(raw) // 2])
    _expect(d, tmp_path, "safetensors", quant="Q4_K_M")


def test_unknown_quant_type(tiny_model_dir, tmp_path):
    _expect(tiny_model_dir, tmp_path, "unknown quant type 'Q9_9'", quant="Q9_9")


def test_existing_output_survives_a_failed_export(tiny_model_dir, tmp_path):
    d = _copy(tiny_model_dir, tmp_path / "m")
    out = tmp_path / "keep.gguf"
    export_gguf(tiny_model_dir, out, "F16")
    before = out.read_bytes()
    (d / "tokenizer.json").unlink()
    (d / "tokenizer_config.json").unlink()
    with pytest.raises(DownsizeError):
        export_gguf(d, out, "F16")
    assert out.read_bytes() == before
